//! Restoring a job from a checkpoint: which checkpoint (the newest complete one of this run, or
//! the one `--from` names), whether it fits the job, what each new task takes from it (keyed
//! state by key group, source positions by split, so any node may change parallelism), and
//! publishing what its sinks had pre-committed.

use crate::connectors::share;
use crate::plan::JobGraph;
use crate::state::KeyedState;
use crate::state::checkpoints::{CheckpointDir, CheckpointError, Restored};
use crate::state::snapshot::{self, TaskSnapshot};
use std::path::Path;

/// Entries of a task snapshot by uid (its sources' positions, its operators' private states).
type Named = Vec<(String, Vec<u8>)>;
use std::sync::Arc;

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

/// The newest complete checkpoint of `dir` numbered `since` or later, if there is one.
pub fn latest_since(dir: &Path, since: u64) -> Option<Arc<Restored>> {
    let dir = CheckpointDir::new(dir);
    match dir.latest() {
        Ok(r) if r.metadata.id >= since => Some(Arc::new(r)),
        _ => None,
    }
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
