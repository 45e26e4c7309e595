//! The coordinator's job store: every job submitted, its graph, how far it got (its attempt,
//! its newest completed checkpoint) and how it ended, in a redb file in the coordinator's data
//! directory. A restarted coordinator resumes the jobs the store says were running, from their
//! newest checkpoints, once workers have registered again.

use crate::plan::JobGraph;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::path::Path;

const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
/// Components uploaded through the API, by content hash.
const ARTIFACTS: TableDefinition<&str, &[u8]> = TableDefinition::new("artifacts");

/// A component uploaded through the API: its bytes are in the coordinator's component store
/// under its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// The SHA-256 of its bytes, hex.
    pub hash: String,
    /// The name it was uploaded under (a file name), by which manifests may name it.
    pub name: Option<String>,
    pub size: u64,
    /// The weir worlds it implements.
    pub worlds: Vec<String>,
    pub uploaded_ms: u64,
}

/// Where a job stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum JobState {
    Running,
    Finished,
    Failed { why: String },
    Cancelled { why: String },
}

/// A job as the store keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredJob {
    /// Its graph, components named by content hash (kept in the coordinator's store).
    pub graph: JobGraph,
    /// The id of the run's first checkpoint: what it restores from is numbered so or later.
    pub run_first: u64,
    /// Its current (or last) attempt.
    pub attempt: u32,
    /// Its newest completed checkpoint.
    pub latest_checkpoint: Option<u64>,
    pub state: JobState,
    /// When it was submitted (ms since the Unix epoch; 0 in stores written before it was kept).
    #[serde(default)]
    pub submitted_ms: u64,
    /// The swaps of its components, oldest first.
    #[serde(default)]
    pub swaps: Vec<super::view::SwapInfo>,
}

/// The store, or why it cannot be used.
pub struct JobStore {
    db: Database,
}

#[derive(Debug, thiserror::Error)]
#[error("the job store {path}: {why}")]
pub struct StoreError {
    path: String,
    why: String,
}

impl JobStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let fail = |e: &dyn std::fmt::Display| StoreError {
            path: path.display().to_string(),
            why: e.to_string(),
        };
        let db = Database::create(path).map_err(|e| fail(&e))?;
        let txn = db.begin_write().map_err(|e| fail(&e))?;
        txn.open_table(JOBS).map_err(|e| fail(&e))?;
        txn.open_table(ARTIFACTS).map_err(|e| fail(&e))?;
        txn.commit().map_err(|e| fail(&e))?;
        Ok(JobStore { db })
    }

    fn fail(&self, e: &dyn std::fmt::Display) -> StoreError {
        StoreError {
            path: "jobs.redb".into(),
            why: e.to_string(),
        }
    }

    /// Records job `id` as it now stands (durably).
    pub fn put(&self, id: &str, job: &StoredJob) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(job).map_err(|e| self.fail(&e))?;
        let txn = self.db.begin_write().map_err(|e| self.fail(&e))?;
        {
            let mut table = txn.open_table(JOBS).map_err(|e| self.fail(&e))?;
            table
                .insert(id, bytes.as_slice())
                .map_err(|e| self.fail(&e))?;
        }
        txn.commit().map_err(|e| self.fail(&e))
    }

    /// Job `id`, if the store has it.
    pub fn get(&self, id: &str) -> Result<Option<StoredJob>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.fail(&e))?;
        let table = txn.open_table(JOBS).map_err(|e| self.fail(&e))?;
        let Some(bytes) = table.get(id).map_err(|e| self.fail(&e))? else {
            return Ok(None);
        };
        serde_json::from_slice(bytes.value())
            .map(Some)
            .map_err(|e| self.fail(&e))
    }

    /// Every job, by id.
    pub fn all(&self) -> Result<Vec<(String, StoredJob)>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.fail(&e))?;
        let table = txn.open_table(JOBS).map_err(|e| self.fail(&e))?;
        let mut jobs = Vec::new();
        for entry in table.iter().map_err(|e| self.fail(&e))? {
            let (id, bytes) = entry.map_err(|e| self.fail(&e))?;
            let job = serde_json::from_slice(bytes.value()).map_err(|e| self.fail(&e))?;
            jobs.push((id.value().to_string(), job));
        }
        Ok(jobs)
    }

    /// Records artifact `a` (durably), replacing one of its hash.
    pub fn put_artifact(&self, a: &Artifact) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(a).map_err(|e| self.fail(&e))?;
        let txn = self.db.begin_write().map_err(|e| self.fail(&e))?;
        {
            let mut table = txn.open_table(ARTIFACTS).map_err(|e| self.fail(&e))?;
            table
                .insert(a.hash.as_str(), bytes.as_slice())
                .map_err(|e| self.fail(&e))?;
        }
        txn.commit().map_err(|e| self.fail(&e))
    }

    /// Every artifact, by hash.
    pub fn artifacts(&self) -> Result<Vec<Artifact>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.fail(&e))?;
        let table = txn.open_table(ARTIFACTS).map_err(|e| self.fail(&e))?;
        let mut all = Vec::new();
        for entry in table.iter().map_err(|e| self.fail(&e))? {
            let (_, bytes) = entry.map_err(|e| self.fail(&e))?;
            all.push(serde_json::from_slice(bytes.value()).map_err(|e| self.fail(&e))?);
        }
        Ok(all)
    }

    /// Forgets artifact `hash`; whether there was one.
    pub fn remove_artifact(&self, hash: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().map_err(|e| self.fail(&e))?;
        let removed = {
            let mut table = txn.open_table(ARTIFACTS).map_err(|e| self.fail(&e))?;
            table.remove(hash).map_err(|e| self.fail(&e))?.is_some()
        };
        txn.commit().map_err(|e| self.fail(&e))?;
        Ok(removed)
    }

    /// Updates job `id` with `change`, if the store has it.
    pub fn update(&self, id: &str, change: impl FnOnce(&mut StoredJob)) -> Result<(), StoreError> {
        if let Some(mut job) = self.get(id)? {
            change(&mut job);
            self.put(id, &job)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_survive_reopening_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.redb");
        let graph: JobGraph = {
            let manifest = dir.path().join("job.toml");
            std::fs::write(
                &manifest,
                "edges = [\"s -> o\"]\n[sources.s]\nkind = \"datagen\"\ncount = 1\n[sinks.o]\nkind = \"stdout\"\n",
            )
            .unwrap();
            crate::manifest::load(&manifest, &[]).unwrap()
        };
        let store = JobStore::open(&path).unwrap();
        let job = StoredJob {
            swaps: Vec::new(),
            graph,
            run_first: 3,
            attempt: 0,
            latest_checkpoint: None,
            state: JobState::Running,
            submitted_ms: 0,
        };
        store.put("a", &job).unwrap();
        store.put("b", &job).unwrap();
        store
            .update("a", |j| {
                j.latest_checkpoint = Some(7);
                j.state = JobState::Failed { why: "x".into() };
            })
            .unwrap();
        drop(store);
        let store = JobStore::open(&path).unwrap();
        let all = store.all().unwrap();
        assert_eq!(all.len(), 2);
        let a = store.get("a").unwrap().unwrap();
        assert_eq!(a.latest_checkpoint, Some(7));
        assert_eq!(a.state, JobState::Failed { why: "x".into() });
        assert_eq!(store.get("b").unwrap().unwrap().state, JobState::Running);
        assert!(store.get("c").unwrap().is_none());
        let artifact = Artifact {
            hash: "ab".repeat(32),
            name: Some("split.wasm".into()),
            size: 3,
            worlds: vec!["weir:operator/operator@0.1.0".into()],
            uploaded_ms: 1,
        };
        store.put_artifact(&artifact).unwrap();
        drop(store);
        let store = JobStore::open(&path).unwrap();
        assert_eq!(store.artifacts().unwrap(), vec![artifact.clone()]);
        assert!(store.remove_artifact(&artifact.hash).unwrap());
        assert!(!store.remove_artifact(&artifact.hash).unwrap());
        assert!(store.artifacts().unwrap().is_empty());
    }
}
