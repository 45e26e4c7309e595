//! The coordinator process (`weir coordinator`): the cluster's CA and join token in its data
//! directory, a QUIC endpoint where workers join (token and certificate signing request) and
//! register (with their certificate), and their heartbeats, fed to [`Membership`].

use super::membership::Membership;
use super::store::JobStore;
use crate::net::blobs::Blobs;
use crate::net::control::{self, ControlReader, PartOutcome, ToClient, ToCoordinator, ToWorker};
use crate::net::pki::{self, COORDINATOR_NAME, ClusterCa, JoinToken};
use crate::plan::is_valid_name;
use crate::state::checkpoints::Ack;
use anyhow::{Context as _, Result, bail};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How the coordinator runs.
#[derive(Debug, Clone)]
pub struct CoordinatorOptions {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// A worker without a heartbeat this long is lost.
    pub heartbeat_timeout: Duration,
    /// Where to serve `/metrics`, if anywhere.
    pub metrics: Option<SocketAddr>,
}

/// What a started coordinator tells its user.
#[derive(Debug, Clone)]
pub struct Started {
    pub addr: SocketAddr,
    pub token: JoinToken,
    pub token_file: PathBuf,
}

/// The cluster's CA from the data directory, created there the first time.
fn load_ca(dir: &Path) -> Result<ClusterCa> {
    let (cert, key) = (dir.join("ca.pem"), dir.join("ca.key"));
    if cert.exists() || key.exists() {
        let read = crate::files::read_small_text;
        return ClusterCa::from_pem(&read(&cert)?, &read(&key)?)
            .with_context(|| format!("the CA in {} is unusable", dir.display()));
    }
    let ca = ClusterCa::generate()?;
    crate::files::write_private(&key, &ca.key_pem())?;
    std::fs::write(&cert, ca.cert_pem())
        .with_context(|| format!("cannot write {}", cert.display()))?;
    Ok(ca)
}

/// The join token from the data directory, created there the first time (or when it belongs
/// to another CA).
fn load_token(dir: &Path, ca: &ClusterCa) -> Result<(JoinToken, PathBuf)> {
    let path = dir.join("join-token");
    if let Ok(text) = crate::files::read_small_text(&path)
        && let Ok(token) = JoinToken::parse(&text)
        && token.ca_fingerprint == ca.fingerprint()
    {
        return Ok((token, path));
    }
    let token = JoinToken::generate(ca)?;
    crate::files::write_private(&path, &format!("{token}\n"))?;
    Ok((token, path))
}

/// Runs the coordinator until `stop` is notified. `started` is called once it listens, on
/// its I/O runtime (where it may start what serves the cluster, as the HTTP API); an error it
/// returns stops the coordinator.
pub fn run(
    options: CoordinatorOptions,
    stop: Arc<tokio::sync::Notify>,
    started: impl FnOnce(&Started, super::service::Cluster) -> Result<()>,
) -> Result<()> {
    std::fs::create_dir_all(&options.data_dir)
        .with_context(|| format!("cannot create {}", options.data_dir.display()))?;
    let ca = load_ca(&options.data_dir)?;
    let (token, token_file) = load_token(&options.data_dir, &ca)?;
    let identity = ca.issue(COORDINATOR_NAME)?;
    let store = JobStore::open(&options.data_dir.join("jobs.redb"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the I/O runtime")?;
    runtime.block_on(async move {
        let endpoint =
            quinn::Endpoint::server(pki::server_config(&identity, true)?, options.listen)
                .with_context(|| format!("cannot listen on {}", options.listen))?;
        let addr = endpoint.local_addr()?;
        tracing::info!(%addr, "coordinator listening");
        let shared = Arc::new(Shared {
            data_dir: options.data_dir.clone(),
            ca,
            token: token.clone(),
            members: Mutex::new(Membership::new(options.heartbeat_timeout)),
            heartbeat: (options.heartbeat_timeout / 4).max(Duration::from_millis(50)),
            links: Mutex::default(),
            jobs: Mutex::default(),
            views: Mutex::default(),
            requests: Mutex::default(),
            queries: Mutex::default(),
            next_query: std::sync::atomic::AtomicU64::new(1),
            blobs: Blobs::new(options.data_dir.join("components")),
            slot_wait: (options.heartbeat_timeout * 3).max(Duration::from_secs(10)),
            store,
        });
        // Jobs that were running when the coordinator stopped go on, from their checkpoints.
        super::submit::resume_all(&shared);
        started(
            &Started {
                addr,
                token,
                token_file,
            },
            super::service::Cluster::new(shared.clone()),
        )?;
        if let Some(addr) = options.metrics {
            let s = shared.clone();
            let at = crate::net::http::serve(addr, move || s.metrics())
                .with_context(|| format!("--metrics {addr}"))?;
            tracing::info!("metrics at http://{at}/metrics");
        }
        let expiry = tokio::spawn(expire(shared.clone(), options.heartbeat_timeout));
        loop {
            tokio::select! {
                incoming = endpoint.accept() => {
                    let Some(incoming) = incoming else { break };
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        let from = incoming.remote_address();
                        match incoming.await {
                            Ok(conn) => serve(shared, conn).await,
                            Err(e) => tracing::warn!(%from, "refused a connection: {e}"),
                        }
                    });
                }
                () = stop.notified() => break,
            }
        }
        expiry.abort();
        endpoint.close(0u32.into(), b"coordinator stopping");
        endpoint.wait_idle().await;
        tracing::info!("coordinator stopped");
        Ok(())
    })
}

pub(super) struct Shared {
    pub(super) data_dir: PathBuf,
    pub(super) ca: ClusterCa,
    pub(super) token: JoinToken,
    pub(super) members: Mutex<Membership>,
    /// How often workers send heartbeats.
    pub(super) heartbeat: Duration,
    /// Each registered worker's control stream (by the id of its connection): messages to it.
    pub(super) links: Mutex<HashMap<String, (usize, mpsc::UnboundedSender<ToWorker>)>>,
    /// The jobs running, by id: where their events go.
    pub(super) jobs: Mutex<HashMap<String, mpsc::UnboundedSender<JobEvent>>>,
    /// Queries of running tasks' state waiting for their answers, by id.
    pub(super) queries: Mutex<HashMap<u64, tokio::sync::oneshot::Sender<control::StateAnswer>>>,
    pub(super) next_query: std::sync::atomic::AtomicU64,
    /// The savepoint requests (of the API), by id.
    pub(super) requests: Mutex<super::savepoints::Requests>,
    /// What is known of each job submitted since the coordinator started (or resumed).
    pub(super) views: Mutex<HashMap<String, super::view::JobView>>,
    /// The components submitted, by content hash.
    pub(super) blobs: Blobs,
    /// How long a restarting job waits for enough free slots.
    pub(super) slot_wait: Duration,
    /// Every job submitted, and how far it got.
    pub(super) store: JobStore,
}

/// The ended jobs whose views (figures, logs, savepoints) stay in memory.
pub(super) const KEEP_ENDED_VIEWS: usize = 256;

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub(super) fn members(&self) -> std::sync::MutexGuard<'_, Membership> {
        lock(&self.members)
    }

    /// The cluster's figures, in Prometheus text.
    pub(super) fn metrics(&self) -> String {
        let (workers, slots, free) = {
            let m = self.members();
            let slots: u32 = m.members().map(|(_, w)| w.slots).sum();
            let free: u32 = m.offers().iter().map(|o| o.free).sum();
            (m.members().count(), slots, free)
        };
        let jobs = lock(&self.jobs).len();
        let mut out = String::new();
        for (name, help, v) in [
            (
                "weir_cluster_workers",
                "Workers registered.",
                workers as u64,
            ),
            (
                "weir_cluster_slots",
                "Slots the workers offer.",
                u64::from(slots),
            ),
            (
                "weir_cluster_free_slots",
                "Slots no job holds.",
                u64::from(free),
            ),
            ("weir_cluster_jobs_running", "Jobs running.", jobs as u64),
        ] {
            out += &format!("# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n");
        }
        out += "# HELP weir_cluster_job_attempt The current attempt of each job (restarts so far).\n# TYPE weir_cluster_job_attempt gauge\n";
        out += "# HELP weir_cluster_job_last_checkpoint The id of each job's newest completed checkpoint.\n# TYPE weir_cluster_job_last_checkpoint gauge\n";
        for (id, job) in self.store.all().unwrap_or_default() {
            if job.state == super::store::JobState::Running {
                let id = id.replace('"', "");
                out += &format!("weir_cluster_job_attempt{{job=\"{id}\"}} {}\n", job.attempt);
                if let Some(c) = job.latest_checkpoint {
                    out += &format!("weir_cluster_job_last_checkpoint{{job=\"{id}\"}} {c}\n");
                }
            }
        }
        out
    }

    /// Whether `token` is the cluster's join token (compared in constant time).
    pub(super) fn accepts(&self, token: &str) -> bool {
        JoinToken::parse(token).is_ok_and(|t| self.token.accepts(&t))
    }

    /// Worker `worker` is gone: its jobs hear of it.
    fn lost(&self, worker: &str) {
        for job in lock(&self.jobs).values() {
            let _ = job.send(JobEvent::WorkerLost(worker.to_string()));
        }
    }

    /// Forgets the views of the oldest ended jobs past [`KEEP_ENDED_VIEWS`] (the job store
    /// still knows them, and the API shows them from it).
    pub(super) fn forget_ended_views(&self) {
        let mut views = lock(&self.views);
        let mut ended: Vec<(u64, String)> = views
            .values()
            .filter(|v| v.status.is_ended())
            .map(|v| (v.ended_ms.unwrap_or(0), v.id.clone()))
            .collect();
        if ended.len() < KEEP_ENDED_VIEWS {
            return;
        }
        ended.sort_unstable();
        for (_, id) in &ended[..ended.len() + 1 - KEEP_ENDED_VIEWS] {
            views.remove(id);
        }
    }

    /// Changes job `id`'s view with `change`, if there is one.
    pub(super) fn view(&self, id: &str, change: impl FnOnce(&mut super::view::JobView)) {
        if let Some(v) = lock(&self.views).get_mut(id) {
            change(v);
        }
    }

    /// Sends `event` to job `job`; `false` if it is not running.
    pub(super) fn to_job(&self, job: &str, event: JobEvent) -> bool {
        lock(&self.jobs)
            .get(job)
            .is_some_and(|tx| tx.send(event).is_ok())
    }

    /// Sends `message` to worker `worker`; `false` if it has no control stream.
    pub(super) fn to_worker(&self, worker: &str, message: ToWorker) -> bool {
        lock(&self.links)
            .get(worker)
            .is_some_and(|(_, tx)| tx.send(message).is_ok())
    }
}

/// What happens to a running job.
#[derive(Debug)]
pub(super) enum JobEvent {
    PartEnded {
        worker: String,
        attempt: u32,
        outcome: PartOutcome,
    },
    Progress {
        worker: String,
        attempt: u32,
        progress: Progress,
    },
    Ack {
        attempt: u32,
        ack: Ack,
    },
    /// A worker has the component of a live swap ready (or cannot).
    SwapPrepared {
        worker: String,
        attempt: u32,
        checkpoint: u64,
        error: Option<String>,
    },
    WorkerLost(String),
    Cancel(String),
    /// Another client follows the job.
    Follow(mpsc::UnboundedSender<ToClient>),
    /// Take a savepoint (into `dir`, else the default), for `purpose`; `reply` says whether it
    /// was triggered (then request `request` follows it), or why not.
    Savepoint {
        request: String,
        dir: Option<PathBuf>,
        purpose: super::savepoints::Purpose,
        reply: tokio::sync::oneshot::Sender<Result<(), String>>,
    },
}

/// What a worker's part of an attempt reports of its progress.
#[derive(Debug)]
pub(super) struct Progress {
    pub(super) records_in: u64,
    pub(super) records_out: u64,
    pub(super) tasks: Vec<crate::net::control::TaskFigures>,
    pub(super) first_output_unix_ms: Option<u64>,
}

/// Declares lost the workers whose heartbeats stopped.
async fn expire(shared: Arc<Shared>, timeout: Duration) {
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let lost = shared.members().expire(Instant::now());
        for worker in lost {
            tracing::warn!(
                worker,
                "worker lost: no heartbeat for {} ms",
                timeout.as_millis()
            );
            shared.lost(&worker);
        }
    }
}

/// One connection: a worker joining (no certificate) or a registered worker's control
/// connection.
async fn serve(shared: Arc<Shared>, conn: quinn::Connection) {
    let from = conn.remote_address();
    let Ok((mut send, recv)) = conn.accept_bi().await else {
        return;
    };
    let mut reader = ControlReader::new(recv);
    let result = match pki::peer_chain(&conn) {
        None => match reader.next().await {
            Ok(Some(ToCoordinator::Join {
                token,
                worker,
                csr_pem,
            })) => join(&shared, &mut send, from, token, worker, csr_pem).await,
            Ok(Some(ToCoordinator::Submit {
                token,
                graph,
                components,
                from: restore_from,
                allow_non_restored_state,
            })) => {
                let submission = super::submit::Submission {
                    token,
                    graph: *graph,
                    components,
                    restore_from,
                    allow_non_restored_state,
                };
                super::submit::submit(&shared, &conn, &mut send, &mut reader, from, submission)
                    .await
            }
            Ok(Some(ToCoordinator::Follow { token, job })) => {
                super::submit::follow_again(&shared, &mut send, &mut reader, from, token, job).await
            }
            Ok(_) => {
                refuse(
                    &mut send,
                    "without a certificate, a connection may only join, submit or follow a job"
                        .into(),
                )
                .await
            }
            Err(e) => Err(e.into()),
        },
        Some(chain) => {
            let name = chain.first().and_then(pki::common_name).unwrap_or_default();
            // Further streams fetch components.
            let fetches = tokio::spawn(serve_fetches(shared.clone(), conn.clone()));
            let r = control_loop(&shared, &conn, &mut send, &mut reader, from, &name).await;
            fetches.abort();
            r
        }
    };
    if let Err(e) = result {
        tracing::warn!(%from, "{e:#}");
    }
    // The peer closes once it has read the answer; closing first could drop it unsent.
    let _ = send.finish();
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
    conn.close(0u32.into(), b"");
}

async fn refuse(send: &mut quinn::SendStream, why: String) -> Result<()> {
    control::send(send, &ToWorker::Refused { why: why.clone() }).await?;
    let _ = send.finish();
    bail!("refused: {why}")
}

/// Serves the components a worker fetches, one per stream: the hash asked for, answered with
/// the bytes (or a reset if there is no such component).
async fn serve_fetches(shared: Arc<Shared>, conn: quinn::Connection) {
    while let Ok((mut send, recv)) = conn.accept_bi().await {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut reader = ControlReader::new(recv);
            let bytes = match reader.next::<ToCoordinator>().await {
                Ok(Some(ToCoordinator::Fetch { hash })) => shared.blobs.get(&hash, MAX_BLOB),
                _ => return,
            };
            match bytes {
                Ok(bytes) => {
                    if send.write_all(&bytes).await.is_ok() {
                        let _ = send.finish();
                        let _ = send.stopped().await;
                    }
                }
                Err(e) => {
                    tracing::warn!("a worker fetched a component that is not here: {e}");
                    let _ = send.reset(1u32.into());
                }
            }
        });
    }
}

/// The largest component file served (each job's own limit is checked when it is submitted).
pub(super) const MAX_BLOB: u64 = 4 << 30;

/// A worker without a certificate: it must present the token, and gets a certificate.
async fn join(
    shared: &Shared,
    send: &mut quinn::SendStream,
    from: SocketAddr,
    token: String,
    worker: String,
    csr_pem: String,
) -> Result<()> {
    if !shared.accepts(&token) {
        return refuse(
            send,
            format!("wrong join token from {from} (worker {worker:?})"),
        )
        .await;
    }
    if !is_valid_name(&worker) {
        return refuse(
            send,
            format!("worker id {worker:?}: 1 to 128 letters, digits, _ or -"),
        )
        .await;
    }
    let cert_pem = match shared
        .ca
        .sign_request(&csr_pem, &format!("worker-{worker}"))
    {
        Ok(cert) => cert,
        Err(e) => return refuse(send, e.to_string()).await,
    };
    control::send(
        send,
        &ToWorker::Joined {
            cert_pem,
            ca_pem: shared.ca.cert_pem().to_string(),
        },
    )
    .await?;
    tracing::info!(%from, worker, "worker joined: certificate issued");
    Ok(())
}

/// A worker with its certificate: registration, then heartbeats until it goes.
async fn control_loop(
    shared: &Shared,
    conn: &quinn::Connection,
    send: &mut quinn::SendStream,
    reader: &mut ControlReader,
    from: SocketAddr,
    cert_name: &str,
) -> Result<()> {
    let Some(ToCoordinator::Register {
        worker,
        slots,
        data_addr,
        version,
    }) = reader.next().await?
    else {
        return refuse(send, "expected a registration".into()).await;
    };
    if cert_name != format!("worker-{worker}") {
        return refuse(
            send,
            format!("worker {worker:?} presented the certificate of {cert_name:?}"),
        )
        .await;
    }
    if version != env!("CARGO_PKG_VERSION") {
        return refuse(
            send,
            format!(
                "worker {worker:?} runs weir {version}, the coordinator {}",
                env!("CARGO_PKG_VERSION")
            ),
        )
        .await;
    }
    let registered = shared
        .members()
        .register(&worker, slots, &data_addr, Instant::now());
    if let Err(refusal) = registered {
        return refuse(send, refusal.to_string()).await;
    }
    tracing::info!(%from, worker, slots, "worker registered");
    control::send(
        send,
        &ToWorker::Registered {
            heartbeat_ms: shared.heartbeat.as_millis() as u64,
        },
    )
    .await?;
    let (tx, mut outgoing) = mpsc::unbounded_channel();
    let link = conn.stable_id();
    lock(&shared.links).insert(worker.clone(), (link, tx));
    let mut declared_lost = false;
    let end = loop {
        tokio::select! {
            Some(message) = outgoing.recv() => {
                if let Err(e) = control::send(send, &message).await {
                    break e.to_string();
                }
            }
            message = reader.next::<ToCoordinator>() => match message {
                Ok(Some(ToCoordinator::Heartbeat)) => {
                    if !shared.members().heartbeat(&worker, Instant::now()) {
                        let _ = refuse(send, "declared lost: register again".into()).await;
                        declared_lost = true;
                        break "declared lost".to_string();
                    }
                }
                Ok(Some(ToCoordinator::PartEnded { job, attempt, outcome })) => {
                    let worker = worker.clone();
                    shared.to_job(&job, JobEvent::PartEnded { worker, attempt, outcome });
                }
                Ok(Some(ToCoordinator::Logs { job, attempt: _, lines, dropped })) => {
                    shared.view(&job, |v| v.logged(&worker, lines, dropped));
                }
                Ok(Some(ToCoordinator::Answer { query, answer })) => {
                    if let Some(waiting) = lock(&shared.queries).remove(&query) {
                        let _ = waiting.send(answer);
                    }
                }
                Ok(Some(ToCoordinator::Ack { job, attempt, ack })) => {
                    shared.to_job(&job, JobEvent::Ack { attempt, ack });
                }
                Ok(Some(ToCoordinator::SwapPrepared { job, attempt, checkpoint, error })) => {
                    let worker = worker.clone();
                    shared.to_job(&job, JobEvent::SwapPrepared { worker, attempt, checkpoint, error });
                }
                Ok(Some(ToCoordinator::Progress {
                    job, attempt, records_in, records_out, tasks, first_output_unix_ms,
                })) => {
                    let worker = worker.clone();
                    let progress = Progress { records_in, records_out, tasks, first_output_unix_ms };
                    shared.to_job(&job, JobEvent::Progress { worker, attempt, progress });
                }
                Ok(Some(other)) => break format!("an unexpected message: {other:?}"),
                Ok(None) => break "it left".to_string(),
                Err(e) => break e.to_string(),
            },
        }
    };
    {
        let mut links = lock(&shared.links);
        if links.get(&worker).is_some_and(|(id, _)| *id == link) {
            links.remove(&worker);
        }
    }
    // A worker declared lost had its loss handled then; it may have registered again since,
    // on another connection.
    if !declared_lost && shared.members().remove(&worker).is_some() {
        tracing::info!(worker, "worker gone: {end}");
        shared.lost(&worker);
    }
    Ok(())
}
