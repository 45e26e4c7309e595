//! Restoring a job from a checkpoint: which checkpoint (the newest complete one of this run, or
//! the one `--from` names), whether it fits the job, what each new task takes from it (keyed
//! state by key group, source positions by split, so any node may change parallelism), and
//! publishing what its sinks had pre-committed.

use crate::connectors::share;
use crate::plan::JobGraph;
use crate::state::KeyedState;
use crate::state::checkpoints::{CheckpointDir, Restored};
use crate::state::snapshot::{self, TaskSnapshot};
use std::path::Path;

/// Entries of a task snapshot by uid (its sources' positions, its operators' private states).
type Named = Vec<(String, Vec<u8>)>;
use std::sync::Arc;

pub use crate::coordinator::checkpoints::{RestoreError, check, load};

/// The newest complete checkpoint of `dir` numbered `since` or later, if there is one.
pub fn latest_since(dir: &Path, since: u64) -> Option<Arc<Restored>> {
    let dir = CheckpointDir::new(dir);
    match dir.latest() {
        Ok(r) if r.metadata.id >= since => Some(Arc::new(r)),
        _ => None,
    }
}

pub use crate::coordinator::checkpoints::publish_sinks;

/// What one new task takes from a checkpoint.
pub struct TaskRestore {
    pub restored: Arc<Restored>,
    /// The task of the checkpoint with the same name, when its chain kept its parallelism.
    pub same: Option<usize>,
}

impl TaskRestore {
    /// For the task `name` (subtask `subtask`) of chain `nodes` with `parallelism` in `job`.
    pub fn new(
        restored: &Arc<Restored>,
        job: &JobGraph,
        nodes: &[usize],
        name: &str,
        parallelism: u32,
    ) -> Self {
        let kept = nodes
            .iter()
            .all(|&n| restored.metadata.nodes.get(&job.nodes[n].uid) == Some(&parallelism));
        let same = kept
            .then(|| restored.metadata.tasks.iter().position(|t| t.task == name))
            .flatten();
        TaskRestore {
            restored: restored.clone(),
            same,
        }
    }

    /// The task's last snapshot, if it had finished in the checkpoint: then it ends its
    /// outputs at once instead of running again, and every later checkpoint holds this
    /// snapshot, keyed state included (read whole into memory here: a finished task's state
    /// is not streamed).
    pub fn finished(&self) -> Result<Option<TaskSnapshot>, String> {
        let Some(i) = self.same.filter(|&i| self.restored.tasks[i].finished) else {
            return Ok(None);
        };
        let meta = &self.restored.metadata;
        let all = 0..meta.max_parallelism;
        let mut snap = self.restored.tasks[i].clone();
        for uid in &meta.tasks[i].operators {
            let mut state = KeyedState::new(all.clone(), meta.max_parallelism, usize::MAX);
            for file in &self.restored.files[i] {
                snapshot::read_keyed(file, uid, all.clone(), |batch| {
                    state.restore(batch).map_err(|e| e.to_string())
                })
                .map_err(|e| format!("cannot restore keyed state: {e}"))?;
            }
            snap.operators.push((uid.clone(), state.snapshot()));
        }
        Ok(Some(snap))
    }

    /// Every old subtask's entry for `uid` in the part of its snapshot `part` picks, by
    /// subtask.
    fn by_subtask(&self, uid: &str, part: fn(&TaskSnapshot) -> &Named) -> Vec<(u32, &[u8])> {
        let mut entries: Vec<(u32, &[u8])> = self
            .restored
            .metadata
            .tasks
            .iter()
            .zip(&self.restored.tasks)
            .flat_map(|(t, s)| {
                part(s)
                    .iter()
                    .filter(|(u, _)| u == uid)
                    .map(move |(_, p)| (t.subtask, p.as_slice()))
            })
            .collect();
        entries.sort_by_key(|(subtask, _)| *subtask);
        entries
    }

    /// Every subtask's position of source `uid` in the checkpoint, by subtask (empty if it had
    /// none: a source new to the job starts from its beginning).
    pub fn source(&self, uid: &str) -> Vec<&[u8]> {
        (self.by_subtask(uid, |s| &s.sources).into_iter())
            .map(|(_, p)| p)
            .collect()
    }

    /// The private states of operator `uid` that subtask `subtask` of `parallelism` takes over
    /// (see `weir:operator/checkpoint-hooks`).
    pub fn private(&self, uid: &str, subtask: u32, parallelism: u32) -> Vec<&[u8]> {
        let states = self.by_subtask(uid, |s| &s.private);
        share(states, subtask, parallelism)
            .into_iter()
            .map(|(_, p)| p)
            .collect()
    }

    /// The files of every snapshot of operator `uid`'s keyed state, a chain per old task (a
    /// full snapshot, then the deltas on it); each subtask streams its key groups from them.
    pub fn operator<'a>(
        &'a self,
        uid: &'a str,
    ) -> impl Iterator<Item = &'a [std::path::PathBuf]> + 'a {
        self.restored
            .metadata
            .tasks
            .iter()
            .zip(&self.restored.files)
            .filter(move |(t, _)| t.operators.iter().any(|u| u == uid))
            .map(|(_, files)| files.as_slice())
    }
}
