//! Executing tasks: credit-bounded channels, record writers, the task mailbox loop, and the
//! in-process runner of a whole job; and the worker process of a cluster (`agent`).

pub mod agent;
pub mod channel;
pub mod checkpointing;
pub mod cluster;
pub mod control;
pub mod credit;
mod event_time;
pub mod local;
pub mod metrics;
pub mod query;
pub mod recovery;
mod source;
pub mod task;
pub mod window;
pub mod writer;

pub use control::{CheckpointSummary, JobControl, JobMetrics};
pub use local::{JobError, RunOptions, TaskFailure, check, load_components, run};
