//! A job's checkpoint directory:
//!
//! ```text
//! DIR/chk-<id>/<task>.redb     one task's snapshot (see `snapshot`), written by the driver
//! DIR/chk-<id>/_metadata       JSON: the checkpoint's tasks, files, sizes and hashes, written
//!                              last, through a temporary file and a rename
//! ```
//!
//! A checkpoint is complete exactly when its `_metadata` exists: a crash at any moment leaves a
//! complete checkpoint or a directory without metadata, which restore ignores and retention
//! removes. Restore checks every file against the size and hash its metadata records, so a
//! truncated or corrupted file is refused by name, and the previous complete checkpoint is taken.

use super::snapshot::{self, SnapshotError, TaskSnapshot};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

const METADATA: &str = "_metadata";
/// Where finished tasks' last snapshots are kept.
const FINISHED: &str = "finished";
/// The layout version of a checkpoint (2: keyed state in chunks per key group and state).
pub const FORMAT: u32 = 2;

/// What a complete checkpoint holds, as its `_metadata` file records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// The layout's version.
    pub format: u32,
    pub job: String,
    pub id: u64,
    /// When it was triggered, in ms since the Unix epoch.
    pub triggered_unix_ms: u64,
    /// From the trigger to the last task's file written.
    pub duration_ms: u64,
    pub max_parallelism: u32,
    /// `exactly_once` or `at_least_once`.
    pub mode: String,
    /// Every node of the job, by uid, with its parallelism.
    pub nodes: BTreeMap<String, u32>,
    pub tasks: Vec<TaskFile>,
    /// The component each node that runs one ran at this checkpoint, by uid (a content hash
    /// in a cluster, a path in local mode): after a swap, the new one. Older checkpoints have
    /// none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub components: BTreeMap<String, String>,
    /// The components swapped out of each node before this checkpoint, oldest first: a job
    /// submitted from it with one of those runs the node's component above instead (it is a
    /// restore of the job after a swap, not an upgrade).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub replaced: BTreeMap<String, Vec<String>>,
}

/// One task's file in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFile {
    /// The task's name: its chain's head uid and its subtask, e.g. `count-1`.
    pub task: String,
    pub subtask: u32,
    /// The path, relative to the checkpoint directory's root.
    pub file: String,
    /// The operators whose keyed state it holds.
    pub operators: Vec<String>,
    pub bytes: u64,
    /// xxh3-64 of the whole file, in hex.
    pub hash: String,
    /// The task's synchronous pause: snapshot copied and barrier forwarded.
    pub sync_ms: u64,
    /// How long the task aligned its inputs.
    pub align_ms: u64,
    /// For an incremental snapshot (its keyed state a delta): the files it builds on, the
    /// full snapshot first, each later one a delta on those before it. Empty for a full one.
    #[serde(default)]
    pub base: Vec<FileRef>,
}

/// A file of an earlier checkpoint that a delta builds on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// The path, relative to the checkpoint directory's root.
    pub file: String,
    pub bytes: u64,
    /// xxh3-64 of the whole file, in hex.
    pub hash: String,
}

impl TaskFile {
    /// The files this task's state consists of, oldest first: its base, then itself.
    pub fn chain(&self) -> Vec<FileRef> {
        let mut chain = self.base.clone();
        chain.push(FileRef {
            file: self.file.clone(),
            bytes: self.bytes,
            hash: self.hash.clone(),
        });
        chain
    }
}

impl Metadata {
    /// The size of the files this checkpoint wrote (with incremental checkpoints, its deltas;
    /// a task that had finished before may refer to the file an earlier one wrote).
    pub fn bytes(&self) -> u64 {
        let own = format!("chk-{}/", self.id);
        self.tasks
            .iter()
            .filter(|t| t.file.starts_with(&own))
            .map(|t| t.bytes)
            .sum()
    }

    /// The size of every file a restore from this checkpoint reads: its own and the earlier
    /// ones its deltas build on.
    pub fn full_bytes(&self) -> u64 {
        self.tasks
            .iter()
            .flat_map(TaskFile::chain)
            .map(|f| f.bytes)
            .sum()
    }
}

// What the two halves of checkpointing tell each other (see `coordinator::checkpoints`): the
// tasks' side, wherever tasks run, and the job's keeper, which completes checkpoints.

/// From a task's side to the keeper.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Ack {
    /// Task `task` took its snapshot for checkpoint `id` (its file follows).
    Taken { id: u64, task: usize },
    /// Task `task`'s file of checkpoint `id` is stored (or could not be), with what its sinks
    /// pre-committed.
    Stored {
        id: u64,
        task: usize,
        file: Result<TaskFile, String>,
        sinks: Vec<Vec<u8>>,
    },
    /// Task `task` cannot take part in checkpoint `id`.
    Declined { id: u64, task: usize, why: String },
    /// Task `task` has finished; `file` holds its last snapshot, which stands for it in every
    /// later checkpoint.
    Finished {
        task: usize,
        file: Result<TaskFile, String>,
        sinks: Vec<Vec<u8>>,
    },
}

/// From the keeper to the tasks' sides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Notice {
    /// Sources inject barrier `id` (its directory exists).
    Trigger { id: u64 },
    /// Checkpoint `id` is complete and its sinks' files are published.
    Complete { summary: Summary },
    /// Checkpoint `id` will not complete: stop aligning for it.
    Abort { id: u64 },
}

/// A completed checkpoint, for progress and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub id: u64,
    pub duration: Duration,
    /// Bytes this checkpoint wrote.
    pub bytes: u64,
    /// Bytes a restore from it reads.
    pub full_bytes: u64,
}

/// What a `chk-<id>` directory holds.
#[derive(Debug)]
pub enum Status {
    Complete(Box<Metadata>),
    /// No metadata, but files a complete checkpoint's deltas build on (retention removed the
    /// rest).
    Base,
    /// No metadata: in flight, aborted or cut short by a crash; restore ignores it.
    Incomplete,
    /// Metadata that cannot be read.
    Unreadable(CheckpointError),
}

/// A checkpoint directory that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Corrupt { path: PathBuf, message: String },
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("{}: no complete checkpoint to restore from{}", dir.display(), if skipped.is_empty() { String::new() } else { format!(" ({})", skipped.join("; ")) })]
    NoneComplete { dir: PathBuf, skipped: Vec<String> },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A checkpoint, checked and read back for a restore.
#[derive(Debug, Clone)]
pub struct Restored {
    pub metadata: Metadata,
    /// Each task's snapshot but its keyed state, in the metadata's order.
    pub tasks: Vec<TaskSnapshot>,
    /// Each task's files, in the metadata's order: its full snapshot, then each delta on it
    /// (see [`snapshot::read_keyed`]).
    pub files: Vec<Vec<PathBuf>>,
    /// Why newer checkpoints were passed over, if any were.
    pub skipped: Vec<String>,
}

/// The checkpoint directory of one job.
#[derive(Debug, Clone)]
pub struct CheckpointDir {
    root: PathBuf,
}

impl CheckpointDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        CheckpointDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn chk(&self, id: u64) -> PathBuf {
        self.root.join(format!("chk-{id}"))
    }

    /// Creates the directory of checkpoint `id`.
    pub fn begin(&self, id: u64) -> Result<(), CheckpointError> {
        let dir = self.chk(id);
        fs::create_dir_all(&dir).map_err(io(&dir))
    }

    /// Writes task `task`'s snapshot into checkpoint `id`; returns its entry (timings left to
    /// the caller).
    pub fn write_task(
        &self,
        id: u64,
        task: &str,
        subtask: u32,
        operators: Vec<String>,
        snap: &TaskSnapshot,
    ) -> Result<TaskFile, CheckpointError> {
        let file = format!("chk-{id}/{task}.redb");
        // A file left by an earlier try at the same checkpoint id is replaced.
        let _ = fs::remove_file(self.root.join(&file));
        self.write_file(file, task, subtask, operators, snap)
    }

    /// Writes `snap` as `file` (relative to the root); its entry.
    fn write_file(
        &self,
        file: String,
        task: &str,
        subtask: u32,
        operators: Vec<String>,
        snap: &TaskSnapshot,
    ) -> Result<TaskFile, CheckpointError> {
        let written = snapshot::write(&self.root.join(&file), snap)?;
        Ok(TaskFile {
            task: task.to_string(),
            subtask,
            file,
            operators,
            bytes: written.bytes,
            hash: written.hash,
            sync_ms: 0,
            align_ms: 0,
            base: Vec::new(),
        })
    }

    /// Writes the last snapshot of task `task`, which has finished, for the attempt named
    /// `attempt` (unique to it): every later checkpoint refers to this file, in
    /// `finished/<attempt>/`, instead of writing it again.
    pub fn write_finished(
        &self,
        attempt: &str,
        task: &str,
        subtask: u32,
        operators: Vec<String>,
        snap: &TaskSnapshot,
    ) -> Result<TaskFile, CheckpointError> {
        let dir = self.root.join(FINISHED).join(attempt);
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let file = format!("{FINISHED}/{attempt}/{task}.redb");
        self.write_file(file, task, subtask, operators, snap)
    }

    /// Removes the files of finished tasks of attempt `attempt` that no complete checkpoint
    /// refers to (the attempt is over: nothing will).
    pub fn remove_unused_finished(&self, attempt: &str) {
        let (complete, _) = self.completed();
        let used: std::collections::HashSet<String> = complete
            .iter()
            .flat_map(|m| m.tasks.iter().flat_map(TaskFile::chain))
            .map(|f| f.file)
            .collect();
        let dir = self.root.join(FINISHED).join(attempt);
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let file = format!(
                "{FINISHED}/{attempt}/{}",
                entry.file_name().to_string_lossy()
            );
            if !used.contains(&file) {
                let _ = fs::remove_file(entry.path());
            }
        }
        let _ = fs::remove_dir(&dir);
    }

    /// Marks checkpoint `meta.id` complete: its metadata, durably and atomically.
    pub fn complete(&self, meta: &Metadata) -> Result<(), CheckpointError> {
        let dir = self.chk(meta.id);
        let tmp = dir.join(format!("{METADATA}.tmp"));
        let text = serde_json::to_vec_pretty(meta).expect("metadata serializes");
        let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&text).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        let path = dir.join(METADATA);
        fs::rename(&tmp, &path).map_err(io(&path))?;
        fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&dir))
    }

    /// Copies complete checkpoint `meta` into a new directory `to`, a checkpoint directory of
    /// its own holding that checkpoint alone, with every file it reads (the bases of its
    /// deltas, finished tasks' files) at the same relative paths: a savepoint, which nothing
    /// in this directory refers to or removes. Files are hard-linked where the file system
    /// allows it (they are never written again), copied and synced elsewhere. `marker` is
    /// written as `to/_savepoint`. The directory appears whole or not at all (it is built
    /// beside `to` and renamed).
    pub fn export(&self, meta: &Metadata, to: &Path, marker: &[u8]) -> Result<(), CheckpointError> {
        if to.exists() {
            return Err(CheckpointError::Io {
                path: to.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "already exists"),
            });
        }
        let parent = to.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(parent).map_err(io(parent))?;
        let name = to
            .file_name()
            .map_or_else(|| "savepoint".into(), |n| n.to_string_lossy().to_string());
        let building = parent.join(format!(".{name}.inprogress"));
        let _ = fs::remove_dir_all(&building);
        let result = (|| {
            for file in meta.tasks.iter().flat_map(TaskFile::chain) {
                let (from, into) = (self.root.join(&file.file), building.join(&file.file));
                if into.exists() {
                    continue;
                }
                let dir = into.parent().unwrap_or(&building);
                fs::create_dir_all(dir).map_err(io(dir))?;
                if fs::hard_link(&from, &into).is_err() {
                    fs::copy(&from, &into).map_err(io(&from))?;
                    fs::File::open(&into)
                        .and_then(|f| f.sync_all())
                        .map_err(io(&into))?;
                }
            }
            let marker_path = building.join("_savepoint");
            fs::write(&marker_path, marker).map_err(io(&marker_path))?;
            let target = CheckpointDir::new(&building);
            target.begin(meta.id)?;
            target.complete(meta)?;
            fs::rename(&building, to).map_err(io(to))?;
            fs::File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(io(parent))
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&building);
        }
        result
    }

    /// Removes checkpoint `id` and its files.
    pub fn discard(&self, id: u64) {
        let _ = fs::remove_dir_all(self.chk(id));
    }

    /// An id past every checkpoint directory present, complete or not (and at least 1): what
    /// the next run or attempt numbers its first checkpoint, so that it never reuses an id.
    pub fn next_id(&self) -> u64 {
        self.ids().last().map_or(1, |id| id + 1)
    }

    /// The ids of the checkpoint directories present, complete or not, oldest first.
    fn ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The metadata of checkpoint `id`, or why it cannot be read (`None`: it is not complete).
    pub fn metadata(&self, id: u64) -> Result<Option<Metadata>, CheckpointError> {
        let path = self.chk(id).join(METADATA);
        let text = match fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path)(e)),
        };
        let meta: Metadata =
            serde_json::from_slice(&text).map_err(|e| CheckpointError::Corrupt {
                path: path.clone(),
                message: format!("unreadable metadata: {e}"),
            })?;
        if meta.format != FORMAT || meta.id != id {
            return Err(CheckpointError::Corrupt {
                path,
                message: format!(
                    "metadata of format {} for checkpoint {}; expected format {FORMAT}, checkpoint {id}",
                    meta.format, meta.id
                ),
            });
        }
        Ok(Some(meta))
    }

    /// Every checkpoint directory's id and status, oldest first.
    pub fn statuses(&self) -> Vec<(u64, Status)> {
        let ids = self.ids();
        let read: Vec<_> = ids.iter().map(|&id| (id, self.metadata(id))).collect();
        // The directories whose files complete checkpoints build on (deltas' bases, finished
        // tasks' files), as `chk-<id>`.
        let bases: std::collections::HashSet<String> = read
            .iter()
            .filter_map(|(_, m)| m.as_ref().ok()?.as_ref())
            .flat_map(|m| {
                let own = format!("chk-{}", m.id);
                m.tasks
                    .iter()
                    .flat_map(TaskFile::chain)
                    .filter_map(|f| Some(f.file.split_once('/')?.0.to_string()))
                    .filter(move |d| *d != own)
            })
            .collect();
        read.into_iter()
            .map(|(id, m)| {
                let status = match m {
                    Ok(Some(m)) => Status::Complete(Box::new(m)),
                    Ok(None) if bases.contains(&format!("chk-{id}")) => Status::Base,
                    Ok(None) => Status::Incomplete,
                    Err(e) => Status::Unreadable(e),
                };
                (id, status)
            })
            .collect()
    }

    /// Every complete checkpoint's metadata, oldest first, and the unreadable ones' errors.
    pub fn completed(&self) -> (Vec<Metadata>, Vec<CheckpointError>) {
        let (mut ok, mut bad) = (Vec::new(), Vec::new());
        for id in self.ids() {
            match self.metadata(id) {
                Ok(Some(m)) => ok.push(m),
                Ok(None) => {}
                Err(e) => bad.push(e),
            }
        }
        (ok, bad)
    }

    /// Checks one file against its recorded size and hash (reading it a MiB at a time).
    fn check(&self, f: &FileRef) -> Result<PathBuf, CheckpointError> {
        let path = self.root.join(&f.file);
        let corrupt = |message: String| CheckpointError::Corrupt {
            path: path.clone(),
            message,
        };
        let mut file = fs::File::open(&path).map_err(io(&path))?;
        let len = file.metadata().map_err(io(&path))?.len();
        if len != f.bytes {
            return Err(corrupt(format!(
                "{len} bytes, but the checkpoint's metadata records {} (truncated?)",
                f.bytes
            )));
        }
        let (_, hash) = snapshot::hash_file(&mut file).map_err(io(&path))?;
        if hash != f.hash {
            return Err(corrupt(format!(
                "its content does not match the hash the checkpoint's metadata records ({hash}, not {})",
                f.hash
            )));
        }
        Ok(path)
    }

    /// Checks checkpoint `meta.id`'s files (each task's chain of files, for incremental
    /// snapshots) against their sizes and hashes, and reads all but the keyed state, which a
    /// restore streams from [`Restored::files`].
    pub fn load(&self, meta: &Metadata) -> Result<Restored, CheckpointError> {
        let mut tasks = Vec::with_capacity(meta.tasks.len());
        let mut files = Vec::with_capacity(meta.tasks.len());
        for t in &meta.tasks {
            let chain = t
                .chain()
                .iter()
                .map(|f| self.check(f))
                .collect::<Result<Vec<_>, _>>()?;
            // The rest is whole in every snapshot: the last one's is the one.
            tasks.push(snapshot::read_task(
                chain.last().expect("a chain holds its task's file"),
            )?);
            files.push(chain);
        }
        Ok(Restored {
            metadata: meta.clone(),
            tasks,
            files,
            skipped: Vec::new(),
        })
    }

    /// The newest complete checkpoint that reads back whole; newer ones that do not are passed
    /// over, and said why in [`Restored::skipped`].
    pub fn latest(&self) -> Result<Restored, CheckpointError> {
        let mut skipped = Vec::new();
        for id in self.ids().into_iter().rev() {
            let meta = match self.metadata(id) {
                Ok(Some(m)) => m,
                Ok(None) => continue,
                Err(e) => {
                    skipped.push(e.to_string());
                    continue;
                }
            };
            match self.load(&meta) {
                Ok(mut r) => {
                    r.skipped = skipped;
                    return Ok(r);
                }
                Err(e) => skipped.push(format!("checkpoint {id}: {e}")),
            }
        }
        Err(CheckpointError::NoneComplete {
            dir: self.root.clone(),
            skipped,
        })
    }

    /// What `path` names: a job's checkpoint directory (restore from its newest complete
    /// checkpoint), or one checkpoint in it (`chk-<id>`).
    pub fn resolve(path: &Path) -> (CheckpointDir, Option<u64>) {
        let id = path
            .file_name()
            .and_then(|n| n.to_str()?.strip_prefix("chk-")?.parse().ok())
            .filter(|_| path.join(METADATA).exists());
        match (id, path.parent()) {
            (Some(id), Some(parent)) => (CheckpointDir::new(parent), Some(id)),
            _ => (CheckpointDir::new(path), None),
        }
    }

    /// Keeps the newest `keep` complete checkpoints; removes older ones and every incomplete
    /// checkpoint older than the newest complete one — but never a file a kept checkpoint's
    /// incremental snapshots build on — and finished tasks' files that no kept checkpoint
    /// refers to, but those of the attempt `running` (whose tasks' reports may be on their way).
    pub fn retain(&self, keep: u32, running: Option<&str>) {
        let ids = self.ids();
        let complete: Vec<Metadata> = ids
            .iter()
            .filter_map(|&id| self.metadata(id).ok().flatten())
            .collect();
        let Some(newest) = complete.last().map(|m| m.id) else {
            return;
        };
        let kept: Vec<&Metadata> = complete.iter().rev().take(keep as usize).collect();
        let referenced: std::collections::HashSet<String> = kept
            .iter()
            .flat_map(|m| m.tasks.iter().flat_map(TaskFile::chain))
            .map(|f| f.file)
            .collect();
        for attempt in fs::read_dir(self.root.join(FINISHED))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = attempt.file_name().to_string_lossy().to_string();
            if Some(name.as_str()) == running {
                continue;
            }
            for entry in fs::read_dir(attempt.path()).into_iter().flatten().flatten() {
                let file = format!("{FINISHED}/{name}/{}", entry.file_name().to_string_lossy());
                if !referenced.contains(&file) {
                    let _ = fs::remove_file(entry.path());
                }
            }
            let _ = fs::remove_dir(attempt.path());
        }
        for id in ids {
            if id >= newest || kept.iter().any(|m| m.id == id) {
                continue;
            }
            let dir = self.chk(id);
            if !referenced
                .iter()
                .any(|f| f.starts_with(&format!("chk-{id}/")))
            {
                self.discard(id);
                continue;
            }
            // Only the files still built on stay; without its metadata the checkpoint is no
            // longer one to restore from.
            for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
                let file = format!("chk-{id}/{}", entry.file_name().to_string_lossy());
                if !referenced.contains(&file) {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::KeyedSnapshot;

    fn meta(id: u64, tasks: Vec<TaskFile>) -> Metadata {
        Metadata {
            components: BTreeMap::new(),
            replaced: BTreeMap::new(),
            format: FORMAT,
            job: "j".into(),
            id,
            triggered_unix_ms: 0,
            duration_ms: 1,
            max_parallelism: 128,
            mode: "exactly_once".into(),
            nodes: BTreeMap::new(),
            tasks,
        }
    }

    fn snap(n: u8) -> TaskSnapshot {
        TaskSnapshot {
            operators: vec![(
                "op".into(),
                KeyedSnapshot {
                    values: vec![("s".into(), 1, vec![n], vec![n])],
                    ..KeyedSnapshot::default()
                },
            )],
            ..TaskSnapshot::default()
        }
    }

    /// The values of operator `op` a restore of task 0 of `r` gets: (key, value) pairs.
    fn restored_values(r: &Restored) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut state = crate::state::KeyedState::new(0..128, 128, usize::MAX);
        for f in &r.files[0] {
            snapshot::read_keyed(f, "op", 0..128, |b| {
                state.restore(b).map_err(|e| e.to_string())
            })
            .unwrap();
        }
        let mut values: Vec<_> = state
            .snapshot()
            .collected()
            .unwrap()
            .values
            .into_iter()
            .map(|(_, _, k, v)| (k, v))
            .collect();
        values.sort();
        values
    }

    fn checkpoint(dir: &CheckpointDir, id: u64, n: u8, complete: bool) {
        dir.begin(id).unwrap();
        let t = dir
            .write_task(id, "op-0", 0, vec!["op".into()], &snap(n))
            .unwrap();
        if complete {
            dir.complete(&meta(id, vec![t])).unwrap();
        }
    }

    #[test]
    fn restore_takes_the_newest_complete_checkpoint_that_reads_back_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CheckpointDir::new(tmp.path());
        checkpoint(&dir, 1, 1, true);
        checkpoint(&dir, 2, 2, true);
        checkpoint(&dir, 3, 3, false);
        let r = dir.latest().unwrap();
        assert_eq!(
            (r.metadata.id, restored_values(&r)),
            (2, vec![(vec![2], vec![2])])
        );
        assert!(r.skipped.is_empty());

        // A file of checkpoint 2 truncated, then one with a byte flipped: 1 is taken instead.
        let file = tmp.path().join("chk-2/op-0.redb");
        let good = fs::read(&file).unwrap();
        fs::write(&file, &good[..good.len() / 2]).unwrap();
        let r = dir.latest().unwrap();
        assert_eq!(r.metadata.id, 1);
        assert!(
            r.skipped[0].contains("chk-2/op-0.redb") && r.skipped[0].contains("(truncated?)"),
            "{:?}",
            r.skipped
        );
        let mut flipped = good.clone();
        flipped[good.len() / 3] ^= 0x40;
        fs::write(&file, &flipped).unwrap();
        let skipped = dir.latest().unwrap().skipped;
        assert!(
            skipped[0].contains("does not match the hash"),
            "{skipped:?}"
        );
        // Corrupt metadata is named too.
        fs::write(tmp.path().join("chk-2/_metadata"), b"{ not json").unwrap();
        let skipped = dir.latest().unwrap().skipped;
        assert!(
            skipped[0].contains("chk-2/_metadata: unreadable metadata"),
            "{skipped:?}"
        );
        // Nothing complete at all.
        fs::remove_file(tmp.path().join("chk-1/op-0.redb")).unwrap();
        let e = dir.latest().unwrap_err().to_string();
        assert!(e.contains("no complete checkpoint to restore from"), "{e}");
    }

    #[test]
    fn retention_keeps_the_newest_complete_ones_and_what_is_in_flight() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CheckpointDir::new(tmp.path());
        checkpoint(&dir, 1, 1, true);
        checkpoint(&dir, 2, 2, false);
        checkpoint(&dir, 3, 3, true);
        checkpoint(&dir, 4, 4, true);
        checkpoint(&dir, 5, 5, false);
        dir.retain(2, None);
        assert_eq!(dir.ids(), [3, 4, 5]);
        let (done, bad) = dir.completed();
        assert_eq!(done.iter().map(|m| m.id).collect::<Vec<_>>(), [3, 4]);
        assert!(bad.is_empty());
    }

    #[test]
    fn an_incremental_checkpoint_reads_back_through_its_chain_and_keeps_its_base() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CheckpointDir::new(tmp.path());
        checkpoint(&dir, 1, 1, true);
        let base = dir.metadata(1).unwrap().unwrap().tasks[0].chain();
        // Checkpoint 2: a delta that removes key 1 and adds key 2.
        dir.begin(2).unwrap();
        let delta = TaskSnapshot {
            operators: vec![(
                "op".into(),
                KeyedSnapshot {
                    values: vec![("s".into(), 1, vec![2], vec![2])],
                    removed_values: vec![("s".into(), 1, vec![1])],
                    ..KeyedSnapshot::default()
                },
            )],
            ..TaskSnapshot::default()
        };
        let mut t = dir
            .write_task(2, "op-0", 0, vec!["op".into()], &delta)
            .unwrap();
        t.base = base;
        dir.complete(&meta(2, vec![t])).unwrap();
        // Keeping one checkpoint keeps 2, and 1's file that 2 builds on, not 1 itself.
        dir.retain(1, None);
        assert!(tmp.path().join("chk-1/op-0.redb").exists());
        assert!(!tmp.path().join("chk-1/_metadata").exists());
        checkpoint(&dir, 3, 3, false);
        let statuses: Vec<String> = dir
            .statuses()
            .into_iter()
            .map(|(id, s)| format!("{id} {}", format!("{s:?}").split('(').next().unwrap()))
            .collect();
        assert_eq!(statuses, ["1 Base", "2 Complete", "3 Incomplete"]);
        let r = dir.latest().unwrap();
        assert_eq!(r.metadata.id, 2);
        assert_eq!(restored_values(&r), [(vec![2], vec![2])]);
        // Exported, with its base, it stands alone: retention here never touches it.
        let saved = tmp.path().join("savepoints/sp-2");
        dir.export(&r.metadata, &saved, b"{}").unwrap();
        let sp = CheckpointDir::new(&saved);
        let r2 = sp.latest().unwrap();
        assert_eq!(r2.metadata, r.metadata);
        assert_eq!(restored_values(&r2), [(vec![2], vec![2])]);
        assert!(saved.join("_savepoint").exists());
        assert!(
            dir.export(&r.metadata, &saved, b"{}").is_err(),
            "never overwritten"
        );
        checkpoint(&dir, 4, 4, true);
        dir.retain(1, None);
        assert!(!tmp.path().join("chk-1/op-0.redb").exists());
        assert_eq!(sp.latest().unwrap().metadata.id, 2);
        // A damaged base fails the delta too, by the base file's name.
        fs::write(saved.join("chk-1/op-0.redb"), b"x").unwrap();
        let e = sp.latest().unwrap_err().to_string();
        assert!(e.contains("chk-1/op-0.redb"), "{e}");
    }

    #[test]
    fn a_path_names_a_directory_or_one_checkpoint_in_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CheckpointDir::new(tmp.path());
        checkpoint(&dir, 7, 7, true);
        let (d, id) = CheckpointDir::resolve(&tmp.path().join("chk-7"));
        assert_eq!((d.root(), id), (tmp.path(), Some(7)));
        let (d, id) = CheckpointDir::resolve(tmp.path());
        assert_eq!((d.root(), id), (tmp.path(), None));
    }
}
