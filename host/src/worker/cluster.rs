//! A worker's parts of cluster jobs: its data plane (one QUIC connection per pair of workers,
//! one stream per channel), and the deployments the coordinator sends it, each run on threads
//! of its own by the same runner as local mode ([`super::local::run_part`]), its channels to
//! other workers' tasks made remote.

use super::channel::{ChannelSender, EXCLUSIVE_BUFFERS, FLOATING_BUFFERS, Gate, RemoteInbox};
use super::control::{JobControl, JobMetrics};
use super::local::{self, JobError, Remote};
use super::recovery;
use crate::coordinator::Placement;
use crate::coordinator::deploy;
use crate::net::blobs::{self, Blobs};
use crate::net::control::{self, Deployment, PartOutcome, ToCoordinator};
use crate::net::data::{self, RemoteInputs, RemoteSender, Route, Router};
use crate::net::frame::ChannelId;
use crate::net::pki::{self, Identity};
use crate::plan::{ChannelSpec, ExecutionGraph, JobGraph};
use crate::state::checkpoints::{Ack, Notice};
use crate::wasm::Runtime;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::error::TrySendError;

/// How long a stream waits for its channel's receiving task to be set up, and a worker for
/// its peer's connection.
const PEER_WAIT: Duration = Duration::from_secs(15);

/// Buffers a remote channel's sender holds before its task waits (beyond what credit lets it
/// send): as many as a local channel's exclusive credit.
const SENDER_QUEUE: u32 = EXCLUSIVE_BUFFERS + 2;

/// Where a worker's parts report to the coordinator: its control stream, through a bounded
/// queue (a part waits when the coordinator does not keep up; progress reports are dropped
/// instead).
pub type Reports = tokio::sync::mpsc::Sender<ToCoordinator>;

/// How many reports may wait for the control stream.
pub const REPORTS: usize = 4096;

/// How often a running part reports its progress.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The longest buffer a job's channels carry: a writer sends a buffer when it reaches
/// `job.buffer_bytes`, or forwards an operator's whole output of one call, which the host caps
/// at the instance's memory limit (16 MiB at least).
fn largest_buffer(job: &JobGraph) -> usize {
    job.buffer_bytes.max(job.limits.memory_bytes).max(16 << 20)
}

/// This worker's end of the data plane: where other workers connect, and its connections to
/// them, one per peer. Of two workers, the one whose id sorts first dials; the other waits for
/// it, so that a pair shares one connection whichever way its channels go.
pub struct DataPlane {
    me: String,
    endpoint: quinn::Endpoint,
    router: Arc<Router>,
    peers: tokio::sync::Mutex<HashMap<String, quinn::Connection>>,
    arrived: tokio::sync::Notify,
}

impl DataPlane {
    /// Listens on `listen` with this worker's identity (within a tokio runtime).
    pub fn start(identity: &Identity, me: &str, listen: SocketAddr) -> anyhow::Result<Arc<Self>> {
        let mut endpoint = quinn::Endpoint::server(pki::server_config(identity, false)?, listen)?;
        endpoint.set_default_client_config(pki::client_config(identity)?);
        let plane = Arc::new(DataPlane {
            me: me.to_string(),
            endpoint,
            router: Router::new(PEER_WAIT),
            peers: tokio::sync::Mutex::default(),
            arrived: tokio::sync::Notify::new(),
        });
        tokio::spawn(plane.clone().accept());
        Ok(plane)
    }

    /// Where it listens.
    pub fn addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// Closes every connection.
    pub fn close(&self) {
        self.endpoint.close(0u32.into(), b"worker stopping");
    }

    async fn accept(self: Arc<Self>) {
        while let Some(incoming) = self.endpoint.accept().await {
            let plane = self.clone();
            tokio::spawn(async move {
                let from = incoming.remote_address();
                let conn = match incoming.await {
                    Ok(conn) => conn,
                    Err(e) => return tracing::warn!(%from, "refused a data connection: {e}"),
                };
                let Some(peer) = pki::peer_chain(&conn)
                    .and_then(|chain| chain.first().and_then(pki::common_name))
                    .and_then(|name| name.strip_prefix("worker-").map(str::to_string))
                else {
                    conn.close(1u32.into(), b"a data connection must come from a worker");
                    return tracing::warn!(%from, "refused a data connection without a worker's certificate");
                };
                plane.peers.lock().await.insert(peer.clone(), conn.clone());
                plane.arrived.notify_waiters();
                plane.serve(peer, conn).await;
            });
        }
    }

    /// Delivers the channels arriving on a connection until it ends.
    async fn serve(&self, peer: String, conn: quinn::Connection) {
        if let Err(e) = data::serve_inputs(conn, self.router.clone()).await {
            tracing::warn!(peer, "closed the data connection with worker {peer}: {e}");
        }
    }

    /// The connection with worker `peer` (whose data plane listens at `addr`): dialled if this
    /// worker's id sorts first, else waited for.
    pub async fn connection(
        self: &Arc<Self>,
        peer: &str,
        addr: &str,
    ) -> Result<quinn::Connection, String> {
        let deadline = tokio::time::Instant::now() + PEER_WAIT;
        loop {
            let arrived = self.arrived.notified();
            let mut peers = self.peers.lock().await;
            if let Some(conn) = peers.get(peer) {
                if conn.close_reason().is_none() {
                    return Ok(conn.clone());
                }
                peers.remove(peer);
            }
            if self.me.as_str() < peer {
                let at: SocketAddr = addr
                    .parse()
                    .map_err(|e| format!("worker {peer}'s data address {addr:?}: {e}"))?;
                let conn = self
                    .endpoint
                    .connect(at, &format!("worker-{peer}"))
                    .map_err(|e| e.to_string())?;
                let conn = tokio::time::timeout_at(deadline, conn)
                    .await
                    .map_err(|_| format!("worker {peer} at {at} did not answer"))?
                    .map_err(|e| format!("cannot connect to worker {peer} at {at}: {e}"))?;
                peers.insert(peer.to_string(), conn.clone());
                let (plane, name, c) = (self.clone(), peer.to_string(), conn.clone());
                tokio::spawn(async move { plane.serve(name, c).await });
                return Ok(conn);
            }
            drop(peers);
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return Err(format!(
                    "worker {peer} did not connect within {} s",
                    PEER_WAIT.as_secs()
                ));
            }
        }
    }
}

/// Where a part's checkpoint notices are delivered (set once its driver runs).
type Notices = Arc<Mutex<Option<Box<dyn Fn(Notice) + Send + Sync>>>>;

/// A part's remote senders: their channel's labels and output queue length.
type Outputs = Arc<Mutex<Vec<(String, Box<dyn Fn() -> u32 + Send + Sync>)>>>;

/// A part running.
struct RunningPart {
    outputs: Outputs,
    control: Arc<JobControl>,
    /// Whether the coordinator cancelled it (else a cancellation came from a channel that
    /// broke: a failure).
    by_coordinator: Arc<AtomicBool>,
    notices: Notices,
    /// The attempt's job graph (its components named by content hash).
    graph: Arc<JobGraph>,
}

/// The guest lines a part keeps between two progress reports (500 ms), at most.
const KEPT_LOG_LINES: usize = 1000;

/// What a worker's deployments share.
pub struct Worker {
    pub id: String,
    pub data: Arc<DataPlane>,
    pub blobs: Blobs,
    pub runtime: Runtime,
    pub handle: tokio::runtime::Handle,
    /// Where parts keep their working files.
    pub work: PathBuf,
    /// The network buffer pool: what its parts' channels may hold at most, and what is free.
    network: (u64, Mutex<u64>),
    /// The parts running, by (job, attempt), and whether the coordinator cancelled them.
    parts: Mutex<HashMap<(String, u32), RunningPart>>,
}

impl Worker {
    pub fn new(
        id: String,
        data: Arc<DataPlane>,
        blobs: Blobs,
        runtime: Runtime,
        work: PathBuf,
        network_bytes: u64,
    ) -> Arc<Self> {
        Arc::new(Worker {
            id,
            data,
            blobs,
            runtime,
            work,
            network: (network_bytes, Mutex::new(network_bytes)),
            handle: tokio::runtime::Handle::current(),
            parts: Mutex::default(),
        })
    }

    /// The worker's own figures, in Prometheus text.
    pub fn metrics(&self) -> String {
        let free = *lock(&self.network.1);
        let parts = lock(&self.parts).len();
        let mut out = format!(
            "# HELP weir_worker_parts Parts of jobs running on this worker.\n# TYPE weir_worker_parts gauge\nweir_worker_parts {parts}\n\
             # HELP weir_worker_network_pool_bytes The network buffer pool.\n# TYPE weir_worker_network_pool_bytes gauge\nweir_worker_network_pool_bytes {}\n\
             # HELP weir_worker_network_pool_free_bytes What parts have not taken of the network buffer pool.\n# TYPE weir_worker_network_pool_free_bytes gauge\nweir_worker_network_pool_free_bytes {free}\n",
            self.network.0
        );
        out += "# HELP weir_remote_output_queued_buffers Buffers a remote channel's sender holds, waiting for credit.\n# TYPE weir_remote_output_queued_buffers gauge\n";
        for part in lock(&self.parts).values() {
            for (labels, queued) in lock(&part.outputs).iter() {
                out += &format!(
                    "weir_remote_output_queued_buffers{{{labels}}} {}\n",
                    queued()
                );
            }
        }
        out
    }

    /// Takes `bytes` of the network buffer pool for a part, or says why it cannot.
    fn reserve(self: &Arc<Self>, bytes: u64) -> Result<Reservation, String> {
        let mut free = lock(&self.network.1);
        if bytes > *free {
            return Err(format!(
                "the part's channels may hold {} MiB of buffers, but worker {}'s network buffer \
                 pool (--network-mib = {}) has {} MiB free; lower the parallelism or \
                 job.buffer_bytes, or give the worker more network memory",
                bytes.div_ceil(1 << 20),
                self.id,
                self.network.0 >> 20,
                *free >> 20
            ));
        }
        *free -= bytes;
        Ok(Reservation {
            worker: self.clone(),
            bytes,
        })
    }

    /// Cancels attempt `attempt` of `job`, if it runs here.
    pub fn cancel(&self, job: &str, attempt: u32, why: &str) {
        if let Some(part) = lock(&self.parts).get(&(job.to_string(), attempt)) {
            part.by_coordinator.store(true, Ordering::SeqCst);
            part.control.cancel_because(why);
        }
    }

    /// Delivers a notice of the job's checkpoint keeper to attempt `attempt` of `job`.
    pub fn notice(&self, job: &str, attempt: u32, notice: Notice) {
        let notices = match lock(&self.parts).get(&(job.to_string(), attempt)) {
            Some(part) => part.notices.clone(),
            None => return,
        };
        if let Some(deliver) = lock(&notices).as_ref() {
            deliver(notice);
        }
    }

    /// Fetches (if this worker lacks it) and compiles component `component`, which operator
    /// `operator` of attempt `attempt` of `job` swaps to at the barrier of checkpoint
    /// `checkpoint`, on a thread of its own; says how it went to `report`.
    #[allow(clippy::too_many_arguments)]
    pub fn prepare_swap(
        self: &Arc<Self>,
        job: String,
        attempt: u32,
        operator: String,
        component: String,
        checkpoint: u64,
        coordinator: quinn::Connection,
        report: Reports,
    ) {
        let worker = self.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("swap-{job}"))
            .spawn(move || {
                let error = worker
                    .prepare(
                        &job,
                        attempt,
                        &operator,
                        &component,
                        checkpoint,
                        &coordinator,
                    )
                    .err();
                if let Some(why) = &error {
                    tracing::warn!(%job, attempt, %operator, "cannot prepare the swap: {why}");
                }
                let _ = report.blocking_send(ToCoordinator::SwapPrepared {
                    job,
                    attempt,
                    checkpoint,
                    error,
                });
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start a thread to prepare a swap: {e}");
        }
    }

    fn prepare(
        &self,
        job: &str,
        attempt: u32,
        operator: &str,
        hash: &str,
        checkpoint: u64,
        coordinator: &quinn::Connection,
    ) -> Result<(), String> {
        let (graph, control) = match lock(&self.parts).get(&(job.to_string(), attempt)) {
            Some(part) => (part.graph.clone(), part.control.clone()),
            None => {
                return Err(format!(
                    "attempt {attempt} of job {job} no longer runs on worker {}",
                    self.id
                ));
            }
        };
        let node = (graph.nodes.iter().find(|n| n.uid == operator))
            .ok_or_else(|| format!("the job has no operator `{operator}`"))?;
        let world = crate::wasm::World::of(&node.kind)
            .ok_or_else(|| format!("`{operator}` runs no component"))?;
        let limit = graph.limits.component_bytes;
        let path = (self.component_file(hash, limit, coordinator))
            .map_err(|e| format!("cannot fetch component {hash}: {e}"))?;
        let component = (self.runtime.load(&path, world, limit))
            .map_err(|e| e.to_string().replace(&path.display().to_string(), hash))?;
        control.swap_at(checkpoint, operator.to_string(), component);
        Ok(())
    }

    /// Passes query `query` to its task in attempt `attempt` of `job`; the answer goes to
    /// `report` (at once, if the attempt does not run here).
    pub fn query(
        &self,
        job: &str,
        attempt: u32,
        query: u64,
        request: crate::net::control::StateQuery,
        report: tokio::sync::mpsc::Sender<ToCoordinator>,
    ) {
        let reply: super::query::Reply = Box::new(move |answer| {
            // A full report queue drops the answer: the coordinator's wait times out.
            let _ = report.try_send(ToCoordinator::Answer { query, answer });
        });
        let control = lock(&self.parts)
            .get(&(job.to_string(), attempt))
            .map(|p| p.control.clone());
        match control {
            Some(control) => control.query(request, reply),
            None => reply(crate::net::control::StateAnswer::Ended {
                why: format!(
                    "attempt {attempt} of job {job} no longer runs on worker {} (its part there has ended)",
                    self.id
                ),
            }),
        }
    }

    /// Cancels every part (the coordinator is gone: nobody would hear how they end).
    pub fn cancel_all(&self, why: &str) {
        for part in lock(&self.parts).values() {
            part.by_coordinator.store(true, Ordering::SeqCst);
            part.control.cancel_because(why);
        }
    }

    /// Starts running `deployment` on threads of its own; how it went is sent to `report`,
    /// as are its progress reports. Components it lacks are fetched over `coordinator`.
    pub fn deploy(
        self: &Arc<Self>,
        deployment: Deployment,
        coordinator: quinn::Connection,
        report: Reports,
    ) {
        let key = (deployment.job.clone(), deployment.attempt);
        if lock(&self.parts).contains_key(&key) {
            // An attempt runs once; a second deployment of it is refused, the first goes on.
            let _ = report.try_send(ToCoordinator::PartEnded {
                job: key.0.clone(),
                attempt: key.1,
                outcome: PartOutcome::Failed {
                    why: format!(
                        "attempt {} of job {} already runs on this worker",
                        key.1, key.0
                    ),
                },
            });
            return;
        }
        let control = JobControl::new();
        let by_coordinator = Arc::new(AtomicBool::new(false));
        let notices = Notices::default();
        let outputs = Outputs::default();
        lock(&self.parts).insert(
            key.clone(),
            RunningPart {
                outputs: outputs.clone(),
                control: control.clone(),
                by_coordinator: by_coordinator.clone(),
                notices: notices.clone(),
                graph: Arc::new(deployment.graph.clone()),
            },
        );
        let worker = self.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("part-{}", deployment.job))
            .spawn({
                let report = report.clone();
                move || {
                    let outcome = match worker.run(
                        &deployment,
                        &coordinator,
                        &control,
                        &report,
                        notices,
                        outputs,
                    ) {
                        // Cancelled by a channel that broke: a failure.
                        PartOutcome::Cancelled if !by_coordinator.load(Ordering::SeqCst) => {
                            PartOutcome::Failed {
                                why: control.reason().unwrap_or("cancelled").to_string(),
                            }
                        }
                        other => other,
                    };
                    tracing::info!(job = %deployment.job, attempt = deployment.attempt, "part ended: {outcome:?}");
                    worker
                        .data
                        .router
                        .remove_attempt(&deployment.job, deployment.attempt);
                    lock(&worker.parts).remove(&(deployment.job.clone(), deployment.attempt));
                    let _ = report.blocking_send(ToCoordinator::PartEnded {
                        job: deployment.job,
                        attempt: deployment.attempt,
                        outcome,
                    });
                }
            });
        if let Err(e) = spawned {
            lock(&self.parts).remove(&key);
            let _ = report.try_send(ToCoordinator::PartEnded {
                job: key.0,
                attempt: key.1,
                outcome: PartOutcome::Failed {
                    why: format!("cannot start a thread: {e}"),
                },
            });
        }
    }

    fn run(
        self: &Arc<Self>,
        deployment: &Deployment,
        coordinator: &quinn::Connection,
        control: &Arc<JobControl>,
        report: &Reports,
        notices: Notices,
        outputs: Outputs,
    ) -> PartOutcome {
        let failed = |why: String| PartOutcome::Failed { why };
        let mut job = deployment.graph.clone();
        if let Err(why) = self.fetch_components(&mut job, coordinator) {
            return failed(why);
        }
        let components = match local::load_components(&self.runtime, &job) {
            Ok(c) => c,
            Err(e) => return failed(e.to_string()),
        };
        let restored = match &deployment.restore {
            Some(r) => match recovery::load(&r.path, &job, r.allow_non_restored_state) {
                Ok(r) => Some(r),
                Err(e) => return failed(e.to_string()),
            },
            None => None,
        };
        let part = match Part::new(self, deployment, &job, report.clone(), notices, outputs) {
            Ok(p) => p,
            Err(why) => return failed(why),
        };
        let metrics = JobMetrics::new(Instant::now());
        super::metrics::register(&deployment.job, &metrics);
        let logs = crate::wasm::guest_log::RecentLogs::new(KEPT_LOG_LINES);
        control.keep_logs(logs.clone());
        let ship_logs = {
            let (report, job, attempt) =
                (report.clone(), deployment.job.clone(), deployment.attempt);
            move || {
                let (lines, dropped) = logs.take(KEPT_LOG_LINES);
                if !lines.is_empty() || dropped > 0 {
                    let message = ToCoordinator::Logs {
                        job: job.clone(),
                        attempt,
                        lines,
                        dropped,
                    };
                    // A full report queue drops them (as a full log queue would).
                    let _ = report.try_send(message);
                }
            }
        };
        let progress = {
            let (metrics, report, done) = (metrics.clone(), report.clone(), control.clone());
            let ship_logs = ship_logs.clone();
            let (job, attempt) = (deployment.job.clone(), deployment.attempt);
            self.handle.spawn(async move {
                loop {
                    tokio::time::sleep(PROGRESS_EVERY).await;
                    let sent = report.try_send(ToCoordinator::Progress {
                        job: job.clone(),
                        attempt,
                        records_in: metrics.records_in(),
                        records_out: metrics.records_out(),
                        tasks: metrics.task_figures(),
                        first_output_unix_ms: metrics.first_output_unix_ms(),
                    });
                    ship_logs();
                    let closed = matches!(sent, Err(TrySendError::Closed(_)));
                    if closed || done.is_cancelled() {
                        return;
                    }
                }
            })
        };
        let outcome = local::run_part(
            &job,
            &components,
            control,
            &metrics,
            &part,
            deployment.attempt,
            restored,
            deployment.first_checkpoint,
        );
        let _ = std::fs::remove_dir_all(part.work_dir());
        progress.abort();
        ship_logs();
        let _ = report.blocking_send(ToCoordinator::Progress {
            job: deployment.job.clone(),
            attempt: deployment.attempt,
            records_in: metrics.records_in(),
            records_out: metrics.records_out(),
            tasks: metrics.task_figures(),
            first_output_unix_ms: metrics.first_output_unix_ms(),
        });
        match outcome {
            Ok(()) => PartOutcome::Finished,
            Err(JobError::Cancelled(_)) => PartOutcome::Cancelled,
            Err(e) => failed(e.to_string()),
        }
    }

    /// Makes every component of `job` a file of this worker's store, fetching those it lacks
    /// from the coordinator (the graph names them by content hash).
    fn fetch_components(
        &self,
        job: &mut JobGraph,
        coordinator: &quinn::Connection,
    ) -> Result<(), String> {
        let limit = job.limits.component_bytes;
        for node in &mut job.nodes {
            let Some(op) = node.kind.component_mut() else {
                continue;
            };
            let hash = op.component.to_string_lossy().to_string();
            op.component = self
                .component_file(&hash, limit, coordinator)
                .map_err(|e| {
                    format!("cannot fetch the component of `{}` ({hash}): {e}", node.uid)
                })?;
        }
        Ok(())
    }

    /// The file of component `hash` in this worker's store, fetched from the coordinator
    /// first if the store lacks it.
    fn component_file(
        &self,
        hash: &str,
        limit: u64,
        coordinator: &quinn::Connection,
    ) -> Result<PathBuf, String> {
        if !self.blobs.has(hash) {
            let bytes = self.handle.block_on(fetch(coordinator, hash, limit))?;
            self.blobs.put(hash, &bytes).map_err(|e| e.to_string())?;
            tracing::debug!(hash, bytes = bytes.len(), "fetched a component");
        }
        self.blobs.path(hash).map_err(|e| e.to_string())
    }
}

/// Fetches component `hash` from the coordinator.
async fn fetch(coordinator: &quinn::Connection, hash: &str, limit: u64) -> Result<Vec<u8>, String> {
    let (mut send, mut recv) = coordinator.open_bi().await.map_err(|e| e.to_string())?;
    control::send(
        &mut send,
        &ToCoordinator::Fetch {
            hash: hash.to_string(),
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    let _ = send.finish();
    let bytes = blobs::receive(&mut recv, limit)
        .await
        .map_err(|e| e.to_string())?;
    let actual = blobs::content_hash(&bytes);
    if actual != hash {
        return Err(format!("the coordinator sent bytes hashing to {actual}"));
    }
    Ok(bytes)
}

/// Buffers of the worker's network pool a part holds while it runs.
struct Reservation {
    worker: Arc<Worker>,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        *lock(&self.worker.network.1) += self.bytes;
    }
}

/// A worker's part of one attempt: which tasks run here, and how channels reach the others.
struct Part {
    _buffers: Reservation,
    worker: Arc<Worker>,
    job: String,
    attempt: u32,
    /// Per shared slot: whether it runs here.
    here: Vec<bool>,
    /// Per shared slot: its worker's connection (`None` for slots here).
    conns: Vec<Option<quinn::Connection>>,
    frame_limit: usize,
    report: Reports,
    notices: Notices,
    /// Its remote senders' queues, for `/metrics`.
    outputs: Outputs,
}

impl Part {
    /// Connects to every worker this part exchanges records with.
    fn new(
        worker: &Arc<Worker>,
        d: &Deployment,
        job: &JobGraph,
        report: Reports,
        notices: Notices,
        outputs: Outputs,
    ) -> Result<Part, String> {
        let exec = ExecutionGraph::build(job);
        let index: HashMap<&str, usize> = d
            .peers
            .iter()
            .enumerate()
            .map(|(i, (id, _))| (id.as_str(), i))
            .collect();
        let slots = d
            .slots
            .iter()
            .map(|w| {
                index
                    .get(w.as_str())
                    .copied()
                    .ok_or_else(|| format!("slot on unknown worker {w}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let needed = exec.chains.iter().map(|c| c.parallelism).max().unwrap_or(0);
        if slots.len() < needed as usize {
            return Err(format!(
                "the deployment has {} slots for {needed} subtasks",
                slots.len()
            ));
        }
        let mut per_worker = vec![0; d.peers.len()];
        slots.iter().for_each(|&w| per_worker[w] += 1);
        let placement = Placement { slots, per_worker };
        let me = *index
            .get(worker.id.as_str())
            .ok_or("the deployment does not name this worker")?;
        let plan = &deploy::plan(job, &exec, &placement)[me];
        // Every buffer its channels may hold: each gate's exclusive credit per channel, its
        // floating buffers and a writer's pending buffer per channel; each remote sender's
        // queue.
        let gate_buffers: u64 = plan
            .tasks
            .iter()
            .map(|&(c, _)| {
                let channels: u64 = (exec.chains[c].inputs.iter())
                    .map(|i| u64::from(i.channels_per_subtask()))
                    .sum();
                if channels == 0 {
                    0
                } else {
                    channels * u64::from(EXCLUSIVE_BUFFERS + 1) + u64::from(FLOATING_BUFFERS)
                }
            })
            .sum();
        let sender_buffers = plan.remote_out.len() as u64 * u64::from(SENDER_QUEUE);
        let buffers = worker.reserve((gate_buffers + sender_buffers) * job.buffer_bytes as u64)?;
        let mut conn_of = HashMap::new();
        for peer in plan.peers() {
            let (id, addr) = &d.peers[peer];
            let conn = worker.handle.block_on(worker.data.connection(id, addr))?;
            conn_of.insert(peer, conn);
        }
        Ok(Part {
            _buffers: buffers,
            worker: worker.clone(),
            job: d.job.clone(),
            attempt: d.attempt,
            here: placement.slots.iter().map(|&w| w == me).collect(),
            conns: placement
                .slots
                .iter()
                .map(|w| conn_of.get(w).cloned())
                .collect(),
            frame_limit: data::frame_limit(largest_buffer(job)),
            report,
            notices,
            outputs,
        })
    }

    fn id(&self, ch: &ChannelSpec) -> ChannelId {
        ChannelId {
            job: self.job.clone(),
            attempt: self.attempt,
            edge: ch.edge as u32,
            from: ch.from.1,
            to: ch.to.1,
        }
    }
}

impl Remote for Part {
    fn runs(&self, task: (usize, u32)) -> bool {
        self.here[task.1 as usize]
    }

    fn sender(&self, channel: &ChannelSpec) -> Result<ChannelSender, String> {
        let conn = self.conns[channel.to.1 as usize]
            .as_ref()
            .ok_or("no connection to the receiving worker")?;
        let sender = self
            .worker
            .handle
            .block_on(RemoteSender::open(conn, self.id(channel), SENDER_QUEUE))
            .map_err(|e| e.to_string())?;
        let labels = format!(
            "job=\"{}\",edge=\"{}\",from=\"{}\",to=\"{}\"",
            self.job.replace('"', ""),
            channel.edge,
            channel.from.1,
            channel.to.1
        );
        lock(&self.outputs).push((labels, Box::new(sender.gauge())));
        Ok(ChannelSender::remote(sender))
    }

    fn checkpoints(&self) -> Box<dyn Fn(Ack) + Send> {
        let (report, job, attempt) = (self.report.clone(), self.job.clone(), self.attempt);
        Box::new(move |ack| {
            let _ = report.blocking_send(ToCoordinator::Ack {
                job: job.clone(),
                attempt,
                ack,
            });
        })
    }

    fn notices(&self, deliver: Box<dyn Fn(Notice) + Send + Sync>) {
        *lock(&self.notices) = Some(deliver);
    }

    fn attempt_name(&self) -> String {
        format!("{}-{}", self.job, self.attempt)
    }

    fn work_dir(&self) -> PathBuf {
        self.worker
            .work
            .join(format!("{}-{}", self.job, self.attempt))
    }

    fn receive(&self, gate: &Arc<Gate>, channels: &[ChannelSpec], control: &Arc<JobControl>) {
        let inputs = RemoteInputs::new(channels.len(), EXCLUSIVE_BUFFERS, FLOATING_BUFFERS);
        for (i, ch) in channels.iter().enumerate() {
            gate.attach_remote(ch.gate_channel as usize, inputs.clone(), i);
        }
        let inbox = Arc::new(RemoteInbox {
            gate: gate.clone(),
            channels: channels.iter().map(|c| c.gate_channel as usize).collect(),
            control: control.clone(),
        });
        for (i, ch) in channels.iter().enumerate() {
            self.worker.data.router.add(
                self.id(ch),
                Route {
                    inputs: inputs.clone(),
                    inbox: inbox.clone(),
                    channel: i,
                    frame_limit: self.frame_limit,
                },
            );
        }
    }
}
