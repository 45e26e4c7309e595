//! The worker process (`weir worker`): joins the cluster once (the token for a certificate
//! signed by the cluster's CA, kept in its data directory with its id), registers its slots
//! with the coordinator, and sends heartbeats until it stops or loses the coordinator.

use super::cluster::{DataPlane, Worker};
use crate::net::blobs::Blobs;
use crate::net::control::{self, ControlReader, ToCoordinator, ToWorker};
use crate::net::pki::{self, COORDINATOR_NAME, Identity, JoinToken};
use crate::wasm::Runtime;
use anyhow::{Context as _, Result, bail};
use ring::rand::SecureRandom as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How the worker runs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The coordinator, `HOST:PORT`.
    pub coordinator: String,
    /// The join token, needed the first time (until the data directory holds a certificate).
    pub token: Option<String>,
    pub slots: u32,
    pub data_dir: PathBuf,
    /// How long to keep reconnecting to a lost coordinator before giving up.
    pub reconnect: Duration,
    /// The network buffer pool: the most its jobs' channels may hold, in bytes.
    pub network_bytes: u64,
    /// Where to serve `/metrics`, if anywhere.
    pub metrics: Option<SocketAddr>,
}

fn read(path: &Path) -> Result<String> {
    Ok(crate::files::read_small_text(path)?)
}

/// This worker's id: kept in its data directory, made up the first time.
fn worker_id(dir: &Path) -> Result<String> {
    let path = dir.join("worker-id");
    if let Ok(id) = crate::files::read_small_text(&path) {
        return Ok(id.trim().to_string());
    }
    let mut bytes = [0u8; 6];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("no randomness for the worker id"))?;
    let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let id = format!("w-{id}");
    std::fs::write(&path, format!("{id}\n"))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(id)
}

/// The worker's identity from its data directory, if it has joined.
fn identity(dir: &Path) -> Result<Option<Identity>> {
    let (cert, key, ca) = (
        dir.join("cert.pem"),
        dir.join("key.pem"),
        dir.join("ca.pem"),
    );
    if !cert.exists() {
        return Ok(None);
    }
    Ok(Some(Identity {
        cert_pem: read(&cert)?,
        key_pem: read(&key)?,
        ca_pem: read(&ca)?,
    }))
}

/// The address of this host on the route to `to` (no packet is sent: connecting a UDP socket
/// only picks the route).
fn local_ip_toward(to: SocketAddr) -> Result<std::net::IpAddr> {
    let any: SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    let socket = std::net::UdpSocket::bind(any).context("cannot open a UDP socket")?;
    socket
        .connect(to)
        .with_context(|| format!("no route to the coordinator at {to}"))?;
    Ok(socket.local_addr()?.ip())
}

pub async fn resolve(addr: &str) -> Result<SocketAddr> {
    tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("cannot resolve the coordinator's address {addr:?}"))?
        .next()
        .with_context(|| format!("the coordinator's address {addr:?} resolves to nothing"))
}

pub fn client_endpoint(to: SocketAddr) -> Result<quinn::Endpoint> {
    let any: SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    quinn::Endpoint::client(any).context("cannot open a UDP socket")
}

/// Joins the cluster: the token for a certificate; writes the identity to `dir`.
async fn join(
    endpoint: &quinn::Endpoint,
    to: SocketAddr,
    token: &str,
    worker: &str,
    dir: &Path,
) -> Result<Identity> {
    let parsed = JoinToken::parse(token)?;
    let (key_pem, csr_pem) = pki::request(&format!("worker-{worker}"))?;
    let conn = endpoint
        .connect_with(pki::join_config(&parsed)?, to, COORDINATOR_NAME)?
        .await
        .with_context(|| format!("cannot join the coordinator at {to}"))?;
    let (mut send, recv) = conn.open_bi().await?;
    control::send(
        &mut send,
        &ToCoordinator::Join {
            token: token.trim().to_string(),
            worker: worker.to_string(),
            csr_pem,
        },
    )
    .await?;
    let _ = send.finish();
    let reply = ControlReader::new(recv).next::<ToWorker>().await?;
    conn.close(0u32.into(), b"joined");
    match reply {
        Some(ToWorker::Joined { cert_pem, ca_pem }) => {
            crate::files::write_private(&dir.join("key.pem"), &key_pem)?;
            std::fs::write(dir.join("ca.pem"), &ca_pem)?;
            std::fs::write(dir.join("cert.pem"), &cert_pem)?;
            Ok(Identity {
                cert_pem,
                key_pem,
                ca_pem,
            })
        }
        Some(ToWorker::Refused { why }) => {
            bail!("the coordinator refused to let this worker join: {why}")
        }
        other => bail!("the coordinator answered the join with {other:?}"),
    }
}

/// Runs the worker until `stop` is notified or the coordinator is lost.
pub fn run(options: WorkerOptions, stop: Arc<tokio::sync::Notify>) -> Result<()> {
    if options.slots == 0 {
        bail!("--slots must be at least 1");
    }
    std::fs::create_dir_all(&options.data_dir)
        .with_context(|| format!("cannot create {}", options.data_dir.display()))?;
    let worker = worker_id(&options.data_dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the I/O runtime")?;
    runtime.block_on(async move {
        let to = resolve(&options.coordinator).await?;
        let endpoint = client_endpoint(to)?;
        let identity = match identity(&options.data_dir)? {
            Some(identity) => identity,
            None => {
                let Some(token) = &options.token else {
                    bail!(
                        "this worker has not joined a cluster yet: give --token (the coordinator \
                         prints it, and keeps it in its data directory's join-token file)"
                    );
                };
                let identity = join(&endpoint, to, token, &worker, &options.data_dir).await?;
                tracing::info!(worker, coordinator = %to, "joined the cluster");
                identity
            }
        };
        // The data plane listens on the address this host reaches the coordinator from.
        let listen = SocketAddr::new(local_ip_toward(to)?, 0);
        let data = DataPlane::start(&identity, &worker, listen)?;
        let runtime = Runtime::new().map_err(anyhow::Error::msg)?;
        let me = Worker::new(
            worker.clone(),
            data.clone(),
            Blobs::new(options.data_dir.join("components")),
            runtime,
            options.data_dir.join("work"),
            options.network_bytes,
        );
        if let Some(addr) = options.metrics {
            let w = me.clone();
            let at = crate::net::http::serve(addr, move || w.metrics() + &super::metrics::render())
                .with_context(|| format!("--metrics {addr}"))?;
            tracing::info!("metrics at http://{at}/metrics");
        }
        // Lost coordinators are reconnected to, for up to `reconnect` in a row.
        let mut lost_since: Option<std::time::Instant> = None;
        loop {
            let outcome = session(
                &endpoint,
                to,
                &identity,
                &me,
                options.slots,
                &stop,
                &mut lost_since,
            )
            .await;
            me.cancel_all("this worker lost the coordinator");
            match outcome {
                Ok(()) => break,
                Err(Ended::Refused(why)) => bail!("the coordinator refused this worker: {why}"),
                Err(Ended::Lost(why)) => {
                    let since = *lost_since.get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() >= options.reconnect {
                        bail!(
                            "lost the coordinator at {to} for {} s (--reconnect-timeout): {why}",
                            since.elapsed().as_secs()
                        );
                    }
                    tracing::warn!(coordinator = %to, "lost the coordinator ({why}); reconnecting");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = stop.notified() => break,
                    }
                }
            }
        }
        endpoint.close(0u32.into(), b"worker stopping");
        data.close();
        endpoint.wait_idle().await;
        Ok(())
    })
}

/// Whether a connection failed because a certificate was refused (a TLS alert, by this side
/// or the other), not because the peer could not be reached.
fn handshake_refused(e: &quinn::ConnectionError) -> bool {
    let crypto = |code: u64| code & !0xff == 0x100;
    match e {
        quinn::ConnectionError::TransportError(t) => crypto(t.code.into()),
        quinn::ConnectionError::ConnectionClosed(c) => crypto(c.error_code.into()),
        _ => false,
    }
}

/// How a session with the coordinator ended, if not by `stop`.
enum Ended {
    /// The coordinator refused the registration: retrying would not help.
    Refused(String),
    /// The connection broke, or the coordinator declared this worker lost: register again.
    Lost(String),
}

/// One session: connects, registers, sends heartbeats until `stop` (then `Ok`) or the end.
async fn session(
    endpoint: &quinn::Endpoint,
    to: SocketAddr,
    identity: &Identity,
    me: &Arc<Worker>,
    slots: u32,
    stop: &tokio::sync::Notify,
    lost_since: &mut Option<std::time::Instant>,
) -> Result<(), Ended> {
    let lost = |e: &dyn std::fmt::Display| Ended::Lost(e.to_string());
    let config = pki::client_config(identity).map_err(|e| Ended::Refused(e.to_string()))?;
    let conn = match endpoint
        .connect_with(config, to, COORDINATOR_NAME)
        .map_err(|e| lost(&e))?
        .await
    {
        Ok(conn) => conn,
        // A certificate refused, by either side: trying again would not help.
        Err(e) if handshake_refused(&e) => {
            return Err(Ended::Refused(format!(
                "the TLS handshake with {to} failed ({e}): the coordinator there is not of \
                 the cluster this worker joined, or does not accept its certificate"
            )));
        }
        Err(e) => return Err(lost(&e)),
    };
    let (mut send, recv) = conn.open_bi().await.map_err(|e| lost(&e))?;
    let mut reader = ControlReader::new(recv);
    let worker = me.id.as_str();
    let data_addr = me.data.addr().map_err(|e| lost(&e))?;
    let register = ToCoordinator::Register {
        worker: worker.to_string(),
        slots,
        data_addr: data_addr.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    };
    control::send(&mut send, &register)
        .await
        .map_err(|e| lost(&e))?;
    let heartbeat = match reader.next::<ToWorker>().await.map_err(|e| lost(&e))? {
        Some(ToWorker::Registered { heartbeat_ms }) => Duration::from_millis(heartbeat_ms.max(10)),
        Some(ToWorker::Refused { why }) => return Err(Ended::Refused(why)),
        other => {
            return Err(Ended::Refused(format!(
                "it answered the registration with {other:?}"
            )));
        }
    };
    *lost_since = None;
    tracing::info!(worker, slots, coordinator = %to, %data_addr, "registered");
    let (report, mut reports) =
        tokio::sync::mpsc::channel::<ToCoordinator>(super::cluster::REPORTS);
    let mut beat = tokio::time::interval(heartbeat);
    let result = loop {
        tokio::select! {
            _ = beat.tick() => {
                if let Err(e) = control::send(&mut send, &ToCoordinator::Heartbeat).await {
                    break Err(lost(&e));
                }
            }
            Some(message) = reports.recv() => {
                if let Err(e) = control::send(&mut send, &message).await {
                    break Err(lost(&e));
                }
            }
            message = reader.next::<ToWorker>() => match message {
                Ok(Some(ToWorker::Deploy(deployment))) => {
                    tracing::info!(job = %deployment.job, attempt = deployment.attempt, "deploying");
                    me.deploy(*deployment, conn.clone(), report.clone());
                }
                Ok(Some(ToWorker::Cancel { job, attempt, why })) => me.cancel(&job, attempt, &why),
                Ok(Some(ToWorker::Notice { job, attempt, notice })) => me.notice(&job, attempt, notice),
                Ok(Some(ToWorker::PrepareSwap { job, attempt, operator, component, checkpoint })) => {
                    me.prepare_swap(job, attempt, operator, component, checkpoint, conn.clone(), report.clone());
                }
                Ok(Some(ToWorker::Query { job, attempt, query, request })) => {
                    me.query(&job, attempt, query, request, report.clone());
                }
                Ok(Some(ToWorker::Refused { why })) => {
                    break Err(Ended::Lost(format!("it dropped this worker: {why}")));
                }
                Ok(other) => break Err(Ended::Lost(format!("it went away ({other:?})"))),
                Err(e) => break Err(lost(&e)),
            },
            () = stop.notified() => break Ok(()),
        }
    };
    let _ = send.finish();
    conn.close(0u32.into(), b"");
    result
}
