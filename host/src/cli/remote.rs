//! `weir run MANIFEST --coordinator ADDR`: submits the job to a cluster and follows it to its
//! end with the same progress line and summary as local mode; Ctrl-C cancels it.
//!
//! The manifest is read and checked here, as in local mode; its components travel by content
//! hash (uploaded only when the coordinator lacks them). The client authenticates with the
//! cluster's join token: whoever holds it may add workers and so run code on the cluster
//! anyway.

use super::progress;
use crate::manifest::{self, Override};
use crate::net::blobs::content_hash;
use crate::net::control::{self, ComponentRef, ControlReader, ToClient, ToCoordinator};
use crate::net::pki::{self, COORDINATOR_NAME, JoinToken};
use crate::worker::{self, CheckpointSummary, JobMetrics, agent};
use anyhow::{Context as _, Result, bail};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How to reach the cluster, and where the job starts.
pub struct Target {
    pub coordinator: String,
    pub token: String,
    /// `--from`: a checkpoint to start from (on a path the cluster's processes reach).
    pub from: Option<std::path::PathBuf>,
    pub allow_non_restored_state: bool,
}

pub fn run(
    manifest: &Path,
    overrides: &[Override],
    target: &Target,
    stats: bool,
    components: &dyn manifest::Components,
) -> Result<()> {
    let started = Instant::now();
    let mut job = manifest::load_with(manifest, overrides, components)?;
    worker::check(&job)?;
    let token = JoinToken::parse(&target.token).context("--token")?;
    // Components by content: the graph names them by hash.
    let mut uploads: HashMap<String, Vec<u8>> = HashMap::new();
    for node in &mut job.nodes {
        if let Some(op) = node.kind.component_mut() {
            let bytes = crate::files::read_limited(
                &op.component,
                job.limits.component_bytes,
                Some("limits.component_mib"),
            )
            .with_context(|| format!("`{}`: component {}", node.uid, op.component.display()))?;
            let hash = content_hash(&bytes);
            op.component = hash.clone().into();
            uploads.insert(hash, bytes);
        }
    }
    let components: Vec<ComponentRef> = uploads
        .iter()
        .map(|(hash, bytes)| ComponentRef {
            hash: hash.clone(),
            bytes: bytes.len() as u64,
        })
        .collect();
    let name = job.name.clone();
    let stop = super::stop_on_ctrl_c()?;
    let metrics = JobMetrics::new(started);
    let reporter = progress::Reporter::start(metrics.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("cannot start the I/O runtime")?;
    let outcome = runtime.block_on(async {
        let to = agent::resolve(&target.coordinator).await?;
        let endpoint = agent::client_endpoint(to)?;
        let link = Link {
            endpoint: endpoint.clone(),
            to,
            config: pki::join_config(&token)?,
            token: target.token.trim().to_string(),
        };
        let from = match &target.from {
            // The coordinator resolves it: absolute, as the cluster's processes see it.
            Some(p) => Some(std::path::absolute(p).context("--from")?),
            None => None,
        };
        let submit = ToCoordinator::Submit {
            token: link.token.clone(),
            graph: Box::new(job),
            components,
            from,
            allow_non_restored_state: target.allow_non_restored_state,
        };
        // The graph travels in one control frame (to the coordinator, then in each
        // deployment, with room for the placement).
        let size = control::encode(&submit).len();
        if size + DEPLOYMENT_ROOM > control::CONTROL_LIMIT {
            bail!(
                "the job graph is {} KiB as a message, over what the control plane carries ({} KiB); \
                 are operators' config tables very large?",
                size >> 10,
                (control::CONTROL_LIMIT - DEPLOYMENT_ROOM) >> 10
            );
        }
        let outcome = follow(&link, submit, uploads, &stop, &metrics).await;
        endpoint.close(0u32.into(), b"done");
        endpoint.wait_idle().await;
        outcome
    });
    reporter.finish();
    if outcome.is_ok() {
        eprintln!("{}", progress::summary(&name, &metrics));
    }
    if stats {
        eprintln!("stats: {}", progress::stats(&metrics));
    }
    outcome
}

/// How the client reaches the coordinator.
struct Link {
    endpoint: quinn::Endpoint,
    to: std::net::SocketAddr,
    config: quinn::ClientConfig,
    token: String,
}

/// What a deployment adds to the graph's message (the placement, the peers' addresses).
const DEPLOYMENT_ROOM: usize = 64 << 10;

/// How long the client tries to reach a coordinator that went away (restarted) before giving
/// up on following the job.
const RECONNECT: Duration = Duration::from_secs(60);

impl Link {
    /// A new connection and a stream on it, `first` sent.
    async fn open(
        &self,
        first: &ToCoordinator,
    ) -> Result<(quinn::Connection, quinn::SendStream, ControlReader)> {
        let conn = self
            .endpoint
            .connect_with(self.config.clone(), self.to, COORDINATOR_NAME)?
            .await
            .with_context(|| format!("cannot reach the coordinator at {}", self.to))?;
        let (mut send, recv) = conn.open_bi().await?;
        control::send(&mut send, first).await?;
        Ok((conn, send, ControlReader::new(recv)))
    }

    /// Follows job `job` again on a new connection, trying for [`RECONNECT`].
    async fn reconnect(
        &self,
        job: &str,
    ) -> Result<(quinn::Connection, quinn::SendStream, ControlReader)> {
        let follow = ToCoordinator::Follow {
            token: self.token.clone(),
            job: job.to_string(),
        };
        let since = Instant::now();
        loop {
            match self.open(&follow).await {
                Ok(link) => return Ok(link),
                Err(e) if since.elapsed() >= RECONNECT => {
                    return Err(e.context(format!(
                        "lost the coordinator for {} s; job {job} may still run",
                        RECONNECT.as_secs()
                    )));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }
}

/// Submits the job, uploads what the coordinator asks for, and follows the job to its end,
/// again after the coordinator restarted.
async fn follow(
    link: &Link,
    submit: ToCoordinator,
    mut uploads: HashMap<String, Vec<u8>>,
    stop: &Arc<tokio::sync::Notify>,
    metrics: &Arc<JobMetrics>,
) -> Result<()> {
    let (mut conn, mut send, mut reader) = link.open(&submit).await?;
    // What has been counted of the current attempt's progress.
    let (mut attempt, mut counted) = (0u32, (0u64, 0u64));
    let mut cancelling = false;
    let mut job_id: Option<String> = None;
    loop {
        let message = tokio::select! {
            m = reader.next::<ToClient>() => match (m, &job_id) {
                (Ok(m), _) => m,
                (Err(e), None) => return Err(e.into()),
                (Err(e), Some(job)) => {
                    tracing::warn!("lost the coordinator ({e}); following job {job} again");
                    (conn, send, reader) = link.reconnect(job).await?;
                    if cancelling {
                        let why = "cancelled by the user (Ctrl-C)".to_string();
                        control::send(&mut send, &ToCoordinator::Cancel { why }).await?;
                    }
                    continue;
                }
            },
            () = stop.notified(), if !cancelling => {
                eprintln!("\ncancelling the job (Ctrl-C)");
                cancelling = true;
                let why = "cancelled by the user (Ctrl-C)".to_string();
                control::send(&mut send, &ToCoordinator::Cancel { why }).await?;
                continue;
            }
        };
        let Some(message) = message else {
            bail!("the coordinator closed the job's stream without saying how the job ended");
        };
        match message {
            ToClient::Need { hashes } => {
                for hash in hashes {
                    let bytes = uploads.remove(&hash).with_context(|| {
                        format!("the coordinator asked for {hash}, not part of this job")
                    })?;
                    let mut up = conn.open_uni().await?;
                    up.write_all(hash.as_bytes()).await?;
                    up.write_all(&bytes).await?;
                    up.finish()?;
                }
            }
            ToClient::Started {
                job,
                attempt: a,
                workers,
            } => {
                let on: Vec<String> = workers
                    .iter()
                    .map(|(w, n)| format!("{w} ({n} slots)"))
                    .collect();
                tracing::info!("job {job}, attempt {a}: running on {}", on.join(", "));
                job_id = Some(job);
                attempt = a;
                counted = (0, 0);
            }
            ToClient::Progress {
                attempt: a,
                records_in,
                records_out,
            } if a == attempt => {
                metrics.add_in(records_in.saturating_sub(counted.0));
                metrics.add_out(records_out.saturating_sub(counted.1));
                counted = (counted.0.max(records_in), counted.1.max(records_out));
            }
            ToClient::Progress { .. } => {}
            ToClient::Checkpoint { summary } => {
                metrics.checkpoint_completed(CheckpointSummary {
                    id: summary.id,
                    duration: summary.duration,
                    bytes: summary.bytes,
                    full_bytes: summary.full_bytes,
                });
            }
            ToClient::Restarting {
                attempt,
                cause,
                delay_ms,
            } => {
                tracing::warn!("{cause}; restarting (attempt {attempt}) in {delay_ms} ms");
            }
            ToClient::Finished => return Ok(()),
            ToClient::Failed { why } => bail!("{why}"),
            ToClient::Cancelled { why } => bail!("the job was cancelled: {why}"),
            ToClient::Refused { why } => bail!("the coordinator refused the job: {why}"),
        }
    }
}
