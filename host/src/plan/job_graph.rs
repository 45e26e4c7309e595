//! The logical job: what a manifest describes once it has been checked.

use crate::checkpoint::{CheckpointSettings, RestartStrategy};
use crate::connectors::{SinkConfig, SourceConfig};
use std::path::PathBuf;
use std::time::Duration;

/// A checked job: nodes in topological order and the edges between them.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct JobGraph {
    pub name: String,
    /// The number of key groups; the upper bound for any parallelism.
    pub max_parallelism: u32,
    /// Whether forward edges between equal parallelism are chained into one task.
    pub chaining: bool,
    /// Size at which an output buffer is sent downstream.
    pub buffer_bytes: usize,
    /// The most the job's channels may hold in buffers at once.
    pub network_bytes: u64,
    /// How long a partly filled output buffer may wait before it is sent.
    pub flush_interval: Duration,
    pub limits: GuestLimits,
    /// Checkpointing, when on.
    pub checkpoint: Option<CheckpointSettings>,
    /// What a task failure leads to.
    pub restart: RestartStrategy,
    /// Every node appears after all of its inputs.
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

/// Limits on guest code: inside each instance (memory, time per call) and on what an instance
/// can make the host hold (keyed state, log lines), and on the component files themselves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GuestLimits {
    /// Linear memory (all memories of the instance together).
    pub memory_bytes: usize,
    /// Longest a single guest call (open, process of one batch, close) may run.
    pub call_timeout: Duration,
    /// Keyed state one subtask may keep (keys, values and a per-entry overhead).
    pub state_bytes: usize,
    /// Log lines one subtask may print per second; the rest are counted and dropped.
    pub log_lines_per_s: u32,
    /// Largest component file accepted.
    pub component_bytes: u64,
}

impl Default for GuestLimits {
    fn default() -> Self {
        GuestLimits {
            memory_bytes: 256 << 20,
            call_timeout: Duration::from_secs(10),
            state_bytes: 512 << 20,
            log_lines_per_s: 100,
            component_bytes: 256 << 20,
        }
    }
}

/// Flink's upper bound for the number of key groups.
pub const MAX_KEY_GROUPS: u32 = 32768;
/// The most subtasks of all nodes together: each is a thread and, for a component, an instance.
pub const MAX_SUBTASKS: u64 = 4096;

impl JobGraph {
    /// The component of every WASM node (operators and sources), in node order.
    pub fn components(&self) -> impl Iterator<Item = &std::path::Path> {
        (self.nodes.iter()).filter_map(|n| Some(n.kind.component()?.component.as_path()))
    }

    /// The component of every WASM node, by uid (as text: a content hash in a cluster).
    pub fn components_by_uid(&self) -> std::collections::BTreeMap<String, String> {
        (self.nodes.iter())
            .filter_map(|n| {
                let c = n.kind.component()?;
                Some((n.uid.clone(), c.component.to_string_lossy().into_owned()))
            })
            .collect()
    }

    /// Checks what the rest of weir takes for granted of a graph that did not come from
    /// [`crate::manifest::load`] (one received over the network): edges between existing
    /// nodes, every node after its inputs, parallelism within the key groups, names that are
    /// names, and no more subtasks than a manifest may have.
    pub fn check_shape(&self) -> Result<(), String> {
        if !(1..=MAX_KEY_GROUPS).contains(&self.max_parallelism) {
            return Err(format!(
                "max_parallelism {} is not between 1 and {MAX_KEY_GROUPS}",
                self.max_parallelism
            ));
        }
        let mut subtasks = 0u64;
        let mut uids = std::collections::HashSet::new();
        for n in &self.nodes {
            if !is_valid_name(&n.uid) || !uids.insert(n.uid.as_str()) {
                return Err(format!("node uid {:?} is not a name, or not unique", n.uid));
            }
            if !(1..=self.max_parallelism).contains(&n.parallelism) {
                return Err(format!(
                    "`{}` has parallelism {}, outside 1..={}",
                    n.uid, n.parallelism, self.max_parallelism
                ));
            }
            subtasks += u64::from(n.parallelism);
        }
        if subtasks > MAX_SUBTASKS {
            return Err(format!(
                "{subtasks} subtasks, over the limit of {MAX_SUBTASKS}"
            ));
        }
        for e in &self.edges {
            if e.from >= e.to || e.to >= self.nodes.len() {
                return Err(format!(
                    "an edge from node {} to node {} (of {})",
                    e.from,
                    e.to,
                    self.nodes.len()
                ));
            }
            if e.output.as_deref().is_some_and(|o| !is_valid_name(o)) {
                return Err(format!("side output {:?} is not a name", e.output));
            }
            let (from, to) = (&self.nodes[e.from], &self.nodes[e.to]);
            if to.kind.is_source() {
                return Err(format!("an edge into source `{}`", to.uid));
            }
            if to.partition == Partition::Forward && from.parallelism != to.parallelism {
                return Err(format!(
                    "a forward edge from `{}` to `{}` of another parallelism",
                    from.uid, to.uid
                ));
            }
        }
        if let Some(n) = (self.nodes.iter().enumerate())
            .find(|(i, n)| !n.kind.is_source() && !self.edges.iter().any(|e| e.to == *i))
        {
            return Err(format!("`{}` has no input", n.1.uid));
        }
        if self.buffer_bytes == 0 || self.buffer_bytes > 64 << 20 {
            return Err(format!(
                "buffer_bytes {} is out of range",
                self.buffer_bytes
            ));
        }
        Ok(())
    }
}

/// The longest uid or side-output name.
pub const MAX_NAME_BYTES: usize = 128;

/// Whether `name` may be a uid or a side-output name: 1 to [`MAX_NAME_BYTES`] bytes of letters,
/// digits, `_` and `-`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
}

/// A source, operator or sink.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Node {
    /// The stable id (the manifest table's name); state is kept under it.
    pub uid: String,
    pub parallelism: u32,
    /// How records reach this node's subtasks from its inputs.
    pub partition: Partition,
    pub kind: NodeKind,
    /// A source's event time: where its timestamps come from and how its watermarks follow.
    #[serde(default)]
    pub time: Option<SourceTime>,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum NodeKind {
    /// A native source connector.
    Source(SourceConfig),
    /// A source component (the `weir:operator/source` world).
    WasmSource(OperatorNode),
    Operator(OperatorNode),
    /// The host's window operator, its window function a component.
    Window(WindowNode),
    Sink(SinkConfig),
}

impl NodeKind {
    /// Whether the node is a source of either kind.
    pub fn is_source(&self) -> bool {
        matches!(self, NodeKind::Source(_) | NodeKind::WasmSource(_))
    }

    /// The node's component and config, if it runs one.
    pub fn component(&self) -> Option<&OperatorNode> {
        match self {
            NodeKind::Operator(op) | NodeKind::WasmSource(op) => Some(op),
            NodeKind::Window(w) => Some(&w.function),
            NodeKind::Source(_) | NodeKind::Sink(_) => None,
        }
    }

    /// The node's component and config, to change.
    pub fn component_mut(&mut self) -> Option<&mut OperatorNode> {
        match self {
            NodeKind::Operator(op) | NodeKind::WasmSource(op) => Some(op),
            NodeKind::Window(w) => Some(&mut w.function),
            NodeKind::Source(_) | NodeKind::Sink(_) => None,
        }
    }
}

/// Where a source's timestamps come from, and its watermarks.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceTime {
    pub timestamps: Timestamps,
    pub watermarks: Option<WatermarkSettings>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Timestamps {
    /// The records carry them: set by a source component, or read from a JSON field.
    Record,
    /// The time the source read the record (the host's clock, ms since the epoch).
    Ingestion,
}

/// How a source's watermark follows its timestamps (Flink's `WatermarkStrategy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WatermarkSettings {
    /// `largest timestamp - max_delay_ms - 1`; 0 for `monotonous`.
    pub max_delay_ms: i64,
    /// How often it is emitted; zero: after every record that advances it.
    pub interval: Duration,
    /// Without records for this long the source is idle and holds nothing back.
    pub idle_timeout: Option<Duration>,
}

/// Which clock a window follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TimeKind {
    /// The records' timestamps, as far as the watermark says.
    Event,
    /// The wall clock of the subtask.
    Processing,
}

/// How records are grouped into windows (milliseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WindowAssigner {
    Tumbling {
        size: i64,
        offset: i64,
    },
    Sliding {
        size: i64,
        slide: i64,
        offset: i64,
    },
    Session {
        gap: i64,
    },
    Global,
    /// Every `size` records of a key (every `slide` records over the last `size`).
    Count {
        size: u64,
        slide: u64,
    },
}

/// What the window function is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WindowFunctionKind {
    /// Two values into one of the same type; the window's result is its last value.
    Reduce,
    /// An accumulator: created, added to, merged, turned into the result.
    Aggregate,
    /// Every record of the window at once.
    Process,
}

/// A window operator (`[windows.X]`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct WindowNode {
    pub assigner: WindowAssigner,
    pub time: TimeKind,
    /// How long after its end a window still accepts records, ms.
    pub allowed_lateness: i64,
    /// The side output records late for every window go to, if any.
    pub late_output: Option<String>,
    pub kind: WindowFunctionKind,
    pub function: OperatorNode,
    /// When windows fire.
    #[serde(default)]
    pub trigger: WindowTrigger,
}

/// When a window fires (Flink's triggers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WindowTrigger {
    /// When time (the watermark, or the clock for processing time) passes the window's end;
    /// for count windows, every `slide` records.
    #[default]
    Default,
    /// Every `n` records of a window (its contents kept); time only drops it.
    Count(u64),
    /// Every this many ms of time (the watermark, or the clock) from the window's first
    /// record, and at its end.
    Continuous(i64),
}

/// A WASM component and its config: an operator, or a source component.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct OperatorNode {
    pub component: PathBuf,
    /// The `config` table, as the JSON text passed to `open`.
    pub config_json: String,
}

/// A connection from a node's output (main, or a named side output) to another node's input.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Edge {
    pub from: usize,
    /// `None` for the main output.
    pub output: Option<String>,
    pub to: usize,
}

/// How records are distributed from the upstream subtasks to the downstream ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Partition {
    /// Subtask i sends to subtask i (equal parallelism).
    Forward,
    /// By key group of the record key.
    Hash,
    /// Round robin over the downstream subtasks.
    Rebalance,
    /// Every record to every downstream subtask.
    Broadcast,
}

impl Partition {
    /// The manifest spelling.
    pub fn name(self) -> &'static str {
        match self {
            Partition::Forward => "forward",
            Partition::Hash => "hash",
            Partition::Rebalance => "rebalance",
            Partition::Broadcast => "broadcast",
        }
    }

    pub fn parse(s: &str) -> Option<Partition> {
        [
            Partition::Forward,
            Partition::Hash,
            Partition::Rebalance,
            Partition::Broadcast,
        ]
        .into_iter()
        .find(|p| p.name() == s)
    }
}
