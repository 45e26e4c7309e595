//! Savepoints asked for through the API: each request (a savepoint, a stop with one, a rescale
//! through one) gets an id to poll, as in Flink, and ends completed (with the savepoint's path)
//! or failed (with why). A savepoint is a checkpoint the keeper triggers at once and exports,
//! once complete, to a directory of its own (see `CheckpointDir::export`), where retention never
//! reaches it; its `_savepoint` file says what it is.

use crate::plan::JobGraph;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

/// The requests kept (the oldest finished ones go first).
const KEEP: usize = 1024;

/// The version of the savepoint layout (a checkpoint directory holding one checkpoint, and a
/// `_savepoint` file).
pub const SAVEPOINT_FORMAT: u32 = 1;

/// What a savepoint is taken for.
#[derive(Debug, Clone)]
pub enum Purpose {
    Savepoint,
    /// Then stop the job.
    Stop,
    /// Then deploy the job again as this graph (another parallelism), from the savepoint.
    Rescale(Box<JobGraph>),
    /// Then deploy the job again as this graph (an operator's component swapped), from the
    /// savepoint.
    Swap(Box<JobGraph>),
    /// Swap operator `operator`'s component to `to` (a content hash) at a checkpoint barrier,
    /// the job running on (see `coordinator::swap`).
    LiveSwap {
        operator: String,
        to: String,
    },
}

impl Purpose {
    pub fn name(&self) -> &'static str {
        match self {
            Purpose::Savepoint => "savepoint",
            Purpose::Stop => "stop",
            Purpose::Rescale(_) => "rescale",
            Purpose::Swap(_) | Purpose::LiveSwap { .. } => "swap",
        }
    }
}

/// Where a request stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RequestStatus {
    InProgress,
    Completed { path: String },
    Failed { error: String },
}

/// A request, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Request {
    pub request: String,
    pub job: String,
    /// `savepoint`, `stop`, `rescale` or `swap`.
    pub kind: &'static str,
    /// The savepoint's checkpoint id, once triggered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<u64>,
    #[serde(flatten)]
    pub status: RequestStatus,
}

/// Every request, by id.
#[derive(Debug, Default)]
pub struct Requests {
    all: BTreeMap<String, Request>,
    order: VecDeque<String>,
}

impl Requests {
    pub fn add(&mut self, request: Request) {
        while self.order.len() >= KEEP {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.all.remove(&oldest);
        }
        self.order.push_back(request.request.clone());
        self.all.insert(request.request.clone(), request);
    }

    pub fn get(&self, request: &str) -> Option<&Request> {
        self.all.get(request)
    }

    pub fn update(&mut self, request: &str, change: impl FnOnce(&mut Request)) {
        if let Some(r) = self.all.get_mut(request) {
            change(r);
        }
    }

    pub fn remove(&mut self, request: &str) {
        self.all.remove(request);
        self.order.retain(|r| r != request);
    }
}

/// Where the savepoint of checkpoint `id` of job `job` goes: in `dir` if given, else in
/// `savepoints/` of the job's checkpoint directory.
pub fn target(dir: Option<&Path>, graph: &JobGraph, job: &str, id: u64) -> PathBuf {
    let parent = match (dir, &graph.checkpoint) {
        (Some(d), _) => d.to_path_buf(),
        (None, Some(c)) => c.dir.join("savepoints"),
        (None, None) => PathBuf::from("savepoints"),
    };
    parent.join(format!("savepoint-{job}-{id}"))
}

/// The `_savepoint` file of a savepoint.
pub fn marker(job: &str, graph: &JobGraph, id: u64) -> Vec<u8> {
    let text = serde_json::json!({
        "format": SAVEPOINT_FORMAT,
        "job": job,
        "name": graph.name,
        "checkpoint": id,
        "taken_unix_ms": super::view::now_ms(),
        "weir": env!("CARGO_PKG_VERSION"),
    });
    serde_json::to_vec_pretty(&text).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_kept_up_to_a_bound() {
        let mut r = Requests::default();
        for i in 0..KEEP + 3 {
            r.add(Request {
                request: format!("r{i}"),
                job: "j".into(),
                kind: "savepoint",
                checkpoint: None,
                status: RequestStatus::InProgress,
            });
        }
        assert!(r.get("r0").is_none() && r.get("r2").is_none());
        assert!(r.get("r3").is_some());
        r.update("r3", |q| {
            q.status = RequestStatus::Completed { path: "p".into() }
        });
        assert_eq!(
            r.get("r3").unwrap().status,
            RequestStatus::Completed { path: "p".into() }
        );
        r.remove("r3");
        assert!(r.get("r3").is_none());
    }
}
