//! The job-wide half of checkpointing (Flink's `CheckpointCoordinator` with its I/O): it runs
//! the sans-IO [`Coordinator`], creates each checkpoint's directory when it triggers it, takes
//! the tasks' acknowledgements (each with the file its task's side stored, and what its sinks
//! pre-committed), writes the metadata that completes a checkpoint, then publishes the sinks'
//! files up to it and applies retention; it removes the files of checkpoints that are aborted.
//!
//! The tasks' half (taking snapshots, writing task files, injecting barriers) runs wherever
//! the tasks run: in the same process in local mode, on each worker in a cluster, with the
//! [`Ack`]s and [`Notice`]s between the two halves crossing the control plane.

use crate::checkpoint::{AbortReason, Action, CheckpointId, CheckpointSettings, Coordinator};
use crate::connectors::commit;
use crate::plan::JobGraph;
pub use crate::state::checkpoints::{Ack, Notice, Summary};
use crate::state::checkpoints::{CheckpointDir, CheckpointError, Metadata, Restored, TaskFile};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// A task as the keeper knows it.
#[derive(Debug, Clone)]
pub struct TaskName {
    /// Its chain's head uid and its subtask, e.g. `count-1`.
    pub name: String,
    /// Its chain starts with a source (barriers are injected there).
    pub source: bool,
}

/// What the job is, as a checkpoint's metadata records it.
#[derive(Debug, Clone)]
pub struct JobInfo {
    pub name: String,
    pub max_parallelism: u32,
    pub nodes: BTreeMap<String, u32>,
    /// The component each node that runs one runs, by uid.
    pub components: BTreeMap<String, String>,
    /// The components swapped out of each node, oldest first.
    pub replaced: BTreeMap<String, Vec<String>>,
}

impl JobInfo {
    pub fn of(job: &JobGraph) -> Self {
        JobInfo {
            name: job.name.clone(),
            max_parallelism: job.max_parallelism,
            nodes: job
                .nodes
                .iter()
                .map(|n| (n.uid.clone(), n.parallelism))
                .collect(),
            components: job.components_by_uid(),
            replaced: BTreeMap::new(),
        }
    }

    /// The job `job` after `swaps`: what its operators' components replaced.
    pub fn with_swaps(mut self, swaps: &[super::view::SwapInfo]) -> Self {
        for s in swaps.iter().filter(|s| s.took()) {
            self.replaced
                .entry(s.operator.clone())
                .or_default()
                .push(s.from.clone());
        }
        self
    }
}

/// A checkpoint in flight.
struct InFlight {
    triggered: Instant,
    triggered_unix_ms: u64,
    files: BTreeMap<usize, TaskFile>,
    /// What the sinks of each acknowledged task pre-committed.
    sinks: Vec<Vec<u8>>,
    /// The components the job runs from this checkpoint's barrier on.
    components: BTreeMap<String, String>,
}

/// A finished task's last snapshot file (or why it could not be stored), and what its sinks
/// pre-committed.
type FinishedTask = (Result<TaskFile, String>, Vec<Vec<u8>>);

/// The keeper of one attempt's checkpoints.
pub struct Keeper {
    coordinator: Coordinator,
    dir: CheckpointDir,
    /// The attempt's name, unique to it.
    attempt: String,
    settings: CheckpointSettings,
    job: JobInfo,
    tasks: Vec<TaskName>,
    pending: HashMap<CheckpointId, InFlight>,
    /// Per finished task: the file of its last snapshot (or why it could not be stored) and
    /// what its sinks pre-committed.
    finished: Vec<Option<FinishedTask>>,
    completed: Vec<CheckpointId>,
    /// Savepoints triggered and not yet exported (or aborted): retention waits for them, since
    /// a newer checkpoint may complete first and their files, or the files their deltas build
    /// on, must stay until they are exported.
    savepoints: std::collections::BTreeSet<CheckpointId>,
}

impl Keeper {
    /// The keeper of `tasks` (numbered as the job's tasks are) of the attempt named `attempt`
    /// (unique to it: its finished tasks' files are kept under that name); the first
    /// checkpoint gets id `first_id`.
    pub fn new(
        settings: CheckpointSettings,
        job: JobInfo,
        tasks: Vec<TaskName>,
        attempt: String,
        first_id: CheckpointId,
        now: Instant,
    ) -> Self {
        Keeper {
            coordinator: Coordinator::new(
                settings.schedule,
                tasks.iter().map(|t| t.source).collect(),
                first_id,
                now,
            ),
            dir: CheckpointDir::new(&settings.dir),
            attempt,
            settings,
            job,
            finished: vec![None; tasks.len()],
            tasks,
            pending: HashMap::new(),
            completed: Vec::new(),
            savepoints: std::collections::BTreeSet::new(),
        }
    }

    /// When [`Keeper::poll`] is next due.
    pub fn next_wakeup(&self) -> Instant {
        self.coordinator.next_wakeup()
    }

    /// Triggers and times out checkpoints as the clock says.
    pub fn poll(&mut self, now: Instant) -> Vec<Notice> {
        let actions = self.coordinator.poll(now);
        self.apply(actions)
    }

    /// Triggers a savepoint now (a checkpoint no newer one subsumes): its id, and the notices
    /// for the tasks' sides.
    pub fn savepoint(&mut self, now: Instant) -> Result<(CheckpointId, Vec<Notice>), String> {
        let (id, actions) = self.coordinator.savepoint(now)?;
        self.savepoints.insert(id);
        Ok((id, self.apply(actions)))
    }

    /// Holds (or releases) the schedule while a swap is being prepared for the checkpoint
    /// [`Keeper::next_id`] names.
    pub fn hold(&mut self, held: bool) {
        self.coordinator.hold(held);
    }

    /// The id the next checkpoint triggered gets.
    pub fn next_id(&self) -> CheckpointId {
        self.coordinator.next_id()
    }

    /// Triggers the savepoint at whose barrier operator `operator` swaps to component
    /// `component`: it must get id `expected` (the id the workers prepared the swap for); the
    /// schedule is released. Its checkpoint and every later one record the new component.
    pub fn swap_savepoint(
        &mut self,
        now: Instant,
        expected: CheckpointId,
        operator: &str,
        component: &str,
    ) -> Result<Vec<Notice>, String> {
        self.coordinator.hold(false);
        if self.coordinator.next_id() != expected {
            return Err(format!(
                "checkpoint {} was triggered while the swap was prepared for it",
                expected
            ));
        }
        let from = self
            .job
            .components
            .insert(operator.to_string(), component.to_string());
        self.job
            .replaced
            .entry(operator.to_string())
            .or_default()
            .extend(from);
        self.savepoint(now).map(|(_, notices)| notices)
    }

    /// Copies completed checkpoint `id` into the new directory `to` with `marker` as its
    /// `_savepoint` file: a savepoint, self-contained, that retention never removes.
    pub fn export(&mut self, id: CheckpointId, to: &Path, marker: &[u8]) -> Result<(), String> {
        self.savepoints.remove(&id);
        let meta = self
            .dir
            .metadata(id)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("checkpoint {id} is not complete"))?;
        self.dir
            .export(&meta, to, marker)
            .map_err(|e| format!("cannot write the savepoint: {e}"))
    }

    /// An acknowledgement from a task's side.
    pub fn receive(&mut self, ack: Ack, now: Instant) -> Vec<Notice> {
        let task_name = |t: usize| self.tasks.get(t).map_or("?", |t| t.name.as_str());
        let actions = match ack {
            Ack::Taken { id, task } if task < self.tasks.len() => {
                if self.pending.contains_key(&id) {
                    self.coordinator.taken(id, task);
                }
                Vec::new()
            }
            Ack::Stored {
                id,
                task,
                file,
                sinks,
            } if task < self.tasks.len() => {
                let Some(flight) = self.pending.get_mut(&id) else {
                    // Aborted meanwhile: its directory is gone or going (never one that
                    // completed: a checkpoint waits for every snapshot taken for it).
                    if !self.completed.contains(&id) {
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
            Ack::Declined { id, task, why } if task < self.tasks.len() => {
                let why = format!("task {} declined: {why}", task_name(task));
                self.coordinator.decline(id, why, now)
            }
            Ack::Finished { task, file, sinks } if task < self.tasks.len() => {
                if let Err(why) = &file {
                    // Without its last snapshot no later checkpoint can complete; its sinks'
                    // files are still published when the job finishes.
                    tracing::warn!(task = %task_name(task), "cannot store the last snapshot of a finished task: {why}");
                }
                self.finished[task] = Some((file, sinks));
                self.coordinator.finished(task, now)
            }
            other => {
                tracing::warn!("an acknowledgement for a task the job does not have: {other:?}");
                Vec::new()
            }
        };
        self.apply(actions)
    }

    fn apply(&mut self, actions: Vec<Action>) -> Vec<Notice> {
        let mut notices = Vec::new();
        let mut actions: std::collections::VecDeque<Action> = actions.into();
        while let Some(action) = actions.pop_front() {
            match action {
                Action::Trigger(id) => match self.trigger(id) {
                    Ok(()) => notices.push(Notice::Trigger { id }),
                    Err(why) => actions.extend(self.coordinator.decline(id, why, Instant::now())),
                },
                Action::Complete(id) => match self.complete(id) {
                    Ok(summary) => notices.push(Notice::Complete { summary }),
                    Err(why) => {
                        self.abort(id, &AbortReason::Declined(why));
                        notices.push(Notice::Abort { id });
                    }
                },
                Action::Abort(id, why) => {
                    self.abort(id, &why);
                    notices.push(Notice::Abort { id });
                }
            }
        }
        notices
    }

    fn trigger(&mut self, id: CheckpointId) -> Result<(), String> {
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
                components: self.job.components.clone(),
            },
        );
        self.dir.begin(id).map_err(|e| e.to_string())
    }

    /// Writes checkpoint `id`'s metadata and publishes its sinks' files; an error says why it
    /// could not be completed (then the caller aborts it).
    fn complete(&mut self, id: CheckpointId) -> Result<Summary, String> {
        let Some(mut flight) = self.pending.remove(&id) else {
            return Err("it is no longer pending".into());
        };
        // Finished tasks are in every checkpoint after they finished, with their last snapshot.
        for (task, last) in self.finished.iter().enumerate() {
            if let (Some((file, sinks)), false) = (last, flight.files.contains_key(&task)) {
                let file = file.as_ref().map_err(|why| {
                    format!(
                        "the last snapshot of finished task {} was not stored: {why}",
                        self.tasks[task].name
                    )
                })?;
                flight.files.insert(
                    task,
                    TaskFile {
                        sync_ms: 0,
                        align_ms: 0,
                        ..file.clone()
                    },
                );
                flight.sinks.extend(sinks.iter().cloned());
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
            components: flight.components,
            replaced: self.job.replaced.clone(),
        };
        self.dir.complete(&meta).map_err(|e| e.to_string())?;
        // Durable: what the sinks pre-committed up to this checkpoint is published.
        for pending in &flight.sinks {
            if let Err(e) = commit(pending, id) {
                tracing::error!(checkpoint = id, "cannot publish a sink's files: {e}");
            }
        }
        self.completed.push(id);
        let keep = self.completed.len().saturating_sub(4);
        self.completed.drain(..keep);
        if self.savepoints.is_empty() {
            self.dir.retain(self.settings.retain, Some(&self.attempt));
        }
        let bytes = meta.bytes();
        tracing::debug!(
            checkpoint = id,
            ms = duration.as_millis() as u64,
            bytes,
            "checkpoint complete"
        );
        Ok(Summary {
            id,
            duration,
            bytes,
            full_bytes: meta.full_bytes(),
        })
    }

    fn abort(&mut self, id: CheckpointId, why: &AbortReason) {
        self.pending.remove(&id);
        self.savepoints.remove(&id);
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

    /// The attempt is over: what was in flight will never complete. When the job `finished`,
    /// what its finished tasks' sinks pre-committed is final and is published.
    pub fn finish(mut self, finished: bool) -> Result<(), String> {
        for id in std::mem::take(&mut self.pending).into_keys() {
            self.dir.discard(id);
        }
        self.dir.remove_unused_finished(&self.attempt);
        if finished {
            for (_, sinks) in self.finished.iter().flatten() {
                for pending in sinks {
                    commit(pending, CheckpointId::MAX)
                        .map_err(|e| format!("cannot publish a sink's files: {e}"))?;
                }
            }
        }
        Ok(())
    }
}

/// Publishes what the checkpoint's sinks had pre-committed up to it (a crash may have come
/// between completing it and publishing). An error names the sink's uid and what failed.
pub fn publish_sinks(restored: &Restored) -> Result<(), (String, String)> {
    for task in &restored.tasks {
        for (uid, pending) in &task.sinks {
            commit(pending, restored.metadata.id).map_err(|e| {
                (
                    uid.clone(),
                    format!(
                        "cannot publish the files checkpoint {} pre-committed: {e}",
                        restored.metadata.id
                    ),
                )
            })?;
        }
    }
    Ok(())
}

/// Why a checkpoint cannot be restored into this job.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("cannot restore: {0}")]
    Read(#[from] CheckpointError),
    #[error("cannot restore checkpoint {id}: {why}")]
    Mismatch { id: u64, why: String },
}

/// Reads the checkpoint `path` names (a checkpoint directory: its newest complete checkpoint;
/// or one `chk-<id>` in it) and checks that it fits `job`.
pub fn load(
    path: &Path,
    job: &JobGraph,
    allow_non_restored: bool,
) -> Result<Arc<Restored>, RestoreError> {
    let (dir, id) = CheckpointDir::resolve(path);
    let restored = match id {
        Some(id) => {
            let meta = dir.metadata(id)?.ok_or_else(|| RestoreError::Mismatch {
                id,
                why: "it is not complete".into(),
            })?;
            dir.load(&meta)?
        }
        None => dir.latest()?,
    };
    for why in &restored.skipped {
        tracing::warn!("skipped a checkpoint that does not read back whole: {why}");
    }
    check(&restored, job, allow_non_restored)?;
    Ok(Arc::new(restored))
}

/// Refuses a checkpoint of another job: other key groups, or state of operators this job does
/// not have (unless allowed, as Flink's `--allowNonRestoredState`).
pub fn check(
    restored: &Restored,
    job: &JobGraph,
    allow_non_restored: bool,
) -> Result<(), RestoreError> {
    let meta = &restored.metadata;
    let mismatch = |why: String| RestoreError::Mismatch { id: meta.id, why };
    if meta.max_parallelism != job.max_parallelism {
        return Err(mismatch(format!(
            "it has {} key groups (job.max_parallelism), the job {}; they must be equal",
            meta.max_parallelism, job.max_parallelism
        )));
    }
    let known = |uid: &str| job.nodes.iter().any(|n| n.uid == uid);
    let mut unknown: Vec<&str> = meta
        .tasks
        .iter()
        .flat_map(|t| &t.operators)
        .map(String::as_str)
        .chain(
            restored
                .tasks
                .iter()
                .flat_map(|t| t.sources.iter().map(|(u, _)| u.as_str())),
        )
        .filter(|uid| !known(uid))
        .collect();
    unknown.sort_unstable();
    unknown.dedup();
    if !unknown.is_empty() && !allow_non_restored {
        return Err(mismatch(format!(
            "it holds state of {} that this job does not have (operator uids: {}); \
             pass --allow-non-restored-state to drop that state",
            if unknown.len() == 1 {
                "a node"
            } else {
                "nodes"
            },
            unknown.join(", ")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{Backend, Mode, Schedule};
    use std::time::Duration;

    fn entry(id: u64, task: &str) -> TaskFile {
        TaskFile {
            task: task.into(),
            subtask: 0,
            file: format!("chk-{id}/{task}.redb"),
            operators: Vec::new(),
            bytes: 1,
            hash: "0".into(),
            sync_ms: 0,
            align_ms: 0,
            base: Vec::new(),
        }
    }

    /// A source task and a sink task, checkpoints every 10 ms into `dir`.
    fn keeper(dir: &Path, now: Instant) -> Keeper {
        let settings = CheckpointSettings {
            schedule: Schedule {
                interval: Duration::from_millis(10),
                timeout: Duration::from_secs(60),
                min_pause: Duration::ZERO,
                max_concurrent: 1,
            },
            mode: Mode::ExactlyOnce,
            retain: 2,
            retain_on_cancel: false,
            incremental: false,
            backend: Backend::Memory,
            dir: dir.to_path_buf(),
        };
        let job = JobInfo {
            name: "j".into(),
            max_parallelism: 128,
            nodes: BTreeMap::new(),
            components: BTreeMap::new(),
            replaced: BTreeMap::new(),
        };
        let tasks = ["src-0", "out-0"]
            .iter()
            .enumerate()
            .map(|(i, n)| TaskName {
                name: n.to_string(),
                source: i == 0,
            })
            .collect();
        Keeper::new(settings, job, tasks, "j-0".into(), 1, now)
    }

    #[test]
    fn a_checkpoint_completes_with_every_task_s_file_and_a_finished_task_stands_in_later_ones() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = Instant::now();
        let mut k = keeper(dir.path(), t0);
        assert_eq!(k.poll(t0), vec![]);
        let ms = |n| t0 + Duration::from_millis(n);
        assert_eq!(k.poll(ms(10)), vec![Notice::Trigger { id: 1 }]);
        assert!(dir.path().join("chk-1").is_dir(), "its directory exists");
        let stored = |id, task: usize, name| Ack::Stored {
            id,
            task,
            file: Ok(entry(id, name)),
            sinks: Vec::new(),
        };
        assert_eq!(k.receive(Ack::Taken { id: 1, task: 0 }, ms(11)), vec![]);
        assert_eq!(k.receive(stored(1, 0, "src-0"), ms(12)), vec![]);
        let done = k.receive(stored(1, 1, "out-0"), ms(13));
        let [Notice::Complete { summary }] = &done[..] else {
            panic!("{done:?}")
        };
        assert_eq!((summary.id, summary.bytes), (1, 2));
        let dir_ = CheckpointDir::new(dir.path());
        assert_eq!(dir_.metadata(1).unwrap().unwrap().tasks.len(), 2);
        // The sink finishes with its last snapshot; checkpoint 2 holds it without its ack.
        let last = TaskFile {
            file: "finished/j-0/out-0.redb".into(),
            ..entry(0, "out-0")
        };
        let finished = Ack::Finished {
            task: 1,
            file: Ok(last.clone()),
            sinks: Vec::new(),
        };
        assert_eq!(k.receive(finished, ms(14)), vec![]);
        assert_eq!(k.poll(ms(30)), vec![Notice::Trigger { id: 2 }]);
        let done = k.receive(stored(2, 0, "src-0"), ms(31));
        assert!(matches!(done[..], [Notice::Complete { .. }]), "{done:?}");
        let meta = dir_.metadata(2).unwrap().unwrap();
        assert!(meta.tasks.iter().any(|t| t.file == last.file), "{meta:?}");
        // A declined checkpoint is aborted and its directory removed.
        assert_eq!(k.poll(ms(50)), vec![Notice::Trigger { id: 3 }]);
        let declined = Ack::Declined {
            id: 3,
            task: 0,
            why: "no".into(),
        };
        assert_eq!(k.receive(declined, ms(51)), vec![Notice::Abort { id: 3 }]);
        assert!(!dir.path().join("chk-3").exists());
        // An acknowledgement of a task the job does not have changes nothing.
        assert_eq!(k.receive(stored(3, 9, "x"), ms(52)), vec![]);
        k.finish(true).unwrap();
    }
}
