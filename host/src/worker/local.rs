//! Runs a job in this process: one thread per task, in-process channels between them. The
//! embedded mode of `weir run`, and the same task code a worker will run in a cluster.

use super::channel::{ChannelSender, Gate, max_buffers};
use super::checkpointing::{Driver, Report, TaskInfo, TaskLink, Upstream};
use super::control::{JobControl, JobMetrics};
use super::event_time::SourceClock;
use super::metrics::TaskMetrics;
use super::recovery::{self, RestoreError, TaskRestore};
use super::source::{OpenSplit, WasmSource};
use super::task::{
    ChainStep, Head, Routes, Step, Task, TaskError, connector_failed, current_node, enter_node,
    guest_failed, merge_bytes,
};
use super::window::{WindowError, WindowStep};
use super::writer::RecordWriter;
use crate::cancel::CancelToken;
use crate::checkpoint::{Backend, Mode};
use crate::connectors::{Source, prepare_sink};
use crate::coordinator::checkpoints::{Ack, JobInfo, Keeper, Notice, TaskName};
use crate::coordinator::jobs::{Action, JobRun};
use crate::net::control::PartOutcome;
use crate::plan::key_groups;
use crate::plan::{ChannelSpec, ExecutionGraph, JobGraph, NodeKind};
use crate::state::checkpoints::{CheckpointDir, Restored};
use crate::state::snapshot;
use crate::wasm::{InstanceSpec, LoadError, LoadedComponent, Runtime, World};
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime};

/// How long tasks have to stop once the job is cancelled. Every wait of a task (gates, guest
/// calls, WASI waits, sink pauses) wakes on cancellation within milliseconds; a task that is
/// still running after this is stuck where cancellation cannot reach (a write to a full pipe,
/// say), and is abandoned so that the job can end and the process exit.
const CANCEL_GRACE: Duration = Duration::from_secs(2);

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
    #[error("the job failed {} times and has no restart attempt left (restart.attempts): {}", .0.len(), .0.iter().enumerate().map(|(i, f)| format!("attempt {}: {f}", i + 1)).collect::<Vec<_>>().join("; "))]
    Exhausted(Vec<TaskFailure>),
    #[error(transparent)]
    Restore(#[from] RestoreError),
    #[error("cannot start checkpointing: {0}")]
    Checkpointing(std::io::Error),
    #[error("the job was cancelled{}", .0.as_ref().map_or(String::new(), |why| format!(": {why}")))]
    Cancelled(Option<String>),
    #[error("cannot start a task thread: {0}")]
    Spawn(std::io::Error),
    #[error(
        "the job's channels may hold up to {} MiB of buffers ({buffers} of job.buffer_bytes = {buffer_bytes}), over job.network_mib = {} MiB; lower the parallelism or job.buffer_bytes, or raise job.network_mib",
        (buffers * *buffer_bytes as u64) >> 20, limit >> 20
    )]
    Network {
        buffers: u64,
        buffer_bytes: usize,
        limit: u64,
    },
    #[error("{cause}; {} did not stop within {} s of the cancellation and {} abandoned", tasks.join(", "), CANCEL_GRACE.as_secs(), if tasks.len() == 1 { "was" } else { "were" })]
    Stuck {
        cause: Box<JobError>,
        /// The tasks still running, by thread name.
        tasks: Vec<String>,
    },
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

/// Streams node `uid`'s keyed state in key groups `range` from the checkpoint into `restore`.
fn restore_keyed(
    r: &TaskRestore,
    uid: &str,
    range: std::ops::Range<u32>,
    mut restore: impl FnMut(&crate::state::KeyedSnapshot) -> Result<(), String>,
) -> Result<(), String> {
    for file in r.operator(uid).flatten() {
        snapshot::read_keyed(file, uid, range.clone(), &mut restore)
            .map_err(|e| format!("cannot restore keyed state: {e}"))?;
    }
    Ok(())
}

fn kind_word(kind: &NodeKind) -> &'static str {
    match kind {
        NodeKind::Source(_) | NodeKind::WasmSource(_) => "source",
        NodeKind::Operator(_) => "operator",
        NodeKind::Window(_) => "window operator",
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
        let (Some(op), Some(world)) = (node.kind.component(), World::of(&node.kind)) else {
            loaded.push(None);
            continue;
        };
        let component = &op.component;
        let same = loaded
            .iter()
            .flatten()
            .find(|c| c.path == *component && c.world() == world)
            .cloned();
        let c = match same {
            Some(c) => c,
            None => runtime
                .load(component, world, job.limits.component_bytes)
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

/// Checks what the job needs of this process before anything starts: the memory its channels
/// may hold.
pub fn check(job: &JobGraph) -> Result<(), JobError> {
    let buffers = max_buffers(&ExecutionGraph::build(job));
    if buffers.saturating_mul(job.buffer_bytes as u64) > job.network_bytes {
        return Err(JobError::Network {
            buffers,
            buffer_bytes: job.buffer_bytes,
            limit: job.network_bytes,
        });
    }
    Ok(())
}

/// What a task gets from its attempt: cancellation, checkpointing, what to restore.
struct TaskContext {
    cancel: CancelToken,
    checkpoints: Option<TaskLink>,
    restore: Option<TaskRestore>,
    /// Names this attempt's transactional sink files (when the job checkpoints).
    run_name: Option<String>,
    /// How many times the job has restarted before this attempt.
    attempt: u32,
    /// Where operators keep keyed state on disk (the redb backend), if they do.
    state_dir: Option<PathBuf>,
    /// The task's counters.
    metrics: Arc<TaskMetrics>,
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

/// How a process running part of a job (a worker's part of a cluster job) reaches the tasks
/// that run elsewhere.
pub trait Remote: Sync {
    /// Whether this process runs task (chain, subtask).
    fn runs(&self, task: (usize, u32)) -> bool;
    /// The sending end of `channel`, whose receiving task runs elsewhere.
    fn sender(&self, channel: &ChannelSpec) -> Result<ChannelSender, String>;
    /// Makes `gate` (of a task that runs here) receive `channels`, whose sending tasks run
    /// elsewhere; a channel that breaks cancels `control` with the reason.
    fn receive(&self, gate: &Arc<Gate>, channels: &[ChannelSpec], control: &Arc<JobControl>);
    /// Where this part's checkpoint acknowledgements go (the job's keeper, elsewhere).
    fn checkpoints(&self) -> Box<dyn Fn(Ack) + Send>;
    /// Where the keeper's notices for this part are to be delivered from now on.
    fn notices(&self, deliver: Box<dyn Fn(Notice) + Send + Sync>);
    /// Where this process keeps working files (the redb backend's state) of this part.
    fn work_dir(&self) -> PathBuf;
    /// The attempt's name, unique to it and the same in every process of the job.
    fn attempt_name(&self) -> String;
}

/// Runs this process's part of attempt `attempt` of a job split across processes: the tasks
/// `remote` says run here. Restarts are not its business (the cluster's coordinator decides
/// them); nor are the sinks' directories, which the coordinator prepares for the whole job.
#[allow(clippy::too_many_arguments)]
pub fn run_part(
    job: &JobGraph,
    components: &[Option<LoadedComponent>],
    control: &Arc<JobControl>,
    metrics: &Arc<JobMetrics>,
    remote: &dyn Remote,
    attempt: u32,
    restored: Option<Arc<Restored>>,
    first_id: u64,
) -> Result<(), JobError> {
    check(job)?;
    run_attempt(
        job,
        components,
        control,
        metrics,
        restored,
        attempt,
        first_id,
        Some(remote),
    )
}

/// How `weir run` starts a job.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Restore from this checkpoint (or the newest complete one in this directory).
    pub from: Option<PathBuf>,
    /// Drop checkpointed state of operators the job no longer has.
    pub allow_non_restored_state: bool,
}

/// Runs `job` to completion in this process: restores from `options.from` if given, and after a
/// task failure restarts from the newest checkpoint this run completed, under the job's
/// restart strategy.
pub fn run(
    job: &JobGraph,
    components: &[Option<LoadedComponent>],
    control: &Arc<JobControl>,
    metrics: &Arc<JobMetrics>,
    options: &RunOptions,
) -> Result<(), JobError> {
    check(job)?;
    let restored = match &options.from {
        Some(path) => {
            let r = recovery::load(path, job, options.allow_non_restored_state)?;
            tracing::info!(
                "restoring checkpoint {} from {}: {} tasks, {} bytes read",
                r.metadata.id,
                path.display(),
                r.metadata.tasks.len(),
                r.metadata.full_bytes()
            );
            Some(r)
        }
        None => None,
    };
    // Checkpoints of this run are numbered after every one already in the directory, so that
    // a restart never mistakes an earlier run's checkpoint for its own.
    let first_id = job.checkpoint.as_ref().map_or(1, |c| {
        let (done, _) = CheckpointDir::new(&c.dir).completed();
        let newest = done.last().map_or(0, |m| m.id);
        newest.max(restored.as_ref().map_or(0, |r| r.metadata.id)) + 1
    });
    let outcome = run_attempts(job, components, control, metrics, restored, first_id);
    if let (Err(_), Some(c)) = (&outcome, &job.checkpoint)
        && !c.retain_on_cancel
    {
        // Cancelled or failed for good: this run's checkpoints go, unless asked to stay.
        let dir = CheckpointDir::new(&c.dir);
        let (done, _) = dir.completed();
        for m in done.iter().filter(|m| m.id >= first_id) {
            dir.discard(m.id);
        }
    }
    outcome
}

/// Runs attempts until one finishes, the job is cancelled, or the restart strategy gives up.
fn run_attempts(
    job: &JobGraph,
    components: &[Option<LoadedComponent>],
    control: &Arc<JobControl>,
    metrics: &Arc<JobMetrics>,
    mut restored: Option<Arc<Restored>>,
    first_id: u64,
) -> Result<(), JobError> {
    if let Some(c) = &job.checkpoint {
        remove_stale_work(&c.dir);
    }
    // The restart decisions are the cluster's (`JobRun`), with this process as the one part.
    let mut run = JobRun::new(job.restart);
    let mut failures = Vec::new();
    loop {
        let attempt = run.attempt();
        run.deployed([THIS_PROCESS.to_string()]);
        // Each attempt numbers its checkpoints past every one already in the directory.
        let attempt_first = job.checkpoint.as_ref().map_or(first_id, |c| {
            first_id.max(CheckpointDir::new(&c.dir).next_id())
        });
        let outcome = run_attempt(
            job,
            components,
            control,
            metrics,
            restored.clone(),
            attempt,
            attempt_first,
            None,
        );
        let failure = match outcome {
            Err(JobError::Failed(f)) if control.reason().is_none() => f,
            other => return other,
        };
        let why = failure.to_string();
        failures.push(failure);
        let delay = match run.part_ended(attempt, THIS_PROCESS, PartOutcome::Failed { why })[..] {
            [Action::Restart { delay, .. }] => delay,
            _ => {
                return Err(match failures.len() {
                    1 => JobError::Failed(failures.remove(0)),
                    _ => JobError::Exhausted(failures),
                });
            }
        };
        control.begin_attempt();
        metrics.restarted();
        if let Some(c) = &job.checkpoint
            && let Some(r) = recovery::latest_since(&c.dir, first_id)
        {
            restored = Some(r);
        }
        tracing::warn!(
            job = %job.name,
            attempt = failures.len(),
            "{}; restarting in {delay:?} from {}",
            failures.last().expect("just pushed"),
            restored
                .as_ref()
                .map_or("the start".to_string(), |r| format!("checkpoint {}", r.metadata.id))
        );
        if control.token().sleep(delay).is_err() {
            return Err(JobError::Cancelled(control.reason().map(str::to_string)));
        }
    }
}

/// The one part of a job run in one process, as [`JobRun`] names it.
const THIS_PROCESS: &str = "local";

/// Removes the redb backends' working directories (`work-<pid>`) that processes killed
/// outright left behind in checkpoint directory `dir`: those whose process is gone.
fn remove_stale_work(dir: &std::path::Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("work-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// One attempt at running the job: from the start, or from `restored`; all of it, or with
/// `remote`, the tasks that run in this process.
#[allow(clippy::too_many_arguments)]
fn run_attempt(
    job: &JobGraph,
    components: &[Option<LoadedComponent>],
    control: &Arc<JobControl>,
    metrics: &Arc<JobMetrics>,
    restored: Option<Arc<Restored>>,
    attempt: u32,
    first_id: u64,
    remote: Option<&dyn Remote>,
) -> Result<(), JobError> {
    let exec = ExecutionGraph::build(job);
    tracing::info!(job = %job.name, chains = %exec.describe(job), attempt, "starting");
    let here = |task: (usize, u32)| remote.is_none_or(|r| r.runs(task));
    if let (Some(r), None) = (&restored, remote) {
        recovery::publish_sinks(r).map_err(|(uid, cause)| JobError::Prepare { uid, cause })?;
    }
    for node in job.nodes.iter().filter(|_| remote.is_none()) {
        if let NodeKind::Sink(config) = &node.kind {
            prepare_sink(config, restored.as_ref().map(|r| r.metadata.id)).map_err(|e| {
                JobError::Prepare {
                    uid: node.uid.clone(),
                    cause: e.to_string(),
                }
            })?;
        }
    }
    let mode = job
        .checkpoint
        .as_ref()
        .map_or(Mode::ExactlyOnce, |c| c.mode);
    // The redb backend's working state: one database per operator subtask, in a directory of
    // this attempt's own, beside the checkpoints (on disk: state may exceed memory).
    let state_dir = job
        .checkpoint
        .as_ref()
        .filter(|c| c.backend == Backend::Redb)
        .map(|c| match remote {
            // A worker's, in its own data directory: the checkpoint directory may be shared
            // by hosts whose process ids mean nothing to each other.
            Some(remote) => remote.work_dir(),
            None => c.dir.join(format!("work-{}", std::process::id())),
        });
    // A name for this attempt's transactional sink files, unique across runs and attempts.
    let run_name = job.checkpoint.as_ref().map(|_| {
        let ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        format!("{ms}-{attempt}")
    });

    // One gate per task with inputs; channels numbered by input edge, then upstream subtask
    // (`ExecutionGraph::targets`).
    let gates: Vec<Vec<Option<Arc<Gate>>>> = exec
        .chains
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let channels = exec.gate_channels(i);
            (0..c.parallelism)
                .map(|s| (channels > 0 && here((i, s))).then(|| Gate::new(channels as usize, mode)))
                .collect()
        })
        .collect();
    for g in gates.iter().flatten().flatten() {
        control.register(g.clone());
    }
    if let Some(remote) = remote {
        // Channels from tasks elsewhere into the gates here, per gate.
        let mut from_elsewhere: Vec<Vec<Vec<ChannelSpec>>> = exec
            .chains
            .iter()
            .map(|c| vec![Vec::new(); c.parallelism as usize])
            .collect();
        for ch in exec.channels(job) {
            if here(ch.to) && !here(ch.from) {
                from_elsewhere[ch.to.0][ch.to.1 as usize].push(ch);
            }
        }
        for (c, per_subtask) in from_elsewhere.iter().enumerate() {
            for (s, channels) in per_subtask.iter().enumerate() {
                if let (Some(gate), false) = (&gates[c][s], channels.is_empty()) {
                    remote.receive(gate, channels, control);
                }
            }
        }
    }

    let mut plans = Vec::new();
    for (c, chain) in exec.chains.iter().enumerate() {
        for s in (0..chain.parallelism).filter(|&s| here((c, s))) {
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
                    let (d, targets) = exec.targets(job, e_idx, s);
                    let partition = job.nodes[e.to].partition;
                    let senders = targets
                        .into_iter()
                        .map(|(t, channel)| match (&gates[d][t as usize], remote) {
                            (Some(gate), _) => Ok(gate.sender(channel as usize)),
                            (None, Some(remote)) => remote
                                .sender(&ChannelSpec {
                                    edge: e_idx,
                                    from: (c, s),
                                    to: (d, t),
                                    gate_channel: channel,
                                })
                                .inspect(|sender| {
                                    if let Some(close) = sender.closer() {
                                        control.register_closer(close);
                                    }
                                })
                                .map_err(|cause| JobError::Prepare {
                                    uid: job.nodes[e.to].uid.clone(),
                                    cause: format!(
                                        "cannot open the channel from `{}` subtask {s}: {cause}",
                                        job.nodes[node].uid
                                    ),
                                }),
                            (None, None) => unreachable!("chains with inputs have gates"),
                        })
                        .collect::<Result<_, _>>()
                        .inspect_err(|_| control.cancel())?;
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

    let names: Vec<String> = plans
        .iter()
        .map(|p| {
            format!(
                "{}-{}",
                job.nodes[exec.chains[p.chain].nodes[0]].uid, p.subtask
            )
        })
        .collect();
    let task_metrics: Vec<Arc<TaskMetrics>> = (plans.iter().zip(&names))
        .map(|(p, name)| TaskMetrics::new(name.clone(), p.gate.clone()))
        .collect();
    metrics.set_tasks(task_metrics.clone());
    let token = control.token();
    let (driver, mut links) = match &job.checkpoint {
        Some(settings) => {
            // Tasks are numbered across the whole job (chain by chain, subtask by subtask), the
            // same in every process that runs a part of it.
            let first_task: Vec<usize> = exec
                .chains
                .iter()
                .scan(0, |n, c| {
                    let first = *n;
                    *n += c.parallelism as usize;
                    Some(first)
                })
                .collect();
            let info = |c: usize, subtask: u32| TaskInfo {
                name: format!("{}-{subtask}", job.nodes[exec.chains[c].nodes[0]].uid),
                subtask,
                operators: exec.chains[c]
                    .nodes
                    .iter()
                    .filter(|&&n| matches!(job.nodes[n].kind, NodeKind::Operator(_)))
                    .map(|&n| job.nodes[n].uid.clone())
                    .collect(),
                source: job.nodes[exec.chains[c].nodes[0]].kind.is_source(),
            };
            let tasks = plans
                .iter()
                .map(|p| {
                    (
                        first_task[p.chain] + p.subtask as usize,
                        info(p.chain, p.subtask),
                    )
                })
                .collect();
            let attempt_name = match remote {
                Some(remote) => remote.attempt_name(),
                None => format!("local-{}", run_name.as_deref().unwrap_or("")),
            };
            let upstream = match remote {
                Some(remote) => Upstream::Remote(remote.checkpoints()),
                None => {
                    let all = (exec.chains.iter().enumerate())
                        .flat_map(|(c, chain)| (0..chain.parallelism).map(move |s| (c, s)))
                        .map(|(c, s)| {
                            let i = info(c, s);
                            TaskName {
                                name: i.name,
                                source: i.source,
                            }
                        })
                        .collect();
                    Upstream::Local(Box::new(Keeper::new(
                        settings.clone(),
                        JobInfo::of(job),
                        all,
                        attempt_name.clone(),
                        first_id,
                        Instant::now(),
                    )))
                }
            };
            let (driver, links) = Driver::start(
                settings,
                &attempt_name,
                tasks,
                first_id,
                gates.iter().flatten().flatten().cloned().collect(),
                metrics.clone(),
                token.clone(),
                upstream,
            )
            .map_err(JobError::Checkpointing)?;
            if let Some(remote) = remote {
                remote.notices(Box::new(driver.notices()));
            }
            (Some(driver), links.into_iter().map(Some).collect())
        }
        None => (None, vec![None; plans.len()]),
    };

    let failure: Arc<Mutex<Option<TaskFailure>>> = Arc::default();
    let (done_tx, done_rx) = mpsc::channel::<usize>();
    let mut running: Vec<Option<(String, std::thread::JoinHandle<()>)>> = Vec::new();
    metrics.expect_tasks(plans.len());
    for (index, (plan, name)) in plans.into_iter().zip(names).enumerate() {
        let chain = &exec.chains[plan.chain];
        let (job, chain) = (job.clone(), chain.clone());
        let components = components.to_vec();
        let (task_control, metrics, failure) = (control.clone(), metrics.clone(), failure.clone());
        let done = Done(running.len(), done_tx.clone());
        let context = TaskContext {
            cancel: token.clone(),
            checkpoints: links[index].take(),
            restore: restored
                .as_ref()
                .map(|r| TaskRestore::new(r, &job, &chain.nodes, &name, chain.parallelism)),
            run_name: run_name.clone(),
            attempt,
            state_dir: state_dir.clone(),
            metrics: task_metrics[index].clone(),
        };
        let handle = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let _done = done;
                let subtask = plan.subtask;
                let control = task_control;
                let head = chain.nodes[0];
                let outcome = guarded(head, || {
                    run_task(&job, &chain, &components, plan, &control, &metrics, context)
                });
                if let Some((node, cause)) = outcome {
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
        running.push(Some((name, handle)));
    }
    drop(done_tx);
    metrics.mark_running();
    let stuck = wait_for_tasks(&mut running, &done_rx, control);
    let failed = failure.lock().unwrap_or_else(|e| e.into_inner()).is_some();
    let finished = !failed && !control.is_cancelled() && stuck.is_empty();
    // Every task has ended (or was abandoned, its link with it): the driver ends too; when
    // the job finished, what its sinks pre-committed is final and published.
    let published = driver.map_or(Ok(()), |d| d.finish(finished));
    if let Some(dir) = &state_dir {
        // Working state only: a restart rebuilds it from a checkpoint.
        let _ = std::fs::remove_dir_all(dir);
    }
    let error = if let Some(f) = failure.lock().unwrap_or_else(|e| e.into_inner()).take() {
        JobError::Failed(f)
    } else if control.is_cancelled() {
        JobError::Cancelled(control.reason().map(str::to_string))
    } else {
        return published.map_err(|cause| JobError::Prepare {
            uid: job.name.clone(),
            cause,
        });
    };
    if stuck.is_empty() {
        Err(error)
    } else {
        Err(JobError::Stuck {
            cause: Box::new(error),
            tasks: stuck,
        })
    }
}

/// Tells the runner that task `.0` has ended, when its thread ends (returning or unwinding).
struct Done(usize, mpsc::Sender<usize>);

impl Drop for Done {
    fn drop(&mut self) {
        let _ = self.1.send(self.0);
    }
}

/// Waits until every task has ended, or, once the job is cancelled, for [`CANCEL_GRACE`] at
/// most; returns the names of the tasks left running.
fn wait_for_tasks(
    running: &mut [Option<(String, std::thread::JoinHandle<()>)>],
    done: &mpsc::Receiver<usize>,
    control: &JobControl,
) -> Vec<String> {
    let mut left = running.len();
    while left > 0 {
        let wait = match control.token().cancelled_at() {
            Some(at) => match (at + CANCEL_GRACE).checked_duration_since(Instant::now()) {
                Some(d) => d.min(Duration::from_millis(100)),
                None => break,
            },
            None => Duration::from_millis(100),
        };
        match done.recv_timeout(wait) {
            Ok(i) => {
                // The thread has ended or is about to; its task caught its own panics, so a
                // panic here came from the bookkeeping around it, and must not pass unseen.
                if let Some((name, handle)) = running[i].take()
                    && handle.join().is_err()
                {
                    control.cancel_because(&format!(
                        "task {name} panicked outside its operators (a bug in weir; please report it)"
                    ));
                }
                left -= 1;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    running
        .iter()
        .flatten()
        .map(|(name, _)| name.clone())
        .collect()
}

/// Runs a task, turning its failure or a panic inside weir into the node at fault and the
/// cause; a panic is blamed on the node the thread was running (`head` if none yet).
fn guarded(
    head: usize,
    task: impl FnOnce() -> Result<(), (usize, TaskError)>,
) -> Option<(usize, String)> {
    match std::panic::catch_unwind(AssertUnwindSafe(task)) {
        Ok(Ok(())) | Ok(Err((_, TaskError::Cancelled))) => None,
        Ok(Err((node, TaskError::Failed { cause, .. }))) => Some((node, cause)),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into());
            Some((
                current_node().unwrap_or(head),
                format!("weir panicked: {message} (a bug in weir; please report it)"),
            ))
        }
    }
}

/// Builds and runs one task. On failure, says which node of the chain failed.
fn run_task(
    job: &JobGraph,
    chain: &crate::plan::Chain,
    components: &[Option<LoadedComponent>],
    plan: TaskPlan,
    control: &Arc<JobControl>,
    metrics: &Arc<JobMetrics>,
    context: TaskContext,
) -> Result<(), (usize, TaskError)> {
    let s = plan.subtask;
    let head_node = chain.nodes[0];
    // Registered before the task is set up: a query waits (bounded) until it runs.
    let queries = super::query::QueryInbox::new(plan.gate.clone());
    control.register_queries(plan.chain, s, queries.clone());
    let queries = super::query::TaskQueries(queries);
    let failed = |node: usize, cause: String| {
        (
            node,
            TaskError::Failed {
                uid: job.nodes[node].uid.as_str().into(),
                cause,
            },
        )
    };
    let finished = match &context.restore {
        Some(r) => r.finished().map_err(|cause| failed(head_node, cause))?,
        None => None,
    };
    if let Some(last) = finished {
        // It had finished: its downstream sees its end at once, and it stays finished.
        let mut writers = plan.writers;
        for w in &mut writers {
            w.end().map_err(|_| (head_node, TaskError::Cancelled))?;
        }
        if let Some(c) = &context.checkpoints {
            c.report(Report::Finished {
                task: c.task,
                snapshot: last,
            });
        }
        metrics.task_ready();
        return Ok(());
    }
    let mut routes = plan.routes.into_iter();
    let mut nodes = chain.nodes.iter().copied();
    let spec = |node: usize, uid: &Arc<str>, parallelism: u32, config_json: &str| InstanceSpec {
        operator: uid.clone(),
        subtask: s,
        parallelism,
        max_parallelism: job.max_parallelism,
        limits: job.limits,
        config_json: config_json.to_string(),
        side_outputs: job
            .edges
            .iter()
            .filter(|e| e.from == node)
            .filter_map(|e| e.output.clone())
            .collect(),
        cancel: context.cancel.clone(),
        attempt: context.attempt,
        state_dir: context.state_dir.clone(),
        incremental: job.checkpoint.as_ref().is_some_and(|c| c.incremental),
        logs: control.logs(),
    };
    enter_node(head_node);
    let head = if job.nodes[head_node].kind.is_source() {
        nodes.next();
        let uid: Arc<str> = job.nodes[head_node].uid.as_str().into();
        let source: Box<dyn Source> = match &job.nodes[head_node].kind {
            NodeKind::WasmSource(src) => {
                let component = components[head_node]
                    .as_ref()
                    .expect("source components are loaded before the job starts");
                let (component, base) = (
                    component.clone(),
                    spec(head_node, &uid, chain.parallelism, &src.config_json),
                );
                let open: OpenSplit = Box::new(move |subtask, parallelism| {
                    component.instantiate_source(&InstanceSpec {
                        subtask,
                        parallelism,
                        ..base.clone()
                    })
                });
                Box::new(
                    WasmSource::new(open, s, chain.parallelism)
                        .map_err(|e| (head_node, guest_failed(&uid, e)))?,
                )
            }
            NodeKind::Source(config) => config
                .open(s, chain.parallelism)
                .map_err(|e| (head_node, connector_failed(&uid, e)))?,
            _ => unreachable!("checked is_source above"),
        };
        let mut source = source;
        let mut clock = job.nodes[head_node]
            .time
            .as_ref()
            .map(|t| Box::new(SourceClock::new(t, Instant::now())));
        if let Some(r) = &context.restore {
            let positions = r.source(&uid);
            if !positions.is_empty() {
                source
                    .restore(&positions, s, chain.parallelism)
                    .map_err(|e| (head_node, connector_failed(&uid, e)))?;
            }
            if let Some(c) = &mut clock {
                c.restore(&r.private(&uid, s, chain.parallelism))
                    .map_err(|e| failed(head_node, e))?;
            }
        }
        let mut routes = routes.next().expect("one route per node");
        // Steps are numbered after the head.
        routes.chained = routes.chained.map(|k| k - 1);
        Head::Source {
            node: head_node,
            uid,
            source,
            routes,
            clock,
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
        enter_node(node);
        let step_spec =
            (n.kind.component()).map(|op| spec(node, &uid, n.parallelism, &op.config_json));
        let step = match &n.kind {
            NodeKind::Operator(op) => {
                let component = components[node]
                    .as_ref()
                    .expect("operators are loaded before the job starts");
                let mut instance = component
                    .instantiate(&spec(node, &uid, n.parallelism, &op.config_json))
                    .map_err(|e| (node, guest_failed(&uid, e)))?;
                if let Some(r) = &context.restore {
                    let range = key_groups::range_of(s, n.parallelism, job.max_parallelism);
                    restore_keyed(r, &uid, range, |b| instance.restore_state(b))
                        .map_err(|e| failed(node, e))?;
                    instance.restore_timers().map_err(|e| failed(node, e))?;
                    for state in r.private(&uid, s, n.parallelism) {
                        instance
                            .restore_private(state)
                            .map_err(|e| (node, guest_failed(&uid, e)))?;
                    }
                }
                Step::Operator(Box::new(instance))
            }
            NodeKind::Window(window) => {
                let component = components[node]
                    .as_ref()
                    .expect("window functions are loaded before the job starts");
                let mut instance = component
                    .instantiate_window(&spec(
                        node,
                        &uid,
                        n.parallelism,
                        &window.function.config_json,
                    ))
                    .map_err(|e| (node, guest_failed(&uid, e)))?;
                if let Some(r) = &context.restore {
                    let range = key_groups::range_of(s, n.parallelism, job.max_parallelism);
                    restore_keyed(r, &uid, range, |b| instance.restore_state(b))
                        .map_err(|e| failed(node, e))?;
                }
                let mut step = WindowStep::new(window, instance).map_err(|e| failed(node, e))?;
                if context.restore.is_some() {
                    step.restored().map_err(|e| match e {
                        WindowError::Guest(e) => (node, guest_failed(&uid, e)),
                        WindowError::Failed(why) => failed(node, why),
                    })?;
                }
                Step::Window(Box::new(step))
            }
            NodeKind::Sink(config) => Step::Sink(
                config
                    .open(s, &context.cancel, context.run_name.as_deref())
                    .map_err(|e| (node, connector_failed(&uid, e)))?,
            ),
            NodeKind::Source(_) | NodeKind::WasmSource(_) => {
                unreachable!("sources only head chains")
            }
        };
        steps.push(ChainStep {
            node,
            spec: step_spec,
            uid,
            step,
            routes: r,
        });
    }
    let task = Task {
        steps,
        writers: (plan.writers.into_iter())
            .map(|w| w.with_metrics(context.metrics.clone()))
            .collect(),
        task_metrics: context.metrics.clone(),
        buffer_bytes: job.buffer_bytes,
        merge_bytes: merge_bytes(job.buffer_bytes, job.limits.memory_bytes),
        flush_interval: job.flush_interval,
        control: control.clone(),
        cancel: context.cancel,
        metrics: metrics.clone(),
        checkpoints: context.checkpoints,
        incremental: job.checkpoint.as_ref().is_some_and(|c| c.incremental),
        taken: Vec::new(),
        full_entries: 0,
        queries,
    };
    metrics.task_ready();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_inside_weir_names_the_node_the_thread_was_running() {
        let outcome = guarded(0, || {
            enter_node(3);
            panic!("overflow when multiplying duration by scalar");
        });
        assert_eq!(
            outcome,
            Some((
                3,
                "weir panicked: overflow when multiplying duration by scalar (a bug in weir; please report it)"
                    .to_string()
            ))
        );
        // A panic before any node ran is blamed on the head of the chain.
        let outcome = std::thread::spawn(|| guarded(5, || panic!("{}", String::from("early"))))
            .join()
            .unwrap();
        assert_eq!(outcome.map(|(node, _)| node), Some(5));
        // Failures and cancellation pass through.
        let failed = || {
            Err((
                2,
                TaskError::Failed {
                    uid: "x".into(),
                    cause: "why".into(),
                },
            ))
        };
        assert_eq!(guarded(0, failed), Some((2, "why".to_string())));
        assert_eq!(guarded(0, || Err((1, TaskError::Cancelled))), None);
        assert_eq!(guarded(0, || Ok(())), None);
    }
}
