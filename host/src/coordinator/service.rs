//! The coordinator's operations as its HTTP API offers them (`crate::api`): artifacts (the
//! components uploaded, by content hash), starting a checked job, the jobs and their views,
//! cancelling. Each call answers at once from what the coordinator holds, or with a
//! [`ServiceError`] that says which HTTP status it is.

use super::savepoints::{Purpose, Request, RequestStatus};
use super::server::{JobEvent, Shared, lock};
use super::store::{Artifact, JobState};
use super::view::{CheckpointInfo, JobView, Status};
use crate::net::control::{StateAnswer, StateQuery, ToWorker};
use crate::plan::JobGraph;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a request to the coordinator cannot be carried out, by the status it answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// 400: the request itself is wrong.
    #[error("{0}")]
    Invalid(String),
    /// 404: no such job, artifact, operator, state or key.
    #[error("{0}")]
    NotFound(String),
    /// 409: the job (or artifact) is in the wrong state for the request.
    #[error("{0}")]
    Conflict(String),
    /// 503: the cluster cannot do it now (no slots, say).
    #[error("{0}")]
    Unavailable(String),
}

/// The running coordinator, for the API.
#[derive(Clone)]
pub struct Cluster {
    shared: Arc<Shared>,
}

/// A job in a list.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JobSummary {
    pub id: String,
    pub name: String,
    pub status: Status,
    pub submitted_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<u64>,
    pub attempt: u32,
}

impl Cluster {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Cluster { shared }
    }

    /// The coordinator's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.shared.data_dir
    }

    /// The cluster's figures (Prometheus text).
    pub fn metrics(&self) -> String {
        self.shared.metrics()
    }

    /// Every artifact, newest first.
    pub fn artifacts(&self) -> Result<Vec<Artifact>, ServiceError> {
        let mut all = self.shared.store.artifacts().map_err(unavailable)?;
        all.sort_by_key(|a| std::cmp::Reverse(a.uploaded_ms));
        Ok(all)
    }

    /// Artifact `hash`.
    pub fn artifact(&self, hash: &str) -> Result<Artifact, ServiceError> {
        self.artifacts()?
            .into_iter()
            .find(|a| a.hash == hash)
            .ok_or_else(|| ServiceError::NotFound(format!("no artifact {hash}")))
    }

    /// Keeps `bytes` (checked by the caller: a component implementing `artifact.worlds`) as
    /// `artifact`.
    pub fn add_artifact(&self, artifact: &Artifact, bytes: &[u8]) -> Result<(), ServiceError> {
        self.shared
            .blobs
            .put(&artifact.hash, bytes)
            .map_err(|e| ServiceError::Invalid(e.to_string()))?;
        self.shared
            .store
            .put_artifact(artifact)
            .map_err(unavailable)
    }

    /// Whether the coordinator holds the component with content hash `hash`.
    pub fn has_component(&self, hash: &str) -> bool {
        self.shared.blobs.has(hash)
    }

    /// Removes artifact `hash`, unless a job that has not ended uses it.
    pub fn remove_artifact(&self, hash: &str) -> Result<(), ServiceError> {
        self.artifact(hash)?;
        let users: Vec<String> = lock(&self.shared.views)
            .values()
            .filter(|v| !v.status.is_ended())
            .filter(|v| {
                self.shared
                    .store
                    .get(&v.id)
                    .ok()
                    .flatten()
                    .is_some_and(|j| j.graph.components().any(|c| c.to_string_lossy() == hash))
            })
            .map(|v| v.id.clone())
            .collect();
        if !users.is_empty() {
            return Err(ServiceError::Conflict(format!(
                "artifact {hash} is used by running job(s) {}",
                users.join(", ")
            )));
        }
        self.shared
            .store
            .remove_artifact(hash)
            .map_err(unavailable)?;
        self.shared
            .blobs
            .remove(hash)
            .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
        Ok(())
    }

    /// Starts `graph` (checked, its components named by the hashes of components the
    /// coordinator holds), from savepoint or checkpoint `from` if given. Returns the job's id.
    pub fn start(
        &self,
        graph: JobGraph,
        from: Option<PathBuf>,
        allow_non_restored_state: bool,
    ) -> Result<String, ServiceError> {
        graph.check_shape().map_err(ServiceError::Invalid)?;
        for c in graph.components() {
            let hash = c.to_string_lossy();
            if !self.has_component(&hash) {
                return Err(ServiceError::Invalid(format!("no component {hash} here")));
            }
        }
        if let Some(from) = &from
            && !from.exists()
        {
            return Err(ServiceError::NotFound(format!(
                "no savepoint or checkpoint at {}",
                from.display()
            )));
        }
        super::submit::start(
            &self.shared,
            graph,
            from,
            allow_non_restored_state,
            "the HTTP API",
            None,
        )
        .map_err(|why| {
            if why.contains("slots") {
                ServiceError::Unavailable(why)
            } else {
                ServiceError::Invalid(why)
            }
        })
    }

    /// Every job the coordinator knows of, newest first.
    pub fn jobs(&self) -> Vec<JobSummary> {
        let summary = |v: &JobView| JobSummary {
            id: v.id.clone(),
            name: v.name.clone(),
            status: v.status,
            submitted_ms: v.submitted_ms,
            ended_ms: v.ended_ms,
            attempt: v.attempt,
        };
        let mut all: Vec<JobSummary> = lock(&self.shared.views).values().map(summary).collect();
        // Those only the store knows (ended before this coordinator started, or long ago).
        for (id, job) in self.shared.store.all().unwrap_or_default() {
            if !all.iter().any(|j| j.id == id) {
                all.push(summary(&stored_view(&id, job)));
            }
        }
        all.sort_by(|a, b| b.submitted_ms.cmp(&a.submitted_ms).then(a.id.cmp(&b.id)));
        all
    }

    /// Job `id` as it stands.
    pub fn job(&self, id: &str) -> Result<JobView, ServiceError> {
        if let Some(v) = lock(&self.shared.views).get(id) {
            return Ok(v.clone());
        }
        Ok(stored_view(id, self.stored(id)?))
    }

    /// Job `id`'s completed checkpoints (the newest last).
    pub fn checkpoints(&self, id: &str) -> Result<Vec<CheckpointInfo>, ServiceError> {
        Ok(self.job(id)?.checkpoints.into_iter().collect())
    }

    /// Job `id`'s guest lines numbered after `since` (at most `limit`), the number to ask
    /// after next, and how many lines were dropped on their way.
    pub fn logs(
        &self,
        id: &str,
        since: u64,
        limit: usize,
    ) -> Result<(Vec<super::view::KeptLine>, u64, u64), ServiceError> {
        let view = self.job(id)?;
        let (lines, next) = view.logs_since(since, limit);
        Ok((lines, next, view.log_lines_dropped))
    }

    /// Cancels job `id`.
    pub fn cancel(&self, id: &str, why: &str) -> Result<(), ServiceError> {
        let status = self.job(id)?.status;
        if status.is_ended() || !self.shared.to_job(id, JobEvent::Cancel(why.to_string())) {
            return Err(ServiceError::Conflict(format!(
                "job {id} has already ended ({})",
                serde_json::to_string(&status)
                    .unwrap_or_default()
                    .trim_matches('"')
            )));
        }
        Ok(())
    }
}

impl Cluster {
    /// Takes a savepoint of job `id` (into `dir`, else `savepoints/` of its checkpoint
    /// directory), for `purpose`: the request's id, to poll.
    async fn request(
        &self,
        id: &str,
        dir: Option<PathBuf>,
        purpose: Purpose,
    ) -> Result<String, ServiceError> {
        let view = self.job(id)?;
        if view.status.is_ended() {
            return Err(ServiceError::Conflict(format!("job {id} has ended")));
        }
        let checkpoints = self
            .shared
            .store
            .get(id)
            .ok()
            .flatten()
            .is_some_and(|j| j.graph.checkpoint.is_some());
        if !checkpoints {
            return Err(ServiceError::Conflict(format!(
                "job {id} does not checkpoint: savepoints need its manifest's [checkpoint] section (the state is taken by checkpoint barriers)"
            )));
        }
        if let Some(d) = &dir
            && !d.is_absolute()
        {
            return Err(ServiceError::Invalid(format!(
                "dir {}: an absolute path that the coordinator and the workers reach",
                d.display()
            )));
        }
        let request = format!("{}-{}", purpose.name(), random_hex());
        lock(&self.shared.requests).add(Request {
            request: request.clone(),
            job: id.to_string(),
            kind: purpose.name(),
            checkpoint: None,
            status: RequestStatus::InProgress,
        });
        let (reply, answer) = tokio::sync::oneshot::channel();
        let sent = self.shared.to_job(
            id,
            JobEvent::Savepoint {
                request: request.clone(),
                dir,
                purpose,
                reply,
            },
        );
        // No answer: the job's run is between attempts, or ending.
        let answer = match sent {
            true => tokio::time::timeout(std::time::Duration::from_secs(10), answer)
                .await
                .ok()
                .and_then(Result::ok),
            false => None,
        };
        match answer {
            Some(Ok(())) => Ok(request),
            Some(Err(why)) => {
                lock(&self.shared.requests).remove(&request);
                Err(ServiceError::Conflict(format!("job {id}: {why}")))
            }
            None => {
                lock(&self.shared.requests).remove(&request);
                Err(ServiceError::Conflict(format!(
                    "job {id} is not running (restarting, or ending): try again once it runs"
                )))
            }
        }
    }

    /// Triggers a savepoint of job `id`: the request's id.
    pub async fn savepoint(&self, id: &str, dir: Option<PathBuf>) -> Result<String, ServiceError> {
        self.request(id, dir, Purpose::Savepoint).await
    }

    /// Stops job `id` with a savepoint: the request's id.
    pub async fn stop(&self, id: &str, dir: Option<PathBuf>) -> Result<String, ServiceError> {
        self.request(id, dir, Purpose::Stop).await
    }

    /// Rescales job `id`: every node to `parallelism`, then each of `operators` (by uid) to
    /// its own; a savepoint, then the job deployed again from it. The request's id.
    pub async fn rescale(
        &self,
        id: &str,
        parallelism: Option<u32>,
        operators: &BTreeMap<String, u32>,
    ) -> Result<String, ServiceError> {
        let job = self.stored(id)?;
        let held = super::scheduler::slots_needed(&crate::plan::ExecutionGraph::build(&job.graph));
        let mut graph = job.graph;
        if parallelism.is_none() && operators.is_empty() {
            return Err(ServiceError::Invalid(
                "say the new `parallelism`, or `operators` with a parallelism per uid".into(),
            ));
        }
        let max = graph.max_parallelism;
        let check = |what: &str, p: u32| {
            if p == 0 || p > max {
                Err(ServiceError::Invalid(format!(
                    "{what}: parallelism {p} is not within 1..={max} (job.max_parallelism: the key groups)"
                )))
            } else {
                Ok(p)
            }
        };
        if let Some(p) = parallelism {
            let p = check("the job", p)?;
            for n in &mut graph.nodes {
                n.parallelism = p;
            }
        }
        for (uid, &p) in operators {
            let p = check(uid, p)?;
            let node = graph
                .nodes
                .iter_mut()
                .find(|n| n.uid == *uid)
                .ok_or_else(|| ServiceError::NotFound(format!("job {id} has no node `{uid}`")))?;
            node.parallelism = p;
        }
        graph.check_shape().map_err(ServiceError::Invalid)?;
        let needed = super::scheduler::slots_needed(&crate::plan::ExecutionGraph::build(&graph));
        let free: u32 = self.shared.members().offers().iter().map(|o| o.free).sum();
        if needed > free + held {
            return Err(ServiceError::Unavailable(format!(
                "the rescaled job needs {needed} slots; it holds {held} and {free} are free"
            )));
        }
        self.request(id, None, Purpose::Rescale(Box::new(graph)))
            .await
    }

    /// What swapping the component of `operator` in job `id` for artifact `hash` starts from:
    /// the job's graph and the operator's index in it, checked (an operator or a window
    /// function, and an artifact of its world that it does not run already).
    pub fn swap_target(
        &self,
        id: &str,
        operator: &str,
        hash: &str,
    ) -> Result<(crate::plan::JobGraph, usize), ServiceError> {
        let job = self.stored(id)?;
        let graph = job.graph;
        let index = (graph.nodes.iter().position(|n| n.uid == operator))
            .ok_or_else(|| ServiceError::NotFound(format!("job {id} has no node `{operator}`")))?;
        let node = &graph.nodes[index];
        let what = match &node.kind {
            crate::plan::NodeKind::Operator(_) | crate::plan::NodeKind::Window(_) => None,
            crate::plan::NodeKind::Source(_) | crate::plan::NodeKind::WasmSource(_) => {
                Some("a source")
            }
            crate::plan::NodeKind::Sink(_) => Some("a sink"),
        };
        if let Some(what) = what {
            return Err(ServiceError::Invalid(format!(
                "`{operator}` is {what}: only operators and window functions are swapped"
            )));
        }
        let artifact = self.artifact(hash)?;
        let Some(world) = crate::wasm::World::of(&node.kind) else {
            return Err(ServiceError::Invalid(format!(
                "`{operator}` runs no component"
            )));
        };
        if !artifact.worlds.iter().any(|w| w == world.name()) {
            return Err(ServiceError::Invalid(format!(
                "artifact {hash} does not implement {}, the world of `{operator}` (it implements {})",
                world.name(),
                if artifact.worlds.is_empty() {
                    "none".to_string()
                } else {
                    artifact.worlds.join(", ")
                }
            )));
        }
        if node
            .kind
            .component()
            .is_some_and(|c| c.component.to_string_lossy() == hash)
        {
            return Err(ServiceError::Invalid(format!(
                "`{operator}` runs artifact {hash} already"
            )));
        }
        Ok((graph, index))
    }

    /// Swaps the component of `operator` in job `id` for artifact `hash` by a restart: a
    /// savepoint, then the job deployed again with the new component, every task restored
    /// from it (the caller checked the new component opens with the operator's config). The
    /// request's id.
    pub async fn swap(&self, id: &str, operator: &str, hash: &str) -> Result<String, ServiceError> {
        let (mut graph, index) = self.swap_target(id, operator, hash)?;
        if let Some(op) = graph.nodes[index].kind.component_mut() {
            op.component = PathBuf::from(hash);
        }
        self.request(id, None, Purpose::Swap(Box::new(graph))).await
    }

    /// Swaps the component of `operator` in job `id` for artifact `hash` live, at a checkpoint
    /// barrier, the job running on (the caller checked the new component as for
    /// [`Cluster::swap`]). The request's id; it completes once a checkpoint after the swap has.
    pub async fn swap_live(
        &self,
        id: &str,
        operator: &str,
        hash: &str,
    ) -> Result<String, ServiceError> {
        self.swap_target(id, operator, hash)?;
        let purpose = Purpose::LiveSwap {
            operator: operator.to_string(),
            to: hash.to_string(),
        };
        self.request(id, None, purpose).await
    }

    /// Where the coordinator keeps the component of content hash `hash`.
    pub fn component_path(&self, hash: &str) -> Result<PathBuf, ServiceError> {
        self.shared
            .blobs
            .path(hash)
            .map_err(|e| ServiceError::NotFound(e.to_string()))
    }

    /// Job `id` as the store keeps it.
    fn stored(&self, id: &str) -> Result<super::store::StoredJob, ServiceError> {
        self.shared
            .store
            .get(id)
            .ok()
            .flatten()
            .ok_or_else(|| no_job(id))
    }

    /// Savepoint request `request` of job `id`.
    pub fn request_status(&self, id: &str, request: &str) -> Result<Request, ServiceError> {
        lock(&self.shared.requests)
            .get(request)
            .filter(|r| r.job == id)
            .cloned()
            .ok_or_else(|| ServiceError::NotFound(format!("no request {request} of job {id}")))
    }
}

/// Where a query of keyed state went, and what it found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StateRead {
    pub key_group: u32,
    pub subtask: u32,
    pub worker: String,
    pub answer: StateAnswer,
}

impl Cluster {
    /// Reads operator `operator`'s state `state` of `key` (and `map_key`, for map state) in
    /// running job `id`: from the subtask that owns the key's key group, wherever it runs.
    pub async fn query(
        &self,
        id: &str,
        operator: &str,
        state: &str,
        key: Vec<u8>,
        map_key: Option<Vec<u8>>,
    ) -> Result<StateRead, ServiceError> {
        let view = self.job(id)?;
        if view.status != Status::Running {
            return Err(ServiceError::Conflict(format!(
                "job {id} is not running: its state is read while it runs"
            )));
        }
        let graph = self.stored(id)?.graph;
        let index = graph
            .nodes
            .iter()
            .position(|n| n.uid == operator)
            .ok_or_else(|| {
                ServiceError::NotFound(format!("job {id} has no operator `{operator}`"))
            })?;
        let node = &graph.nodes[index];
        if !matches!(
            node.kind,
            crate::plan::NodeKind::Operator(_) | crate::plan::NodeKind::Window(_)
        ) {
            return Err(ServiceError::NotFound(format!(
                "`{operator}` is not an operator: it keeps no keyed state"
            )));
        }
        let key_group = crate::plan::key_groups::key_group(&key, graph.max_parallelism);
        let subtask =
            crate::plan::key_groups::subtask_of(key_group, node.parallelism, graph.max_parallelism);
        let exec = crate::plan::ExecutionGraph::build(&graph);
        let chain = exec
            .chains
            .iter()
            .position(|c| c.nodes.contains(&index))
            .ok_or_else(|| no_job(id))?;
        let worker = view
            .vertices
            .get(chain)
            .and_then(|v| v.subtasks.get(subtask as usize))
            .and_then(|s| s.worker.clone())
            .ok_or_else(|| ServiceError::Unavailable(format!("job {id} is not placed yet")))?;
        let query = self
            .shared
            .next_query
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = tokio::sync::oneshot::channel();
        lock(&self.shared.queries).insert(query, tx);
        let request = StateQuery {
            chain,
            subtask,
            operator: operator.to_string(),
            state: state.to_string(),
            key,
            map_key,
        };
        let message = ToWorker::Query {
            job: id.to_string(),
            attempt: view.attempt,
            query,
            request,
        };
        let answer = if self.shared.to_worker(&worker, message) {
            tokio::time::timeout(QUERY_TIMEOUT, rx)
                .await
                .ok()
                .and_then(Result::ok)
        } else {
            None
        };
        lock(&self.shared.queries).remove(&query);
        let answer = answer.ok_or_else(|| {
            ServiceError::Unavailable(format!(
                "worker {worker} did not answer within {} s",
                QUERY_TIMEOUT.as_secs()
            ))
        })?;
        match answer {
            StateAnswer::NotFound { why } => Err(ServiceError::NotFound(why)),
            StateAnswer::Ended { why } => Err(ServiceError::Conflict(why)),
            StateAnswer::Failed { why } => Err(ServiceError::Unavailable(why)),
            answer => Ok(StateRead {
                key_group,
                subtask,
                worker,
                answer,
            }),
        }
    }
}

/// How long a query of state waits for its task's answer.
const QUERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// 8 random hex digits.
fn random_hex() -> String {
    let mut bytes = [0u8; 4];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn no_job(id: &str) -> ServiceError {
    ServiceError::NotFound(format!("no job {id}"))
}

fn unavailable(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Unavailable(e.to_string())
}

/// The view of a job the store knows but the coordinator has no view of (it ended before the
/// coordinator started, or long ago): what the store says of it.
fn stored_view(id: &str, job: super::store::StoredJob) -> JobView {
    let mut view = JobView::new(id, &job.graph);
    view.set_swaps(&job.swaps);
    view.attempt = job.attempt;
    view.submitted_ms = job.submitted_ms;
    view.status = match job.state {
        JobState::Running => Status::Restarting,
        JobState::Finished => Status::Finished,
        JobState::Failed { why } => {
            view.why = Some(why);
            Status::Failed
        }
        JobState::Cancelled { why } => {
            view.why = Some(why);
            Status::Cancelled
        }
    };
    view
}
