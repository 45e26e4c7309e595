//! Planning: the checked job graph, key groups, and the execution graph of chained tasks.

mod execution;
mod job_graph;
pub mod key_groups;

pub use execution::{Chain, ChannelSpec, ExecutionGraph, InputEdge};
pub use job_graph::{
    Edge, GuestLimits, JobGraph, MAX_KEY_GROUPS, MAX_NAME_BYTES, MAX_SUBTASKS, Node, NodeKind,
    OperatorNode, Partition, SourceTime, TimeKind, Timestamps, WatermarkSettings, WindowAssigner,
    WindowFunctionKind, WindowNode, WindowTrigger, is_valid_name,
};
