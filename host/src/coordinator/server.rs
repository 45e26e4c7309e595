//! The coordinator process (`weir coordinator`): the cluster's CA and join token in its data
//! directory, a QUIC endpoint where workers join (token and certificate signing request) and
//! register (with their certificate), and their heartbeats, fed to [`Membership`].

use super::membership::Membership;
use crate::net::control::{self, ControlReader, ToCoordinator, ToWorker};
use crate::net::pki::{self, COORDINATOR_NAME, ClusterCa, JoinToken};
use crate::plan::is_valid_name;
use anyhow::{Context as _, Result, bail};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the coordinator runs.
#[derive(Debug, Clone)]
pub struct CoordinatorOptions {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// A worker without a heartbeat this long is lost.
    pub heartbeat_timeout: Duration,
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

/// Runs the coordinator until `stop` is notified. `started` is called once it listens.
pub fn run(
    options: CoordinatorOptions,
    stop: Arc<tokio::sync::Notify>,
    started: impl FnOnce(&Started),
) -> Result<()> {
    std::fs::create_dir_all(&options.data_dir)
        .with_context(|| format!("cannot create {}", options.data_dir.display()))?;
    let ca = load_ca(&options.data_dir)?;
    let (token, token_file) = load_token(&options.data_dir, &ca)?;
    let identity = ca.issue(COORDINATOR_NAME)?;
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
        started(&Started {
            addr,
            token: token.clone(),
            token_file,
        });
        tracing::info!(%addr, "coordinator listening");
        let shared = Arc::new(Shared {
            ca,
            token,
            members: Mutex::new(Membership::new(options.heartbeat_timeout)),
            heartbeat: (options.heartbeat_timeout / 4).max(Duration::from_millis(50)),
        });
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

struct Shared {
    ca: ClusterCa,
    token: JoinToken,
    members: Mutex<Membership>,
    /// How often workers send heartbeats.
    heartbeat: Duration,
}

impl Shared {
    fn members(&self) -> std::sync::MutexGuard<'_, Membership> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Declares lost the workers whose heartbeats stopped.
async fn expire(shared: Arc<Shared>, timeout: Duration) {
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        for worker in shared.members().expire(Instant::now()) {
            tracing::warn!(
                worker,
                "worker lost: no heartbeat for {} ms",
                timeout.as_millis()
            );
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
        None => join(&shared, &mut send, &mut reader, from).await,
        Some(chain) => {
            let name = chain.first().and_then(pki::common_name).unwrap_or_default();
            control_loop(&shared, &mut send, &mut reader, from, &name).await
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

/// A worker without a certificate: it must present the token, and gets a certificate.
async fn join(
    shared: &Shared,
    send: &mut quinn::SendStream,
    reader: &mut ControlReader,
    from: SocketAddr,
) -> Result<()> {
    let Some(ToCoordinator::Join {
        token,
        worker,
        csr_pem,
    }) = reader.next().await?
    else {
        return refuse(send, "a worker without a certificate may only join".into()).await;
    };
    let presented = JoinToken::parse(&token).ok();
    if !presented.is_some_and(|t| shared.token.accepts(&t)) {
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
    let end = loop {
        match reader.next::<ToCoordinator>().await {
            Ok(Some(ToCoordinator::Heartbeat)) => {
                if !shared.members().heartbeat(&worker, Instant::now()) {
                    let _ = refuse(send, "declared lost: register again".into()).await;
                    return Ok(());
                }
            }
            Ok(Some(other)) => break format!("an unexpected message: {other:?}"),
            Ok(None) => break "it left".to_string(),
            Err(e) => break e.to_string(),
        }
    };
    if shared.members().remove(&worker).is_some() {
        tracing::info!(worker, "worker gone: {end}");
    }
    Ok(())
}
