//! `weir run MANIFEST --http ADDR`: the embedded mode with the HTTP API. The process runs a
//! coordinator and one worker (with as many slots as the job needs) on threads of its own, over
//! QUIC on loopback, and submits the job through its own API, then follows it to its end. With
//! one worker every channel between tasks stays in the process, as in plain `weir run`; what
//! the API adds (job status, savepoints, rescaling, live state, logs) works as on a cluster.
//! The API lives as long as the run.

use super::client::{self, Client};
use crate::api::ApiOptions;
use crate::coordinator::server::CoordinatorOptions;
use crate::manifest::{self, Override};
use crate::plan::ExecutionGraph;
use crate::worker::agent::WorkerOptions;
use anyhow::{Context as _, Result, bail};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long the in-process coordinator and worker have to come up.
const START_LIMIT: Duration = Duration::from_secs(30);

/// Runs `manifest` in this process, serving the HTTP API at `http.listen` while it runs.
pub fn run(
    manifest_path: &Path,
    overrides: &[Override],
    from: Option<&Path>,
    allow_non_restored_state: bool,
    http: &ApiOptions,
    components: &dyn manifest::Components,
) -> Result<()> {
    let job = manifest::load_with(manifest_path, overrides, components)?;
    crate::worker::check(&job)?;
    let slots = crate::coordinator::slots_needed(&ExecutionGraph::build(&job));
    let dir = tempfile::Builder::new()
        .prefix("weir-embedded-")
        .tempdir()
        .context("cannot create the embedded mode's working directory")?;
    let cancel = Arc::new(AtomicBool::new(false));
    {
        let cancel = cancel.clone();
        ctrlc::set_handler(move || cancel.store(true, Ordering::SeqCst))
            .context("cannot install the Ctrl-C handler")?;
    }

    // The coordinator, and its API.
    let stop_coordinator = Arc::new(tokio::sync::Notify::new());
    let (ready, started) = std::sync::mpsc::channel();
    let coordinator = {
        let options = CoordinatorOptions {
            listen: "127.0.0.1:0".parse().expect("a socket address"),
            data_dir: dir.path().join("coordinator"),
            heartbeat_timeout: Duration::from_secs(5),
            metrics: None,
        };
        let (stop, http) = (stop_coordinator.clone(), http.clone());
        let failed = ready.clone();
        std::thread::Builder::new()
            .name("weir-coordinator".into())
            .spawn(move || {
                let result = crate::coordinator::server::run(options, stop, |s, cluster| {
                    let api = crate::api::serve(cluster, http)?;
                    let _ = ready.send(Ok((s.addr, s.token.to_string(), api)));
                    Ok(())
                });
                if let Err(e) = result {
                    let _ = failed.send(Err(e));
                }
            })?
    };
    let (coordinator_addr, join_token, api) = started
        .recv_timeout(START_LIMIT)
        .context("the embedded coordinator did not start")??;
    match &api.token_file {
        Some(file) => eprintln!(
            "HTTP API at http://{}/v1 (the API token is in {})",
            api.addr,
            file.display()
        ),
        None => eprintln!("HTTP API at http://{}/v1 (no auth)", api.addr),
    }

    // One worker with the slots the job needs.
    let stop_worker = Arc::new(tokio::sync::Notify::new());
    let worker = {
        let options = WorkerOptions {
            coordinator: coordinator_addr.to_string(),
            token: Some(join_token),
            slots,
            data_dir: dir.path().join("worker"),
            reconnect: Duration::from_secs(5),
            network_bytes: job.network_bytes,
            metrics: None,
        };
        let stop = stop_worker.clone();
        std::thread::Builder::new()
            .name("weir-worker".into())
            .spawn(move || crate::worker::agent::run(options, stop))?
    };

    let token = match &api.token_file {
        Some(file) => Some(crate::files::read_small_text(file)?.trim().to_string()),
        None => None,
    };
    let client = Client::new(&api.url(), token.as_deref(), None)?;
    let outcome = (|| {
        // The worker registers within moments: until it has, the job does not fit.
        let since = Instant::now();
        let submission = client::Submission {
            job: &job,
            manifest_path,
            overrides,
            from,
            allow_non_restored_state,
        };
        let id = loop {
            match client::submit_job(&client, &submission) {
                Ok(id) => break id,
                Err(e) if since.elapsed() < START_LIMIT && format!("{e:#}").contains("slots") => {
                    if worker.is_finished() {
                        bail!("the embedded worker stopped: {e:#}");
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e),
            }
        };
        eprintln!("job {id} submitted");
        client::follow_job(&client, &id, Some(&cancel))
    })();
    stop_worker.notify_one();
    let _ = worker.join();
    stop_coordinator.notify_one();
    let _ = coordinator.join();
    outcome
}
