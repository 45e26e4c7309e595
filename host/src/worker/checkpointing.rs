//! Checkpoints of a running job. The driver thread runs the coordinator
//! ([`crate::checkpoint::Coordinator`]): it triggers checkpoints (sources see the newest
//! trigger and inject its barrier), writes each task's snapshot into the checkpoint directory
//! (off the task's thread: the task only copies its state and forwards the barrier), completes a
//! checkpoint when every task's file is written, then publishes what the sinks pre-committed,
//! and aborts checkpoints that time out or fail, removing their files.

use super::channel::Gate;
use super::control::{CheckpointSummary, JobMetrics};
use crate::cancel::CancelToken;
use crate::checkpoint::{AbortReason, Action, CheckpointId, CheckpointSettings, Coordinator};
use crate::connectors::{commit, make_durable};
use crate::state::checkpoints::{CheckpointDir, FileRef, Metadata, TaskFile};
use crate::state::snapshot::TaskSnapshot;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// What a task tells the driver.
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
    /// A writer wrote (or failed to write) task `task`'s file of checkpoint `id`; `sinks` is
    /// what its sinks pre-committed.
    Written {
        id: CheckpointId,
        task: usize,
        file: Result<TaskFile, String>,
        sinks: Vec<Vec<u8>>,
    },
    /// Every task has ended: finish.
    Shutdown,
}

/// A task's snapshot to write.
struct WriteJob {
    id: CheckpointId,
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
    /// The newest checkpoint whose sinks' files are published.
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

/// What the job is, as a checkpoint's metadata records it.
pub struct JobInfo {
    pub name: String,
    pub max_parallelism: u32,
    pub nodes: BTreeMap<String, u32>,
}

/// The driver of one attempt's checkpoints.
pub struct Driver {
    thread: JoinHandle<Vec<Option<TaskSnapshot>>>,
    shutdown: mpsc::Sender<Report>,
}

impl Driver {
    /// Starts the driver for `tasks`; the first checkpoint gets id `first_id`. Returns each
    /// task's link, in the order of `tasks`.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        settings: CheckpointSettings,
        job: JobInfo,
        tasks: Vec<TaskInfo>,
        first_id: CheckpointId,
        gates: Vec<Arc<Gate>>,
        metrics: Arc<JobMetrics>,
        cancel: CancelToken,
    ) -> std::io::Result<(Driver, Vec<TaskLink>)> {
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            triggered: AtomicU64::new(first_id - 1),
            published: AtomicU64::new(first_id - 1),
        });
        let links = (0..tasks.len())
            .map(|task| TaskLink {
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
            std::thread::Builder::new()
                .name("weir-checkpoint-writer".into())
                .spawn(move || {
                    loop {
                        let job = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        let Ok(job) = job else { return };
                        // The sinks' pre-committed files reach the disk before the task's file
                        // is written, so a completed checkpoint's output is durable.
                        let durable = job.snapshot.sinks.iter().try_for_each(|(uid, p)| {
                            make_durable(p).map_err(|e| format!("sink {uid}: {e}"))
                        });
                        let file = durable
                            .and_then(|()| {
                                dir.write_task(
                                    job.id,
                                    &job.info.name,
                                    job.info.subtask,
                                    job.info.operators,
                                    &job.snapshot,
                                )
                                .map_err(|e| e.to_string())
                            })
                            .map(|mut f| {
                                f.sync_ms = job.sync.as_millis() as u64;
                                f.align_ms = job.align.as_millis() as u64;
                                f.base = job.base;
                                f
                            });
                        let sinks = job.snapshot.sinks.into_iter().map(|(_, p)| p).collect();
                        let _ = done.send(Report::Written {
                            id: job.id,
                            task: job.task,
                            file,
                            sinks,
                        });
                    }
                })?;
        }
        let state = DriverState {
            coordinator: Coordinator::new(
                settings.schedule,
                tasks.iter().map(|t| t.source).collect(),
                first_id,
                Instant::now(),
            ),
            dir,
            jobs: Some(jobs),
            settings,
            job,
            tasks,
            shared,
            gates,
            metrics,
            pending: HashMap::new(),
            finished: Vec::new(),
            finished_files: Vec::new(),
            completed: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("weir-checkpoints".into())
            .spawn(move || state.run(rx, cancel))?;
        Ok((
            Driver {
                thread,
                shutdown: tx,
            },
            links,
        ))
    }

    /// Ends the driver once every task has ended; returns the finished tasks' last snapshots.
    pub fn finish(self) -> Vec<Option<TaskSnapshot>> {
        let _ = self.shutdown.send(Report::Shutdown);
        self.thread.join().unwrap_or_default()
    }
}

/// A checkpoint in flight.
struct InFlight {
    triggered: Instant,
    triggered_unix_ms: u64,
    files: BTreeMap<usize, TaskFile>,
    /// What the sinks of each acknowledged task pre-committed.
    sinks: Vec<Vec<u8>>,
}

struct DriverState {
    coordinator: Coordinator,
    dir: CheckpointDir,
    /// The writers' queue (dropped at shutdown, which ends them).
    jobs: Option<mpsc::Sender<WriteJob>>,
    settings: CheckpointSettings,
    job: JobInfo,
    tasks: Vec<TaskInfo>,
    shared: Arc<Shared>,
    gates: Vec<Arc<Gate>>,
    metrics: Arc<JobMetrics>,
    pending: HashMap<CheckpointId, InFlight>,
    finished: Vec<Option<TaskSnapshot>>,
    /// Per finished task: the file of a completed checkpoint that holds its last snapshot,
    /// which later checkpoints refer to rather than write it again.
    finished_files: Vec<Option<TaskFile>>,
    /// The last few completed checkpoints' metadata, newest last: deltas build on them.
    completed: Vec<Metadata>,
}

impl DriverState {
    fn run(
        mut self,
        reports: mpsc::Receiver<Report>,
        cancel: CancelToken,
    ) -> Vec<Option<TaskSnapshot>> {
        self.finished = vec![None; self.tasks.len()];
        self.finished_files = vec![None; self.tasks.len()];
        loop {
            let wait = self
                .coordinator
                .next_wakeup()
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100));
            let actions = match reports.recv_timeout(wait) {
                Ok(Report::Shutdown) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Ok(report) => self.receive(report),
                Err(mpsc::RecvTimeoutError::Timeout) => Vec::new(),
            };
            self.apply(actions);
            if !cancel.is_cancelled() {
                let actions = self.coordinator.poll(Instant::now());
                self.apply(actions);
            }
        }
        // The attempt is over: what was in flight will never complete.
        self.jobs = None;
        for id in self.pending.keys() {
            self.dir.discard(*id);
        }
        self.finished
    }

    fn receive(&mut self, report: Report) -> Vec<Action> {
        let now = Instant::now();
        match report {
            Report::Snapshot {
                id,
                task,
                snapshot,
                base,
                sync,
                align,
            } => {
                let Some(flight) = self.pending.get(&id) else {
                    return Vec::new();
                };
                tracing::debug!(
                    checkpoint = id,
                    task = %self.tasks[task].name,
                    after_ms = flight.triggered.elapsed().as_millis() as u64,
                    align_ms = align.as_millis() as u64,
                    sync_ms = sync.as_millis() as u64,
                    "snapshot taken"
                );
                self.coordinator.taken(id, task);
                // A delta builds on the task's files in its base checkpoint: their own base,
                // then the task's file itself.
                let base = match base {
                    None => Vec::new(),
                    Some(b) => {
                        let name = &self.tasks[task].name;
                        match self
                            .completed
                            .iter()
                            .find(|m| m.id == b)
                            .and_then(|m| m.tasks.iter().find(|t| &t.task == name))
                        {
                            Some(t) => t.chain(),
                            None => {
                                return self.coordinator.decline(
                                    id,
                                    format!("task {name}: its base checkpoint {b} is gone"),
                                    now,
                                );
                            }
                        }
                    }
                };
                if let Some(jobs) = &self.jobs {
                    let _ = jobs.send(WriteJob {
                        id,
                        task,
                        info: self.tasks[task].clone(),
                        snapshot,
                        base,
                        sync,
                        align,
                    });
                }
                Vec::new()
            }
            Report::Written {
                id,
                task,
                file,
                sinks,
            } => {
                let Some(flight) = self.pending.get_mut(&id) else {
                    // Aborted meanwhile: its directory is gone or going (never one that
                    // completed: a checkpoint waits for every snapshot taken for it).
                    if !self.completed.iter().any(|m| m.id == id) {
                        self.dir.discard(id);
                    }
                    return Vec::new();
                };
                match file {
                    Ok(file) => {
                        tracing::debug!(
                            checkpoint = id,
                            task = %self.tasks[task].name,
                            after_ms = flight.triggered.elapsed().as_millis() as u64,
                            "snapshot stored"
                        );
                        flight.files.insert(task, file);
                        flight.sinks.extend(sinks);
                        self.coordinator.ack(id, task, now)
                    }
                    Err(why) => self.coordinator.decline(id, why, now),
                }
            }
            Report::Shutdown => Vec::new(),
            Report::Decline { id, task, why } => self.coordinator.decline(
                id,
                format!("task {} declined: {why}", self.tasks[task].name),
                now,
            ),
            Report::Finished { task, snapshot } => {
                self.finished[task] = Some(snapshot);
                self.coordinator.finished(task, now)
            }
        }
    }

    fn write(
        &self,
        id: CheckpointId,
        task: usize,
        snap: &TaskSnapshot,
    ) -> Result<TaskFile, String> {
        let t = &self.tasks[task];
        self.dir
            .write_task(id, &t.name, t.subtask, t.operators.clone(), snap)
            .map_err(|e| e.to_string())
    }

    fn apply(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Trigger(id) => self.trigger(id),
                Action::Complete(id) => self.complete(id),
                Action::Abort(id, why) => self.abort(id, &why),
            }
        }
    }

    fn trigger(&mut self, id: CheckpointId) {
        let unix_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.pending.insert(
            id,
            InFlight {
                triggered: Instant::now(),
                triggered_unix_ms: unix_ms,
                files: BTreeMap::new(),
                sinks: Vec::new(),
            },
        );
        if let Err(e) = self.dir.begin(id) {
            let actions = self.coordinator.decline(id, e.to_string(), Instant::now());
            self.apply(actions);
            return;
        }
        self.shared.triggered.store(id, Ordering::SeqCst);
    }

    fn complete(&mut self, id: CheckpointId) {
        let Some(mut flight) = self.pending.remove(&id) else {
            return;
        };
        // Finished tasks are in every checkpoint after they finished, with their last snapshot.
        let mut written = Vec::new();
        for task in 0..self.tasks.len() {
            if flight.files.contains_key(&task) {
                continue;
            }
            let Some(snap) = &self.finished[task] else {
                continue;
            };
            let durable = (snap.sinks.iter())
                .try_for_each(|(uid, p)| make_durable(p).map_err(|e| format!("sink {uid}: {e}")));
            if let Err(why) = durable {
                return self.abort(id, &AbortReason::Declined(why));
            }
            if let Some(file) = &self.finished_files[task] {
                // Written once: retention keeps it while a retained checkpoint refers to it.
                flight.files.insert(
                    task,
                    TaskFile {
                        sync_ms: 0,
                        align_ms: 0,
                        ..file.clone()
                    },
                );
                flight
                    .sinks
                    .extend(snap.sinks.iter().map(|(_, p)| p.clone()));
                continue;
            }
            match self.write(id, task, snap) {
                Ok(file) => {
                    written.push((task, file.clone()));
                    flight.files.insert(task, file);
                    flight
                        .sinks
                        .extend(snap.sinks.iter().map(|(_, p)| p.clone()));
                }
                Err(why) => return self.abort(id, &AbortReason::Declined(why)),
            }
        }
        let duration = flight.triggered.elapsed();
        let meta = Metadata {
            format: crate::state::checkpoints::FORMAT,
            job: self.job.name.clone(),
            id,
            triggered_unix_ms: flight.triggered_unix_ms,
            duration_ms: duration.as_millis() as u64,
            max_parallelism: self.job.max_parallelism,
            mode: match self.settings.mode {
                crate::checkpoint::Mode::ExactlyOnce => "exactly_once",
                crate::checkpoint::Mode::AtLeastOnce => "at_least_once",
            }
            .into(),
            nodes: self.job.nodes.clone(),
            tasks: flight.files.into_values().collect(),
        };
        if let Err(e) = self.dir.complete(&meta) {
            tracing::warn!(checkpoint = id, "checkpoint failed: {e}");
            self.dir.discard(id);
            return;
        }
        // Durable: what the sinks pre-committed up to this checkpoint is published.
        for pending in &flight.sinks {
            if let Err(e) = commit(pending, id) {
                tracing::error!(checkpoint = id, "cannot publish a sink's files: {e}");
            }
        }
        for (task, file) in written {
            self.finished_files[task] = Some(file);
        }
        self.completed.push(meta.clone());
        let keep = self.completed.len().saturating_sub(4);
        self.completed.drain(..keep);
        self.shared.published.store(id, Ordering::SeqCst);
        self.dir.retain(self.settings.retain);
        let bytes = meta.bytes();
        tracing::debug!(
            checkpoint = id,
            ms = duration.as_millis() as u64,
            bytes,
            "checkpoint complete"
        );
        self.metrics.checkpoint_completed(CheckpointSummary {
            id,
            duration,
            bytes,
            full_bytes: meta.full_bytes(),
        });
    }

    fn abort(&mut self, id: CheckpointId, why: &AbortReason) {
        self.pending.remove(&id);
        for g in &self.gates {
            g.abort(id);
        }
        self.dir.discard(id);
        match why {
            AbortReason::Subsumed => {
                tracing::debug!(checkpoint = id, "checkpoint subsumed by a newer one")
            }
            AbortReason::Timeout => tracing::warn!(
                checkpoint = id,
                "checkpoint aborted: not complete within checkpoint.timeout = {:?}",
                self.settings.schedule.timeout
            ),
            AbortReason::Declined(why) => {
                tracing::warn!(checkpoint = id, "checkpoint aborted: {why}")
            }
        }
    }
}
