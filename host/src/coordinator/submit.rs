//! Jobs submitted to the coordinator (`weir run --coordinator`): the submission (the join
//! token, the job graph, its components uploaded by content hash unless the coordinator has
//! them), the placement of each attempt on the workers' free slots, and the job's run, driven
//! by [`JobRun`]: deploy, follow the parts, cancel, restart, end; what happens is streamed back
//! to the client.

use super::jobs::{Action, JobRun, Outcome};
use super::scheduler::{place, slots_needed};
use super::server::{JobEvent, Shared, lock};
use crate::connectors::prepare_sink;
use crate::net::blobs::{self, is_hash};
use crate::net::control::{
    self, ComponentRef, ControlReader, Deployment, ToClient, ToCoordinator, ToWorker,
};
use crate::net::pki::JoinToken;
use crate::plan::{ExecutionGraph, JobGraph, NodeKind};
use anyhow::Result;
use ring::rand::SecureRandom as _;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a client has to upload the components the coordinator lacks.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// A submission: checked, its components stored, its first attempt deployed; then the job's
/// events go to the client until the job ends (or the client goes: the job runs on).
#[allow(clippy::too_many_arguments)]
pub(super) async fn submit(
    shared: &Arc<Shared>,
    conn: &quinn::Connection,
    send: &mut quinn::SendStream,
    reader: &mut ControlReader,
    from: SocketAddr,
    token: String,
    graph: JobGraph,
    components: Vec<ComponentRef>,
) -> Result<()> {
    let presented = JoinToken::parse(&token).ok();
    if !presented.is_some_and(|t| shared.token.accepts(&t)) {
        return refused(
            send,
            format!("wrong token from {from}: a job is submitted with the cluster's join token"),
        )
        .await;
    }
    if let Err(why) = check(&graph, &components) {
        return refused(send, format!("the job graph is unusable: {why}")).await;
    }
    let need: Vec<String> = components
        .iter()
        .filter(|c| !shared.blobs.has(&c.hash))
        .map(|c| c.hash.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    control::send(
        send,
        &ToClient::Need {
            hashes: need.clone(),
        },
    )
    .await?;
    let limit = graph.limits.component_bytes;
    let upload = receive_uploads(shared, conn, need, limit);
    match tokio::time::timeout(UPLOAD_TIMEOUT, upload).await {
        Ok(Ok(())) => {}
        Ok(Err(why)) => return refused(send, why).await,
        Err(_) => {
            return refused(
                send,
                "the components did not arrive within 5 minutes".into(),
            )
            .await;
        }
    }

    let id = job_id(&graph.name)?;
    let (events_tx, events) = mpsc::unbounded_channel();
    lock(&shared.jobs).insert(id.clone(), events_tx);
    let mut run = JobRun::new(graph.restart);
    let held = match deploy(shared, &id, &graph, 0) {
        Ok(held) => held,
        Err(why) => {
            lock(&shared.jobs).remove(&id);
            return refused(send, why).await;
        }
    };
    tracing::info!(job = %id, %from, "job submitted: {}", describe(&held));
    run.deployed(held.iter().map(|(w, _)| w.clone()));
    let (client, mut to_client) = mpsc::unbounded_channel();
    let _ = client.send(ToClient::Started {
        job: id.clone(),
        attempt: 0,
        workers: held.clone(),
    });
    let driver = tokio::spawn(drive(
        shared.clone(),
        id.clone(),
        graph,
        run,
        held,
        events,
        client,
    ));

    // Forward the job's events to the client; its cancellation to the job.
    let mut client_gone = false;
    loop {
        tokio::select! {
            message = to_client.recv() => {
                let Some(message) = message else { break };
                let last = matches!(
                    message,
                    ToClient::Finished | ToClient::Failed { .. } | ToClient::Cancelled { .. }
                );
                if !client_gone && control::send(send, &message).await.is_err() {
                    client_gone = true;
                }
                if last {
                    break;
                }
            }
            message = reader.next::<ToCoordinator>(), if !client_gone => match message {
                Ok(Some(ToCoordinator::Cancel { why })) => {
                    shared.to_job(&id, JobEvent::Cancel(why));
                }
                Ok(_) | Err(_) => {
                    tracing::info!(job = %id, "the client went away; the job runs on");
                    client_gone = true;
                }
            },
        }
    }
    let _ = driver.await;
    Ok(())
}

async fn refused(send: &mut quinn::SendStream, why: String) -> Result<()> {
    control::send(send, &ToClient::Refused { why: why.clone() }).await?;
    let _ = send.finish();
    anyhow::bail!("refused a job: {why}")
}

/// A job's id: its name and random digits.
fn job_id(name: &str) -> Result<String> {
    let mut bytes = [0u8; 4];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("no randomness for a job id"))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{name}-{hex}"))
}

fn describe(held: &[(String, u32)]) -> String {
    held.iter()
        .map(|(w, n)| format!("{n} slots on {w}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the coordinator checks of a submitted graph before taking it: its shape, and that
/// its components are the ones announced, within the job's component limit.
fn check(graph: &JobGraph, components: &[ComponentRef]) -> Result<(), String> {
    graph.check_shape()?;
    let limit = graph.limits.component_bytes;
    for c in components {
        if !is_hash(&c.hash) {
            return Err(format!("{:?} is not a content hash", c.hash));
        }
        if c.bytes > limit {
            return Err(format!(
                "a component of {} bytes, over limits.component_mib ({} bytes)",
                c.bytes, limit
            ));
        }
    }
    for node in &graph.nodes {
        if let NodeKind::Operator(op) | NodeKind::WasmSource(op) = &node.kind {
            let hash = op.component.to_string_lossy();
            if !components.iter().any(|c| c.hash == hash) {
                return Err(format!(
                    "`{}` names component {hash:?}, which the submission does not carry",
                    node.uid
                ));
            }
        }
    }
    Ok(())
}

/// Receives the components in `need`, each on a stream of its own (its hash, then its bytes),
/// into the coordinator's store.
async fn receive_uploads(
    shared: &Shared,
    conn: &quinn::Connection,
    need: Vec<String>,
    limit: u64,
) -> Result<(), String> {
    let mut need: HashSet<String> = need.into_iter().collect();
    while !need.is_empty() {
        let mut recv = conn
            .accept_uni()
            .await
            .map_err(|e| format!("the client went away during the upload: {e}"))?;
        let mut hash = [0u8; 64];
        recv.read_exact(&mut hash)
            .await
            .map_err(|e| format!("an upload without its hash: {e}"))?;
        let hash = String::from_utf8_lossy(&hash).to_string();
        if !need.remove(&hash) {
            return Err(format!("an upload of {hash:?}, which was not asked for"));
        }
        let bytes = blobs::receive(&mut recv, limit)
            .await
            .map_err(|e| format!("component {hash}: {e}"))?;
        shared
            .blobs
            .put(&hash, &bytes)
            .map_err(|e| format!("component {hash}: {e}"))?;
    }
    Ok(())
}

/// Places and deploys attempt `attempt` of job `id` on the free slots: prepares its sinks,
/// takes the slots, sends each worker its deployment. Returns the slots taken per worker.
fn deploy(
    shared: &Shared,
    id: &str,
    graph: &JobGraph,
    attempt: u32,
) -> Result<Vec<(String, u32)>, String> {
    let needed = slots_needed(&ExecutionGraph::build(graph));
    let (held, peers, slots) = {
        let mut members = shared.members();
        let offers = members.offers();
        let placement = place(needed, &offers).map_err(|e| e.to_string())?;
        let held: Vec<(String, u32)> = offers
            .iter()
            .zip(&placement.per_worker)
            .filter(|(_, n)| **n > 0)
            .map(|(o, n)| (o.worker.clone(), *n))
            .collect();
        for (w, n) in &held {
            members.take(w, *n);
        }
        let addrs: BTreeMap<&str, &str> = members
            .members()
            .map(|(id, m)| (id, m.data_addr.as_str()))
            .collect();
        let peers: Vec<(String, String)> = held
            .iter()
            .map(|(w, _)| (w.clone(), addrs.get(w.as_str()).unwrap_or(&"").to_string()))
            .collect();
        let slots: Vec<String> = placement
            .slots
            .iter()
            .map(|&i| offers[i].worker.clone())
            .collect();
        (held, peers, slots)
    };
    // The sinks' directories hold exactly this attempt's output (no checkpoint to resume).
    for node in &graph.nodes {
        if let NodeKind::Sink(config) = &node.kind
            && let Err(e) = prepare_sink(config, None)
        {
            release(shared, &held);
            return Err(format!("sink `{}`: {e}", node.uid));
        }
    }
    for (worker, _) in &held {
        let deployment = Deployment {
            job: id.to_string(),
            attempt,
            graph: graph.clone(),
            slots: slots.clone(),
            peers: peers.clone(),
        };
        // A worker without a control stream is being lost: its loss reaches the job.
        shared.to_worker(worker, ToWorker::Deploy(Box::new(deployment)));
    }
    Ok(held)
}

fn release(shared: &Shared, held: &[(String, u32)]) {
    let mut members = shared.members();
    for (w, n) in held {
        members.give(w, *n);
    }
}

/// Runs a deployed job to its end: feeds its events to `run` and carries out what it decides.
async fn drive(
    shared: Arc<Shared>,
    id: String,
    graph: JobGraph,
    mut run: JobRun,
    mut held: Vec<(String, u32)>,
    mut events: mpsc::UnboundedReceiver<JobEvent>,
    client: mpsc::UnboundedSender<ToClient>,
) {
    // Workers that were lost before the job could hear of it.
    let mut actions: VecDeque<Action> = VecDeque::new();
    for (w, _) in &held {
        if !lock(&shared.links).contains_key(w) {
            actions.extend(run.worker_lost(w));
        }
    }
    let mut progress: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    loop {
        while let Some(action) = actions.pop_front() {
            match action {
                Action::Cancel { workers, why } => {
                    for w in workers {
                        let cancel = ToWorker::Cancel {
                            job: id.clone(),
                            attempt: run.attempt(),
                            why: why.clone(),
                        };
                        if !shared.to_worker(&w, cancel) {
                            actions.extend(run.worker_lost(&w));
                        }
                    }
                }
                Action::Restart {
                    attempt,
                    delay,
                    cause,
                } => {
                    release(&shared, &std::mem::take(&mut held));
                    progress.clear();
                    tracing::warn!(job = %id, attempt, "{cause}; restarting in {delay:?}");
                    let _ = client.send(ToClient::Restarting {
                        attempt,
                        cause,
                        delay_ms: delay.as_millis() as u64,
                    });
                    // The delay, then free slots for the next attempt; a cancellation ends
                    // either wait.
                    let deadline = tokio::time::Instant::now() + delay + shared.slot_wait;
                    let mut not_before = tokio::time::Instant::now() + delay;
                    let deployed = loop {
                        tokio::select! {
                            () = tokio::time::sleep_until(not_before) => {
                                match deploy(&shared, &id, &graph, attempt) {
                                    Ok(h) => break Some(Ok(h)),
                                    Err(why) if tokio::time::Instant::now() >= deadline => {
                                        break Some(Err(why));
                                    }
                                    Err(_) => {
                                        not_before =
                                            tokio::time::Instant::now() + Duration::from_millis(200);
                                    }
                                }
                            }
                            event = events.recv() => match event {
                                Some(JobEvent::Cancel(why)) => {
                                    actions.extend(run.cancel(why));
                                    break None;
                                }
                                // The failed attempt's stragglers, lost workers: the next
                                // placement sees the workers as they are.
                                Some(_) => {}
                                None => return,
                            },
                        }
                    };
                    match deployed {
                        Some(Ok(h)) => {
                            held = h;
                            run.deployed(held.iter().map(|(w, _)| w.clone()));
                            tracing::info!(job = %id, attempt, "redeployed: {}", describe(&held));
                            let _ = client.send(ToClient::Started {
                                job: id.clone(),
                                attempt,
                                workers: held.clone(),
                            });
                            for (w, _) in &held {
                                if !lock(&shared.links).contains_key(w) {
                                    actions.extend(run.worker_lost(w));
                                }
                            }
                        }
                        Some(Err(why)) => actions.extend(run.deploy_failed(why)),
                        None => {}
                    }
                }
                Action::End(outcome) => {
                    release(&shared, &std::mem::take(&mut held));
                    lock(&shared.jobs).remove(&id);
                    let message = match outcome {
                        Outcome::Finished => {
                            tracing::info!(job = %id, "job finished");
                            ToClient::Finished
                        }
                        Outcome::Failed(why) => {
                            tracing::warn!(job = %id, "job failed: {why}");
                            ToClient::Failed { why }
                        }
                        Outcome::Cancelled(why) => {
                            tracing::info!(job = %id, "job cancelled: {why}");
                            ToClient::Cancelled { why }
                        }
                    };
                    let _ = client.send(message);
                    return;
                }
            }
        }
        let Some(event) = events.recv().await else {
            return;
        };
        let attempt = run.attempt();
        match event {
            JobEvent::PartEnded {
                worker,
                attempt,
                outcome,
            } => actions.extend(run.part_ended(attempt, &worker, outcome)),
            JobEvent::WorkerLost(worker) => actions.extend(run.worker_lost(&worker)),
            JobEvent::Cancel(why) => actions.extend(run.cancel(why)),
            JobEvent::Progress {
                worker,
                attempt: a,
                records_in,
                records_out,
            } if a == attempt => {
                progress.insert(worker, (records_in, records_out));
                let (records_in, records_out) = progress
                    .values()
                    .fold((0, 0), |(i, o), (a, b)| (i + a, o + b));
                let _ = client.send(ToClient::Progress {
                    attempt,
                    records_in,
                    records_out,
                });
            }
            JobEvent::Progress { .. } => {}
        }
    }
}
