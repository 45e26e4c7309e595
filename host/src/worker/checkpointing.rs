//! Checkpoints of a running job, on the tasks' side. Sources see the newest trigger and inject
//! its barrier; each task hands its snapshot to the driver thread here, which has it written
//! into the checkpoint directory (off the task's thread: the task only copies its state and
//! forwards the barrier) and acknowledges it to the job's [`Keeper`] — in this process in local
//! mode, the coordinator's in a cluster — which completes or aborts checkpoints and says so
//! back ([`Notice`]).

use super::channel::Gate;
use super::control::{CheckpointSummary, JobMetrics};
use crate::cancel::CancelToken;
use crate::checkpoint::{CheckpointId, CheckpointSettings};
use crate::connectors::make_durable;
use crate::coordinator::checkpoints::{Ack, Keeper, Notice};
use crate::state::checkpoints::{CheckpointDir, FileRef, Metadata, TaskFile};
use crate::state::snapshot::TaskSnapshot;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a task (or a writer, or the keeper) tells the driver.
pub enum Report {
    /// The task's snapshot for checkpoint `id`, taken after aligning for `align` and pausing
    /// for `sync`.
    Snapshot {
        id: CheckpointId,
        task: usize,
        snapshot: TaskSnapshot,
        /// `Some(b)`: the keyed state is a delta against the task's snapshot in completed
        /// checkpoint `b`.
        base: Option<CheckpointId>,
        sync: Duration,
        align: Duration,
    },
    /// The task cannot take part in checkpoint `id`.
    Decline {
        id: CheckpointId,
        task: usize,
        why: String,
    },
    /// The task has finished; `snapshot` stands for it in every later checkpoint.
    Finished { task: usize, snapshot: TaskSnapshot },
    /// A writer wrote (or failed to write) a task's file: of checkpoint `id`, or (`None`) its
    /// last snapshot after it finished; `sinks` is what its sinks pre-committed.
    Written {
        id: Option<CheckpointId>,
        task: usize,
        file: Result<TaskFile, String>,
        sinks: Vec<Vec<u8>>,
    },
    /// What the keeper decided.
    Notice(Notice),
    /// Every task has ended: finish.
    Shutdown,
}

/// A task's snapshot to write.
struct WriteJob {
    /// `None`: the last snapshot of a finished task.
    id: Option<CheckpointId>,
    task: usize,
    info: TaskInfo,
    snapshot: TaskSnapshot,
    /// The files a delta builds on (empty for a full snapshot).
    base: Vec<FileRef>,
    sync: Duration,
    align: Duration,
}

/// Threads writing snapshot files, so that tasks' files of one checkpoint are written at once.
const WRITERS: usize = 2;

/// What the driver publishes to the tasks.
#[derive(Default)]
pub struct Shared {
    /// The newest checkpoint triggered: a source that has not yet injected it does.
    pub triggered: AtomicU64,
    /// The newest checkpoint complete, its sinks' files published.
    pub published: AtomicU64,
}

/// A task's link to the driver.
#[derive(Clone)]
pub struct TaskLink {
    /// The task's number among the job's tasks.
    pub task: usize,
    pub shared: Arc<Shared>,
    reports: mpsc::Sender<Report>,
}

impl TaskLink {
    pub fn report(&self, report: Report) {
        // The driver outlives every task of its attempt; a send can only fail while the
        // attempt is being torn down, when nothing more matters.
        let _ = self.reports.send(report);
    }
}

/// Where the driver's acknowledgements go.
pub enum Upstream {
    /// The job's keeper, run by the driver itself (local mode).
    Local(Box<Keeper>),
    /// Another process's keeper (the coordinator's), whose notices come back through
    /// [`Driver::notices`].
    Remote(Box<dyn Fn(Ack) + Send>),
}

/// A task as checkpoints name it.
#[derive(Debug, Clone)]
pub struct TaskInfo {
    /// The chain's head uid and the subtask, e.g. `count-1`.
    pub name: String,
    pub subtask: u32,
    /// The uids of the operators in its chain.
    pub operators: Vec<String>,
    /// Its chain starts with a source (barriers are injected there).
    pub source: bool,
}

/// The driver of one attempt's checkpoints, on the tasks' side.
pub struct Driver {
    thread: JoinHandle<Option<Box<Keeper>>>,
    reports: mpsc::Sender<Report>,
}

impl Driver {
    /// Starts the driver for `tasks` (each with its number among the job's tasks); before the
    /// first notice, checkpoints up to `first_id - 1` count as triggered and published.
    /// Returns each task's link, in the order of `tasks`.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        settings: &CheckpointSettings,
        attempt: &str,
        tasks: Vec<(usize, TaskInfo)>,
        first_id: CheckpointId,
        gates: Vec<Arc<Gate>>,
        metrics: Arc<JobMetrics>,
        cancel: CancelToken,
        upstream: Upstream,
    ) -> std::io::Result<(Driver, Vec<TaskLink>)> {
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            triggered: AtomicU64::new(first_id - 1),
            published: AtomicU64::new(first_id - 1),
        });
        let links = tasks
            .iter()
            .map(|&(task, _)| TaskLink {
                task,
                shared: shared.clone(),
                reports: tx.clone(),
            })
            .collect();
        let (jobs, queue) = mpsc::channel::<WriteJob>();
        let queue = Arc::new(std::sync::Mutex::new(queue));
        let dir = CheckpointDir::new(&settings.dir);
        for _ in 0..WRITERS {
            let (queue, done, dir) = (queue.clone(), tx.clone(), dir.clone());
            let attempt = attempt.to_string();
            std::thread::Builder::new()
                .name("weir-checkpoint-writer".into())
                .spawn(move || {
                    loop {
                        let job = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        let Ok(job) = job else { return };
                        let _ = done.send(write(&dir, &attempt, job));
                    }
                })?;
        }
        let state = DriverState {
            dir,
            jobs: Some(jobs),
            tasks: tasks.into_iter().collect(),
            shared,
            gates,
            metrics,
            upstream,
            bases: VecDeque::new(),
            writing: 0,
            shutting_down: false,
        };
        let thread = std::thread::Builder::new()
            .name("weir-checkpoints".into())
            .spawn(move || state.run(rx, cancel))?;
        Ok((
            Driver {
                thread,
                reports: tx,
            },
            links,
        ))
    }

    /// Where the notices of a keeper in another process go.
    pub fn notices(&self) -> impl Fn(Notice) + Send + Sync + 'static {
        let reports = std::sync::Mutex::new(self.reports.clone());
        move |n| {
            let _ = reports
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .send(Report::Notice(n));
        }
    }

    /// Ends the driver once every task has ended. With a keeper of its own, it ends it too:
    /// when the job `finished`, what the finished tasks' sinks pre-committed is published.
    pub fn finish(self, finished: bool) -> Result<(), String> {
        let _ = self.reports.send(Report::Shutdown);
        match self.thread.join() {
            Ok(Some(keeper)) => keeper.finish(finished),
            Ok(None) => Ok(()),
            Err(_) => {
                Err("the checkpoint driver panicked (a bug in weir; please report it)".into())
            }
        }
    }
}

/// Writes one task's file: its sinks' pre-committed files reach the disk first, so that a
/// completed checkpoint's output is durable.
fn write(dir: &CheckpointDir, attempt: &str, job: WriteJob) -> Report {
    let durable = job
        .snapshot
        .sinks
        .iter()
        .try_for_each(|(uid, p)| make_durable(p).map_err(|e| format!("sink {uid}: {e}")));
    let file = durable
        .and_then(|()| {
            let (name, subtask, operators) = (&job.info.name, job.info.subtask, job.info.operators);
            match job.id {
                Some(id) => dir.write_task(id, name, subtask, operators, &job.snapshot),
                None => dir.write_finished(attempt, name, subtask, operators, &job.snapshot),
            }
            .map_err(|e| e.to_string())
        })
        .map(|mut f| {
            f.sync_ms = job.sync.as_millis() as u64;
            f.align_ms = job.align.as_millis() as u64;
            f.base = job.base;
            f
        });
    let sinks = job.snapshot.sinks.into_iter().map(|(_, p)| p).collect();
    Report::Written {
        id: job.id,
        task: job.task,
        file,
        sinks,
    }
}

struct DriverState {
    dir: CheckpointDir,
    /// The writers' queue (dropped at shutdown, which ends them).
    jobs: Option<mpsc::Sender<WriteJob>>,
    /// The tasks here, by their number among the job's tasks.
    tasks: std::collections::HashMap<usize, TaskInfo>,
    shared: Arc<Shared>,
    gates: Vec<Arc<Gate>>,
    metrics: Arc<JobMetrics>,
    upstream: Upstream,
    /// The metadata of the last few completed checkpoints read, for deltas' bases.
    bases: VecDeque<Metadata>,
    /// Files queued for the writers and not yet written.
    writing: usize,
    shutting_down: bool,
}

impl DriverState {
    fn run(mut self, reports: mpsc::Receiver<Report>, cancel: CancelToken) -> Option<Box<Keeper>> {
        loop {
            let wait = match &self.upstream {
                Upstream::Local(keeper) => keeper
                    .next_wakeup()
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(100)),
                Upstream::Remote(_) => Duration::from_millis(100),
            };
            match reports.recv_timeout(wait) {
                Ok(Report::Shutdown) => self.shutting_down = true,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Ok(report) => self.receive(report),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            // Every task has ended; the files being written (finished tasks' last snapshots
            // among them) are acknowledged before the driver ends.
            // (A cancelled attempt's files are of no use: it ends at once.)
            if self.shutting_down && (self.writing == 0 || cancel.is_cancelled()) {
                break;
            }
            if let Upstream::Local(keeper) = &mut self.upstream
                && !cancel.is_cancelled()
                && !self.shutting_down
            {
                let notices = keeper.poll(Instant::now());
                self.apply(notices);
            }
        }
        self.jobs = None;
        match self.upstream {
            Upstream::Local(keeper) => Some(keeper),
            Upstream::Remote(_) => None,
        }
    }

    fn ack(&mut self, ack: Ack) {
        match &mut self.upstream {
            Upstream::Local(keeper) => {
                let notices = keeper.receive(ack, Instant::now());
                self.apply(notices);
            }
            Upstream::Remote(send) => send(ack),
        }
    }

    fn receive(&mut self, report: Report) {
        match report {
            Report::Snapshot {
                id,
                task,
                snapshot,
                base,
                sync,
                align,
            } => {
                let Some(info) = self.tasks.get(&task).cloned() else {
                    return;
                };
                tracing::debug!(
                    checkpoint = id,
                    task = %info.name,
                    align_ms = align.as_millis() as u64,
                    sync_ms = sync.as_millis() as u64,
                    "snapshot taken"
                );
                self.ack(Ack::Taken { id, task });
                // A delta builds on the task's files in its base checkpoint: their own base,
                // then the task's file itself.
                let base = match base {
                    None => Vec::new(),
                    Some(b) => match self.base(b, &info.name) {
                        Some(chain) => chain,
                        None => {
                            let why = format!("its base checkpoint {b} is gone");
                            return self.ack(Ack::Declined { id, task, why });
                        }
                    },
                };
                self.queue(WriteJob {
                    id: Some(id),
                    task,
                    info,
                    snapshot,
                    base,
                    sync,
                    align,
                });
            }
            Report::Finished { task, snapshot } => {
                if let Some(info) = self.tasks.get(&task).cloned() {
                    self.queue(WriteJob {
                        id: None,
                        task,
                        info,
                        snapshot,
                        base: Vec::new(),
                        sync: Duration::ZERO,
                        align: Duration::ZERO,
                    });
                }
            }
            Report::Written {
                id: Some(id),
                task,
                file,
                sinks,
            } => {
                self.writing -= 1;
                if let Ok(f) = &file {
                    tracing::debug!(checkpoint = id, task = %f.task, "snapshot stored");
                }
                self.ack(Ack::Stored {
                    id,
                    task,
                    file,
                    sinks,
                });
            }
            Report::Written {
                id: None,
                task,
                file,
                sinks,
            } => {
                self.writing -= 1;
                self.ack(Ack::Finished { task, file, sinks });
            }
            Report::Decline { id, task, why } => self.ack(Ack::Declined { id, task, why }),
            Report::Notice(n) => self.apply(vec![n]),
            Report::Shutdown => {}
        }
    }

    fn queue(&mut self, job: WriteJob) {
        if let Some(jobs) = &self.jobs
            && jobs.send(job).is_ok()
        {
            self.writing += 1;
        }
    }

    /// Task `name`'s files in completed checkpoint `b`: its chain.
    fn base(&mut self, b: CheckpointId, name: &str) -> Option<Vec<FileRef>> {
        if !self.bases.iter().any(|m| m.id == b) {
            let meta = self.dir.metadata(b).ok().flatten()?;
            self.bases.push_back(meta);
            if self.bases.len() > 4 {
                self.bases.pop_front();
            }
        }
        let meta = self.bases.iter().find(|m| m.id == b)?;
        meta.tasks
            .iter()
            .find(|t| t.task == name)
            .map(TaskFile::chain)
    }

    fn apply(&mut self, notices: Vec<Notice>) {
        for n in notices {
            match n {
                Notice::Trigger { id } => {
                    self.shared.triggered.fetch_max(id, Ordering::SeqCst);
                }
                Notice::Complete { summary } => {
                    self.shared
                        .published
                        .fetch_max(summary.id, Ordering::SeqCst);
                    self.metrics.checkpoint_completed(CheckpointSummary {
                        id: summary.id,
                        duration: summary.duration,
                        bytes: summary.bytes,
                        full_bytes: summary.full_bytes,
                    });
                }
                Notice::Abort { id } => {
                    for g in &self.gates {
                        g.abort(id);
                    }
                }
            }
        }
    }
}
