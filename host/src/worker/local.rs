//! Runs a job in this process: one thread per task, in-process channels between them. The
//! embedded mode of `weir run`, and the same task code a worker will run in a cluster.

use super::channel::Gate;
use super::control::{JobControl, JobMetrics};
use super::source::WasmSource;
use super::task::{ChainStep, Head, Routes, Step, Task, TaskError, merge_bytes};
use super::writer::RecordWriter;
use crate::connectors::{Source, prepare_sink};
use crate::plan::{ExecutionGraph, JobGraph, NodeKind, Partition};
use crate::wasm::{InstanceSpec, LoadError, LoadedComponent, Runtime, World};
use std::fmt;
use std::sync::{Arc, Mutex};

/// Why a job did not finish.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{kind} `{uid}`: {error}")]
    Component {
        kind: &'static str,
        uid: String,
        error: LoadError,
    },
    #[error("sink `{uid}`: {cause}")]
    Prepare { uid: String, cause: String },
    #[error("{0}")]
    Failed(TaskFailure),
    #[error("the job was cancelled")]
    Cancelled,
    #[error("cannot start a task thread: {0}")]
    Spawn(std::io::Error),
}

/// The first task failure of a job: which node, which subtask, and why.
#[derive(Debug, Clone)]
pub struct TaskFailure {
    /// `source`, `operator` or `sink`.
    pub kind: &'static str,
    pub uid: String,
    pub subtask: u32,
    pub parallelism: u32,
    pub cause: String,
}

impl fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} `{}` (subtask {} of {}) failed: {}",
            self.kind, self.uid, self.subtask, self.parallelism, self.cause
        )
    }
}

fn kind_word(kind: &NodeKind) -> &'static str {
    match kind {
        NodeKind::Source(_) | NodeKind::WasmSource(_) => "source",
        NodeKind::Operator(_) => "operator",
        NodeKind::Sink(_) => "sink",
    }
}

/// Compiles and checks every operator's component, once per distinct file.
pub fn load_components(
    runtime: &Runtime,
    job: &JobGraph,
) -> Result<Vec<Option<LoadedComponent>>, JobError> {
    let mut loaded: Vec<Option<LoadedComponent>> = Vec::with_capacity(job.nodes.len());
    for node in &job.nodes {
        let (component, world) = match &node.kind {
            NodeKind::Operator(op) => (&op.component, World::Operator),
            NodeKind::WasmSource(src) => (&src.component, World::Source),
            _ => {
                loaded.push(None);
                continue;
            }
        };
        let same = loaded
            .iter()
            .flatten()
            .find(|c| c.path == *component && c.world() == world)
            .cloned();
        let c = match same {
            Some(c) => c,
            None => runtime
                .load(component, world)
                .map_err(|error| JobError::Component {
                    kind: kind_word(&node.kind),
                    uid: node.uid.clone(),
                    error,
                })?,
        };
        loaded.push(Some(c));
    }
    Ok(loaded)
}

/// Everything one task needs, wired before its thread starts.
struct TaskPlan {
    chain: usize,
    subtask: u32,
    gate: Option<Arc<Gate>>,
    writers: Vec<RecordWriter>,
    /// Routes per node of the chain, head first.
    routes: Vec<Routes>,
}

/// Runs `job` to completion in this process.
pub fn run(
    job: &JobGraph,
    components: &[Option<LoadedComponent>],
    control: &Arc<JobControl>,
    metrics: &Arc<JobMetrics>,
) -> Result<(), JobError> {
    let exec = ExecutionGraph::build(job);
    tracing::info!(job = %job.name, chains = %exec.describe(job), "starting");
    for node in &job.nodes {
        if let NodeKind::Sink(config) = &node.kind {
            prepare_sink(config).map_err(|e| JobError::Prepare {
                uid: node.uid.clone(),
                cause: e.to_string(),
            })?;
        }
    }

    // One gate per task with inputs; channels numbered by input edge, then upstream subtask.
    let gates: Vec<Vec<Option<Arc<Gate>>>> = exec
        .chains
        .iter()
        .map(|c| {
            let channels: u32 = c.inputs.iter().map(|i| i.channels_per_subtask()).sum();
            (0..c.parallelism)
                .map(|_| (channels > 0).then(|| Gate::new(channels as usize)))
                .collect()
        })
        .collect();
    for g in gates.iter().flatten().flatten() {
        control.register(g.clone());
    }

    let mut plans = Vec::new();
    for (c, chain) in exec.chains.iter().enumerate() {
        for s in 0..chain.parallelism {
            let mut writers = Vec::new();
            let mut routes: Vec<Routes> = Vec::new();
            for (k, &node) in chain.nodes.iter().enumerate() {
                let mut r = Routes {
                    chained: (k + 1 < chain.nodes.len()).then_some(k + 1),
                    ..Routes::default()
                };
                for (e_idx, e) in job
                    .edges
                    .iter()
                    .enumerate()
                    .filter(|(i, e)| e.from == node && !exec.chained[*i])
                {
                    let d = exec.chain_of(e.to);
                    let down = &exec.chains[d];
                    let input = down
                        .inputs
                        .iter()
                        .position(|i| i.edge == e_idx)
                        .expect("a cross-chain edge is an input of its target chain");
                    let offset: u32 = down.inputs[..input]
                        .iter()
                        .map(|i| i.channels_per_subtask())
                        .sum();
                    let partition = job.nodes[e.to].partition;
                    let gate = |t: u32| {
                        gates[d][t as usize]
                            .as_ref()
                            .expect("chains with inputs have gates")
                    };
                    let senders = if partition == Partition::Forward {
                        vec![gate(s).sender(offset as usize)]
                    } else {
                        (0..down.parallelism)
                            .map(|t| gate(t).sender((offset + s) as usize))
                            .collect()
                    };
                    writers.push(RecordWriter::new(
                        partition,
                        senders,
                        job.buffer_bytes,
                        job.max_parallelism,
                    ));
                    let w = writers.len() - 1;
                    match &e.output {
                        None => r.main.push(w),
                        Some(name) => match r.side.iter_mut().find(|(n, _)| n == name) {
                            Some((_, ws)) => ws.push(w),
                            None => r.side.push((name.clone(), vec![w])),
                        },
                    }
                }
                routes.push(r);
            }
            plans.push(TaskPlan {
                chain: c,
                subtask: s,
                gate: gates[c][s as usize].clone(),
                writers,
                routes,
            });
        }
    }

    let failure: Arc<Mutex<Option<TaskFailure>>> = Arc::default();
    let mut handles = Vec::new();
    for plan in plans {
        let chain = &exec.chains[plan.chain];
        let name = format!("{}-{}", job.nodes[chain.nodes[0]].uid, plan.subtask);
        let (job, chain) = (job.clone(), chain.clone());
        let components = components.to_vec();
        let (task_control, metrics, failure) = (control.clone(), metrics.clone(), failure.clone());
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                let subtask = plan.subtask;
                let control = task_control;
                let result = run_task(&job, &chain, &components, plan, &control, &metrics);
                if let Err((node, TaskError::Failed { cause, .. })) = result {
                    let n = &job.nodes[node];
                    let f = TaskFailure {
                        kind: kind_word(&n.kind),
                        uid: n.uid.clone(),
                        subtask,
                        parallelism: n.parallelism,
                        cause,
                    };
                    tracing::debug!(operator = %f.uid, subtask, cause = %f.cause, "task failed");
                    failure
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_or_insert(f);
                    control.cancel();
                }
            })
            .map_err(|e| {
                control.cancel();
                JobError::Spawn(e)
            })?;
        handles.push(handle);
    }
    metrics.mark_running();
    let mut panicked = false;
    for h in handles {
        if h.join().is_err() {
            panicked = true;
            control.cancel();
        }
    }
    if let Some(f) = failure.lock().unwrap_or_else(|e| e.into_inner()).take() {
        return Err(JobError::Failed(f));
    }
    if panicked {
        return Err(JobError::Failed(TaskFailure {
            kind: "task",
            uid: "?".into(),
            subtask: 0,
            parallelism: 0,
            cause: "a task thread panicked (a weir bug)".into(),
        }));
    }
    if control.is_cancelled() {
        return Err(JobError::Cancelled);
    }
    Ok(())
}

/// Builds and runs one task. On failure, says which node of the chain failed.
fn run_task(
    job: &JobGraph,
    chain: &crate::plan::Chain,
    components: &[Option<LoadedComponent>],
    plan: TaskPlan,
    control: &Arc<JobControl>,
    metrics: &Arc<JobMetrics>,
) -> Result<(), (usize, TaskError)> {
    let s = plan.subtask;
    let mut routes = plan.routes.into_iter();
    let mut nodes = chain.nodes.iter().copied();
    let failed = |node: usize, cause: String| {
        (
            node,
            TaskError::Failed {
                uid: job.nodes[node].uid.as_str().into(),
                cause,
            },
        )
    };
    let head_node = chain.nodes[0];
    let head = if job.nodes[head_node].kind.is_source() {
        nodes.next();
        let uid: Arc<str> = job.nodes[head_node].uid.as_str().into();
        let source: Box<dyn Source> = match &job.nodes[head_node].kind {
            NodeKind::WasmSource(src) => {
                let component = components[head_node]
                    .as_ref()
                    .expect("source components are loaded before the job starts");
                let spec = InstanceSpec {
                    operator: uid.clone(),
                    subtask: s,
                    parallelism: chain.parallelism,
                    max_parallelism: job.max_parallelism,
                    limits: job.limits,
                    config_json: src.config_json.clone(),
                };
                let instance = component
                    .instantiate_source(&spec)
                    .map_err(|e| failed(head_node, e.to_string()))?;
                Box::new(WasmSource::new(instance))
            }
            NodeKind::Source(config) => config
                .open(s, chain.parallelism)
                .map_err(|e| failed(head_node, e.to_string()))?,
            _ => unreachable!("checked is_source above"),
        };
        let mut routes = routes.next().expect("one route per node");
        // Steps are numbered after the head.
        routes.chained = routes.chained.map(|k| k - 1);
        Head::Source {
            uid,
            source,
            routes,
        }
    } else {
        Head::Gate(
            plan.gate
                .expect("a chain headed by an operator or sink has inputs"),
        )
    };
    let shift = usize::from(matches!(head, Head::Source { .. }));
    let mut steps = Vec::new();
    for (node, mut r) in nodes.by_ref().zip(routes.by_ref()) {
        r.chained = r.chained.map(|k| k - shift);
        let n = &job.nodes[node];
        let uid: Arc<str> = n.uid.as_str().into();
        let step = match &n.kind {
            NodeKind::Operator(op) => {
                let component = components[node]
                    .as_ref()
                    .expect("operators are loaded before the job starts");
                let spec = InstanceSpec {
                    operator: uid.clone(),
                    subtask: s,
                    parallelism: n.parallelism,
                    max_parallelism: job.max_parallelism,
                    limits: job.limits,
                    config_json: op.config_json.clone(),
                };
                Step::Operator(
                    component
                        .instantiate(&spec)
                        .map_err(|e| failed(node, e.to_string()))?,
                )
            }
            NodeKind::Sink(config) => {
                Step::Sink(config.open(s).map_err(|e| failed(node, e.to_string()))?)
            }
            NodeKind::Source(_) | NodeKind::WasmSource(_) => {
                unreachable!("sources only head chains")
            }
        };
        steps.push(ChainStep {
            uid,
            step,
            routes: r,
        });
    }
    let task = Task {
        steps,
        writers: plan.writers,
        buffer_bytes: job.buffer_bytes,
        merge_bytes: merge_bytes(job.buffer_bytes, job.limits.memory_bytes),
        flush_interval: job.flush_interval,
        control: control.clone(),
        metrics: metrics.clone(),
    };
    task.run(head).map_err(|e| {
        let node = match &e {
            TaskError::Failed { uid, .. } => job
                .nodes
                .iter()
                .position(|n| *n.uid == **uid)
                .unwrap_or(chain.nodes[0]),
            TaskError::Cancelled => chain.nodes[0],
        };
        (node, e)
    })
}
