//! Jobs submitted to the coordinator (`weir run --coordinator`): the submission (the join
//! token, the job graph, its components uploaded by content hash unless the coordinator has
//! them), the placement of each attempt on the workers' free slots, and the job's run, driven
//! by [`JobRun`]: deploy, follow the parts, cancel, restart, end; what happens is streamed back
//! to the client.

use super::checkpoints::{JobInfo, Keeper, Notice, TaskName, publish_sinks};
use super::jobs::{Action, JobRun, Outcome};
use super::savepoints::{Purpose, RequestStatus};
use super::scheduler::{place, slots_needed};
use super::server::{JobEvent, Shared, lock};
use super::store::{JobState, StoredJob};
use super::swap::{LiveSwap, Step as SwapStep};
use super::view::{JobView, Status, SwapInfo};
use crate::connectors::prepare_sink;
use crate::net::blobs::{self, is_hash};
use crate::net::control::{
    self, ComponentRef, ControlReader, Deployment, PartOutcome, Restore, ToClient, ToCoordinator,
    ToWorker,
};
use crate::plan::{ExecutionGraph, JobGraph, NodeKind};
use crate::state::checkpoints::CheckpointDir;
use anyhow::Result;
use ring::rand::SecureRandom as _;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a client has to upload the components the coordinator lacks.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// What `weir run --coordinator` submits.
pub(super) struct Submission {
    pub token: String,
    pub graph: JobGraph,
    pub components: Vec<ComponentRef>,
    /// `--from`.
    pub restore_from: Option<PathBuf>,
    pub allow_non_restored_state: bool,
}

/// A submission: checked, its components stored, its first attempt deployed; then the job's
/// events go to the client until the job ends (or the client goes: the job runs on).
pub(super) async fn submit(
    shared: &Arc<Shared>,
    conn: &quinn::Connection,
    send: &mut quinn::SendStream,
    reader: &mut ControlReader,
    from: SocketAddr,
    submission: Submission,
) -> Result<()> {
    let Submission {
        token,
        graph,
        components,
        restore_from,
        allow_non_restored_state,
    } = submission;
    if !shared.accepts(&token) {
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

    let (client, to_client) = mpsc::unbounded_channel();
    let id = match start(
        shared,
        graph,
        restore_from,
        allow_non_restored_state,
        &from.to_string(),
        Some(client),
    ) {
        Ok(id) => id,
        Err(why) => return refused(send, why).await,
    };
    follow(shared, &id, send, reader, to_client).await;
    Ok(())
}

/// Starts a checked job whose components the coordinator has: its first attempt planned (from
/// checkpoint or savepoint `from`, if given) and deployed, the job recorded in the store, its
/// run driven from now on, with `client` following it. Returns its id. Nothing of a job that
/// could not start stays behind.
pub(super) fn start(
    shared: &Arc<Shared>,
    graph: JobGraph,
    from: Option<PathBuf>,
    allow_non_restored_state: bool,
    by: &str,
    client: Option<mpsc::UnboundedSender<ToClient>>,
) -> Result<String, String> {
    let id = job_id(&graph.name).map_err(|e| e.to_string())?;
    let first = first_attempt(&graph, from, allow_non_restored_state)?;
    let graph = match &first.restore {
        Some(r) => after_swaps(shared, graph, r),
        None => graph,
    };
    let (events_tx, events) = mpsc::unbounded_channel();
    lock(&shared.views).insert(id.clone(), JobView::new(&id, &graph));
    let held = match deploy(shared, &id, &graph, &first) {
        Ok(held) => held,
        Err(why) => {
            lock(&shared.views).remove(&id);
            return Err(why);
        }
    };
    lock(&shared.jobs).insert(id.clone(), events_tx);
    let start = first
        .restore
        .as_ref()
        .map_or("the start".to_string(), |r| format!("checkpoint {}", r.id));
    tracing::info!(job = %id, by, "job submitted, from {start}: {}", describe(&held));
    let stored = StoredJob {
        graph: graph.clone(),
        run_first: first.first_checkpoint,
        attempt: 0,
        latest_checkpoint: None,
        state: JobState::Running,
        submitted_ms: super::view::now_ms(),
        swaps: Vec::new(),
    };
    if let Err(e) = shared.store.put(&id, &stored) {
        tracing::error!(job = %id, "{e}; a restarted coordinator will not know this job");
    }
    let mut run = JobRun::new(graph.restart);
    run.deployed(held.iter().map(|(w, _)| w.clone()));
    let clients: Vec<_> = client.into_iter().collect();
    for c in &clients {
        let _ = c.send(ToClient::Started {
            job: id.clone(),
            attempt: 0,
            workers: held.clone(),
        });
    }
    tokio::spawn(drive(
        shared.clone(),
        id.clone(),
        graph,
        run,
        held,
        first.first_checkpoint,
        first,
        events,
        clients,
    ));
    Ok(id)
}

/// `graph` restored from `restore`: a node whose component a swap before that checkpoint
/// replaced runs the component the checkpoint recorded (when the coordinator holds it), since
/// the job is the same one, restored after its swap; any other component is the user's choice.
fn after_swaps(shared: &Shared, mut graph: JobGraph, restore: &Restore) -> JobGraph {
    let (dir, id) = CheckpointDir::resolve(&restore.path);
    let Ok(Some(meta)) = dir.metadata(id.unwrap_or(restore.id)) else {
        return graph;
    };
    for node in &mut graph.nodes {
        let (Some(op), Some(recorded)) =
            (node.kind.component_mut(), meta.components.get(&node.uid))
        else {
            continue;
        };
        let submitted = op.component.to_string_lossy().into_owned();
        let replaced = meta.replaced.get(&node.uid);
        if replaced.is_some_and(|r| r.contains(&submitted)) && shared.blobs.has(recorded) {
            tracing::info!(
                node = %node.uid,
                "checkpoint {} was taken after a swap: running {recorded}, not {submitted}",
                meta.id
            );
            op.component = PathBuf::from(recorded);
        }
    }
    graph
}

/// A client (again) following job `id` (after a restart of the coordinator, say): its events
/// from now on, or how it ended.
pub(super) async fn follow_again(
    shared: &Arc<Shared>,
    send: &mut quinn::SendStream,
    reader: &mut ControlReader,
    from: SocketAddr,
    token: String,
    id: String,
) -> Result<()> {
    if !shared.accepts(&token) {
        return refused(
            send,
            format!("wrong token from {from}: a job is followed with the cluster's join token"),
        )
        .await;
    }
    let (client, to_client) = mpsc::unbounded_channel();
    if !shared.to_job(&id, JobEvent::Follow(client)) {
        let ended = match shared.store.get(&id) {
            Ok(Some(job)) => match job.state {
                JobState::Finished => ToClient::Finished,
                JobState::Failed { why } => ToClient::Failed { why },
                JobState::Cancelled { why } => ToClient::Cancelled { why },
                JobState::Running => ToClient::Refused {
                    why: format!("job {id} is not running here yet"),
                },
            },
            _ => ToClient::Refused {
                why: format!("no job {id} here"),
            },
        };
        control::send(send, &ended).await?;
        let _ = send.finish();
        return Ok(());
    }
    follow(shared, &id, send, reader, to_client).await;
    Ok(())
}

/// Forwards job `id`'s events to a client until the job ends, and the client's cancellation
/// to the job; a client that goes away leaves the job running.
async fn follow(
    shared: &Arc<Shared>,
    id: &str,
    send: &mut quinn::SendStream,
    reader: &mut ControlReader,
    mut to_client: mpsc::UnboundedReceiver<ToClient>,
) {
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
                    shared.to_job(id, JobEvent::Cancel(why));
                }
                Ok(_) | Err(_) => {
                    tracing::info!(job = %id, "the client went away; the job runs on");
                    client_gone = true;
                }
            },
        }
    }
}

/// Resumes the jobs the store says were running (the coordinator restarted): each from its
/// newest checkpoint, once enough workers have registered again.
pub(super) fn resume_all(shared: &Arc<Shared>) {
    let jobs = match shared.store.all() {
        Ok(jobs) => jobs,
        Err(e) => return tracing::error!("{e}; no job is resumed"),
    };
    for (id, job) in jobs {
        if job.state != JobState::Running {
            continue;
        }
        let (events_tx, events) = mpsc::unbounded_channel();
        lock(&shared.jobs).insert(id.clone(), events_tx);
        let mut view = JobView::new(&id, &job.graph);
        view.set_swaps(&job.swaps);
        view.attempt = job.attempt + 1;
        lock(&shared.views).insert(id.clone(), view);
        tracing::info!(job = %id, "resuming the job after a restart of the coordinator");
        tokio::spawn(resume(shared.clone(), id, job, events));
    }
}

/// Resumes one job: its next attempt, deployed as soon as the slots it needs are free again.
async fn resume(
    shared: Arc<Shared>,
    id: String,
    job: StoredJob,
    mut events: mpsc::UnboundedReceiver<JobEvent>,
) {
    let attempt = job.attempt + 1;
    // Recorded before any worker hears of it, so that a coordinator restarted again never
    // deploys an attempt number twice.
    let _ = shared.store.update(&id, |j| j.attempt = attempt);
    let deadline = tokio::time::Instant::now() + shared.slot_wait.max(Duration::from_secs(30));
    let mut clients = Vec::new();
    let placed = loop {
        let outcome = next_attempt(&job.graph, attempt, job.run_first)
            .and_then(|plan| Ok((deploy(&shared, &id, &job.graph, &plan)?, plan)));
        match outcome {
            Ok(placed) => break Ok(placed),
            Err(why) if tokio::time::Instant::now() >= deadline => break Err(why),
            Err(_) => {}
        }
        let wait = tokio::time::sleep(Duration::from_millis(200));
        tokio::select! {
            () = wait => {}
            event = events.recv() => match event {
                Some(JobEvent::Follow(client)) => clients.push(client),
                Some(JobEvent::Cancel(why)) => break Err(format!("cancelled: {why}")),
                Some(_) => {}
                None => return,
            },
        }
    };
    let (held, plan) = match placed {
        Ok(placed) => placed,
        Err(why) => {
            let why = format!("cannot resume the job after a restart of the coordinator: {why}");
            tracing::warn!(job = %id, "{why}");
            lock(&shared.jobs).remove(&id);
            shared.view(&id, |v| v.ended(Status::Failed, Some(why.clone())));
            let _ = shared
                .store
                .update(&id, |j| j.state = JobState::Failed { why: why.clone() });
            for c in clients {
                let _ = c.send(ToClient::Failed { why: why.clone() });
            }
            return;
        }
    };
    let from = plan
        .restore
        .as_ref()
        .map_or("the start".to_string(), |r| format!("checkpoint {}", r.id));
    tracing::info!(job = %id, attempt, "redeployed from {from}: {}", describe(&held));
    let mut run = JobRun::resume(job.graph.restart, attempt);
    run.deployed(held.iter().map(|(w, _)| w.clone()));
    drive(
        shared.clone(),
        id.clone(),
        job.graph,
        run,
        held,
        job.run_first,
        plan,
        events,
        clients,
    )
    .await;
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
        if let Some(op) = node.kind.component() {
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

/// A job's attempt to deploy: which one, from which checkpoint, numbering its checkpoints
/// from where.
#[derive(Debug, Clone)]
struct AttemptPlan {
    attempt: u32,
    restore: Option<Restore>,
    first_checkpoint: u64,
}

/// Places and deploys an attempt of job `id` on the free slots: prepares its sinks, takes the
/// slots, sends each worker its deployment. Returns the slots taken per worker.
fn deploy(
    shared: &Shared,
    id: &str,
    graph: &JobGraph,
    plan: &AttemptPlan,
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
    // The sinks' directories hold exactly the output up to the checkpoint restored (or none).
    for node in &graph.nodes {
        if let NodeKind::Sink(config) = &node.kind
            && let Err(e) = prepare_sink(config, plan.restore.as_ref().map(|r| r.id))
        {
            release(shared, &held);
            return Err(format!("sink `{}`: {e}", node.uid));
        }
    }
    shared.view(id, |v| v.deployed(plan.attempt, &slots));
    for (worker, _) in &held {
        let deployment = Deployment {
            job: id.to_string(),
            attempt: plan.attempt,
            graph: graph.clone(),
            slots: slots.clone(),
            peers: peers.clone(),
            restore: plan.restore.clone(),
            first_checkpoint: plan.first_checkpoint,
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

/// The next attempt's plan: from the newest complete checkpoint of this run, its sinks' files
/// published (a crash may have come between completing it and publishing), numbering its
/// checkpoints past every one in the directory.
fn next_attempt(graph: &JobGraph, attempt: u32, run_first: u64) -> Result<AttemptPlan, String> {
    let Some(c) = &graph.checkpoint else {
        return Ok(AttemptPlan {
            attempt,
            restore: None,
            first_checkpoint: 1,
        });
    };
    let dir = CheckpointDir::new(&c.dir);
    let restore = match dir.latest() {
        Ok(r) if r.metadata.id >= run_first => {
            publish_sinks(&r).map_err(|(uid, why)| format!("sink `{uid}`: {why}"))?;
            Some(Restore {
                path: c.dir.join(format!("chk-{}", r.metadata.id)),
                id: r.metadata.id,
                allow_non_restored_state: false,
            })
        }
        _ => None,
    };
    Ok(AttemptPlan {
        attempt,
        restore,
        first_checkpoint: run_first.max(dir.next_id()),
    })
}

/// A new run's first attempt: from the checkpoint `from` names (checked against the job, its
/// sinks' files published), or from the start; its checkpoints numbered past every one in its
/// directory and the one restored.
fn first_attempt(
    graph: &JobGraph,
    from: Option<PathBuf>,
    allow_non_restored_state: bool,
) -> Result<AttemptPlan, String> {
    let restore = match &from {
        Some(path) => {
            let r = crate::coordinator::checkpoints::load(path, graph, allow_non_restored_state)
                .map_err(|e| e.to_string())?;
            publish_sinks(&r).map_err(|(uid, why)| format!("sink `{uid}`: {why}"))?;
            let (dir, _) = CheckpointDir::resolve(path);
            Some(Restore {
                path: dir.root().join(format!("chk-{}", r.metadata.id)),
                id: r.metadata.id,
                allow_non_restored_state,
            })
        }
        None => None,
    };
    let newest = graph
        .checkpoint
        .as_ref()
        .map_or(0, |c| CheckpointDir::new(&c.dir).next_id() - 1);
    Ok(AttemptPlan {
        attempt: 0,
        first_checkpoint: newest.max(restore.as_ref().map_or(0, |r| r.id)) + 1,
        restore,
    })
}

/// The checkpoint keeper of a job's attempt, if the job checkpoints.
fn keeper(shared: &Shared, graph: &JobGraph, id: &str, attempt: u32, first: u64) -> Option<Keeper> {
    let settings = graph.checkpoint.clone()?;
    let exec = ExecutionGraph::build(graph);
    let tasks = exec
        .chains
        .iter()
        .flat_map(|c| {
            let head = &graph.nodes[c.nodes[0]];
            (0..c.parallelism).map(move |s| TaskName {
                name: format!("{}-{s}", head.uid),
                source: head.kind.is_source(),
            })
        })
        .collect();
    Some(Keeper::new(
        settings,
        JobInfo::of(graph).with_swaps(
            &shared
                .store
                .get(id)
                .ok()
                .flatten()
                .map(|j| j.swaps)
                .unwrap_or_default(),
        ),
        tasks,
        // The name the workers give the attempt too.
        format!("{id}-{attempt}"),
        first,
        std::time::Instant::now(),
    ))
}

/// Runs a deployed job to its end: feeds its events to `run` and carries out what it decides;
/// runs each attempt's checkpoint keeper.
#[allow(clippy::too_many_arguments)]
async fn drive(
    shared: Arc<Shared>,
    id: String,
    mut graph: JobGraph,
    mut run: JobRun,
    mut held: Vec<(String, u32)>,
    run_first: u64,
    first: AttemptPlan,
    mut events: mpsc::UnboundedReceiver<JobEvent>,
    clients: Vec<mpsc::UnboundedSender<ToClient>>,
) {
    let mut keeper = keeper(&shared, &graph, &id, first.attempt, first.first_checkpoint);
    // The live swap in flight (or on probation), if any.
    let mut live: Option<LiveSwap> = None;
    // Carries out a step of the live swap.
    macro_rules! live {
        ($step:expr) => {
            live_step(
                &shared,
                &id,
                &held,
                &mut live,
                &mut graph,
                keeper.as_mut(),
                &mut run,
                $step,
            )
        };
    }
    let clients = std::sync::Mutex::new(clients);
    let client = Broadcast(&clients);
    // Workers that were lost before the job could hear of it.
    let mut actions: VecDeque<Action> = VecDeque::new();
    for (w, _) in &held {
        if !lock(&shared.links).contains_key(w) {
            actions.extend(run.worker_lost(w));
        }
    }
    let mut progress: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    // Savepoints in flight, by checkpoint id; a rescale's graph and savepoint once taken.
    let mut savepoints = Savepoints::default();
    let notify = |held: &[(String, u32)], attempt: u32, notices: Vec<Notice>| {
        for notice in notices {
            if let Notice::Complete { summary } = &notice {
                client.send(ToClient::Checkpoint { summary: *summary });
                shared.view(&id, |v| v.checkpoint(summary));
                let _ = shared
                    .store
                    .update(&id, |j| j.latest_checkpoint = Some(summary.id));
            }
            for (w, _) in held {
                let message = ToWorker::Notice {
                    job: id.clone(),
                    attempt,
                    notice: notice.clone(),
                };
                shared.to_worker(w, message);
            }
        }
    };
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
                    if let Some(k) = keeper.take() {
                        let _ = k.finish(false);
                    }
                    savepoints
                        .fail_all(&shared, "the job restarted before the savepoint completed");
                    if let Some(step) = live.as_ref().map(LiveSwap::restarted) {
                        live!(step);
                    }
                    release(&shared, &std::mem::take(&mut held));
                    progress.clear();
                    tracing::warn!(job = %id, attempt, "{cause}; restarting in {delay:?}");
                    shared.view(&id, |v| v.restarting(attempt, &cause));
                    client.send(ToClient::Restarting {
                        attempt,
                        cause,
                        delay_ms: delay.as_millis() as u64,
                    });
                    // The delay, then free slots for the next attempt; a cancellation ends
                    // either wait.
                    // Recorded before any worker hears of it, so that a restarted
                    // coordinator never deploys an attempt number twice.
                    let _ = shared.store.update(&id, |j| j.attempt = attempt);
                    // A rescale: the new graph, from its savepoint.
                    let rescaled = savepoints.rescale.take().map(|(g, restore)| {
                        graph = *g;
                        let _ = shared.store.update(&id, |j| j.graph = graph.clone());
                        shared.view(&id, |v| v.set_graph(&graph));
                        let newest = graph
                            .checkpoint
                            .as_ref()
                            .map_or(1, |c| CheckpointDir::new(&c.dir).next_id());
                        AttemptPlan {
                            attempt,
                            first_checkpoint: newest.max(restore.id + 1),
                            restore: Some(restore),
                        }
                    });
                    let deadline = tokio::time::Instant::now() + delay + shared.slot_wait;
                    let mut not_before = tokio::time::Instant::now() + delay;
                    let deployed = loop {
                        tokio::select! {
                            () = tokio::time::sleep_until(not_before) => {
                                let plan = match &rescaled {
                                    Some(plan) => Ok(plan.clone()),
                                    None => next_attempt(&graph, attempt, run_first),
                                };
                                let plan = match plan {
                                    Ok(plan) => plan,
                                    Err(why) => break Some(Err(why)),
                                };
                                match deploy(&shared, &id, &graph, &plan) {
                                    Ok(h) => break Some(Ok((h, plan))),
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
                                Some(JobEvent::Follow(c)) => lock(&clients).push(c),
                                // The failed attempt's stragglers, lost workers: the next
                                // placement sees the workers as they are.
                                Some(_) => {}
                                None => return,
                            },
                        }
                    };
                    match deployed {
                        Some(Ok((h, plan))) => {
                            held = h;
                            keeper =
                                self::keeper(&shared, &graph, &id, attempt, plan.first_checkpoint);
                            run.deployed(held.iter().map(|(w, _)| w.clone()));
                            let from = plan.restore.as_ref().map_or("the start".to_string(), |r| {
                                format!("checkpoint {}", r.id)
                            });
                            tracing::info!(job = %id, attempt, "redeployed from {from}: {}", describe(&held));
                            client.send(ToClient::Started {
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
                    savepoints.fail_all(&shared, "the job ended before the savepoint completed");
                    // An applied swap ran to the end of the job; one still in flight did not
                    // happen.
                    let step = live.as_ref().map(|l| match l.applied() {
                        true => SwapStep::Confirmed,
                        false => SwapStep::Failed(
                            "the job ended before the swap's checkpoint completed".into(),
                        ),
                    });
                    if let Some(step) = step {
                        live_step(
                            &shared, &id, &held, &mut live, &mut graph, None, &mut run, step,
                        );
                    }
                    let finished = outcome == Outcome::Finished;
                    let published = keeper.take().map_or(Ok(()), |k| k.finish(finished));
                    release(&shared, &std::mem::take(&mut held));
                    lock(&shared.jobs).remove(&id);
                    let outcome = match (outcome, published) {
                        (Outcome::Finished, Err(why)) => Outcome::Failed(why),
                        (outcome, _) => outcome,
                    };
                    if let (Outcome::Stopped(_), Some(at)) = (&outcome, savepoints.stopped_at) {
                        // Stopped: the sinks hold their output up to the savepoint, nothing
                        // in progress (what a restore from it would make of them anyway).
                        for node in &graph.nodes {
                            if let NodeKind::Sink(config) = &node.kind
                                && let Err(e) = prepare_sink(config, Some(at))
                            {
                                tracing::warn!(job = %id, "sink `{}`: {e}", node.uid);
                            }
                        }
                    }
                    if let (false, Some(c)) = (finished, &graph.checkpoint)
                        && !c.retain_on_cancel
                    {
                        // Cancelled or failed for good: this run's checkpoints go, unless asked
                        // to stay.
                        let dir = CheckpointDir::new(&c.dir);
                        for m in dir.completed().0.iter().filter(|m| m.id >= run_first) {
                            dir.discard(m.id);
                        }
                    }
                    let _ = shared.store.update(&id, |j| {
                        j.state = match &outcome {
                            Outcome::Finished | Outcome::Stopped(_) => JobState::Finished,
                            Outcome::Failed(why) => JobState::Failed { why: why.clone() },
                            Outcome::Cancelled(why) => JobState::Cancelled { why: why.clone() },
                        }
                    });
                    shared.forget_ended_views();
                    shared.view(&id, |v| match &outcome {
                        Outcome::Finished => v.ended(Status::Finished, None),
                        Outcome::Stopped(why) => v.ended(Status::Finished, Some(why.clone())),
                        Outcome::Failed(why) => v.ended(Status::Failed, Some(why.clone())),
                        Outcome::Cancelled(why) => v.ended(Status::Cancelled, Some(why.clone())),
                    });
                    let message = match outcome {
                        Outcome::Finished => {
                            tracing::info!(job = %id, "job finished");
                            ToClient::Finished
                        }
                        Outcome::Stopped(why) => {
                            tracing::info!(job = %id, "job {why}");
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
                    client.send(message);
                    return;
                }
            }
        }
        let wakeup = keeper.as_ref().map(|k| k.next_wakeup());
        let wakeup = match (wakeup, live.as_ref().and_then(LiveSwap::deadline)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let event = tokio::select! {
            event = events.recv() => event,
            () = sleep_until_instant(wakeup) => {
                if let Some(k) = keeper.as_mut() {
                    let notices = k.poll(std::time::Instant::now());
                    actions.extend(savepoints.settle(&shared, &id, &graph, k, &notices, &mut run));
                    notify(&held, run.attempt(), notices.clone());
                    actions.extend(live_notices(&shared, &id, &held, &mut live, &mut graph, k, &mut run, &notices));
                }
                if let Some(step) = live.as_mut().map(|l| l.poll(std::time::Instant::now())) {
                    actions.extend(live!(step));
                }
                continue;
            }
        };
        let Some(event) = event else {
            return;
        };
        let attempt = run.attempt();
        match event {
            JobEvent::PartEnded {
                worker,
                attempt,
                outcome,
            } => {
                if let (PartOutcome::Failed { why }, true) = (&outcome, attempt == run.attempt())
                    && let Some(step) = live.as_ref().map(|l| l.part_failed(why))
                {
                    actions.extend(live!(step));
                }
                actions.extend(run.part_ended(attempt, &worker, outcome))
            }
            JobEvent::SwapPrepared {
                worker,
                attempt: a,
                checkpoint,
                error,
            } if a == attempt => {
                if let Some(step) = live
                    .as_mut()
                    .map(|l| l.prepared(&worker, checkpoint, error))
                {
                    actions.extend(live!(step));
                }
            }
            JobEvent::SwapPrepared { .. } => {}
            JobEvent::WorkerLost(worker) => actions.extend(run.worker_lost(&worker)),
            JobEvent::Cancel(why) => actions.extend(run.cancel(why)),
            JobEvent::Ack { attempt: a, ack } if a == attempt => {
                if let Some(k) = keeper.as_mut() {
                    let notices = k.receive(ack, std::time::Instant::now());
                    actions.extend(savepoints.settle(&shared, &id, &graph, k, &notices, &mut run));
                    notify(&held, attempt, notices.clone());
                    actions.extend(live_notices(
                        &shared, &id, &held, &mut live, &mut graph, k, &mut run, &notices,
                    ));
                }
            }
            JobEvent::Ack { .. } => {}
            JobEvent::Progress {
                worker,
                attempt: a,
                progress: p,
            } if a == attempt => {
                progress.insert(worker, (p.records_in, p.records_out));
                let (records_in, records_out) = progress
                    .values()
                    .fold((0, 0), |(i, o), (a, b)| (i + a, o + b));
                let now = std::time::Instant::now();
                shared.view(&id, |v| {
                    v.progress(records_in, records_out, &p.tasks, now);
                    v.first_output(p.first_output_unix_ms);
                });
                client.send(ToClient::Progress {
                    attempt,
                    records_in,
                    records_out,
                });
            }
            JobEvent::Progress { .. } => {}
            JobEvent::Follow(c) => lock(&clients).push(c),
            JobEvent::Savepoint {
                request,
                dir,
                purpose,
                reply,
            } => {
                let triggered = match keeper.as_mut() {
                    None => Err("the job is between attempts (restarting): try again once it runs".to_string()),
                    Some(_) if savepoints.ending() && !matches!(purpose, Purpose::Savepoint) => {
                        Err("the job is already being stopped, rescaled or swapped".to_string())
                    }
                    Some(_) if matches!(purpose, Purpose::Swap(_) | Purpose::LiveSwap { .. }) && !savepoints.pending.is_empty() => {
                        Err("a savepoint of the job is in flight: swap once it is complete".to_string())
                    }
                    Some(_) if live.as_ref().is_some_and(LiveSwap::in_flight) => {
                        Err("a swap of the job is in flight: try again once its checkpoint completed".to_string())
                    }
                    Some(_) if live.is_some() && matches!(purpose, Purpose::Swap(_) | Purpose::LiveSwap { .. }) => {
                        Err("the last swap of the job is on probation until its next checkpoint completes: swap again after it".to_string())
                    }
                    Some(k) if let Purpose::LiveSwap { operator, to } = &purpose => {
                        let from = (graph.nodes.iter().find(|n| n.uid == *operator))
                            .and_then(|n| n.kind.component())
                            .map(|c| c.component.to_string_lossy().into_owned());
                        match from {
                            None => Err(format!("the job has no operator `{operator}`")),
                            Some(from) => {
                                k.hold(true);
                                let checkpoint = k.next_id();
                                for (w, _) in &held {
                                    shared.to_worker(w, ToWorker::PrepareSwap {
                                        job: id.clone(),
                                        attempt,
                                        operator: operator.clone(),
                                        component: to.clone(),
                                        checkpoint,
                                    });
                                }
                                tracing::info!(job = %id, checkpoint, "live swap of `{operator}` to {to} requested: preparing");
                                lock(&shared.requests).update(&request, |r| r.checkpoint = Some(checkpoint));
                                let swap = LiveSwap::new(
                                    request.clone(),
                                    operator.clone(),
                                    from,
                                    to.clone(),
                                    checkpoint,
                                    held.iter().map(|(w, _)| w.clone()),
                                    std::time::Instant::now(),
                                );
                                record_swap(&shared, &id, swap.info("preparing", None));
                                live = Some(swap);
                                Ok(())
                            }
                        }
                    }
                    Some(k) => k.savepoint(std::time::Instant::now()).map(|(checkpoint, notices)| {
                        let target = super::savepoints::target(dir.as_deref(), &graph, &id, checkpoint);
                        tracing::info!(job = %id, checkpoint, "{} requested: savepoint to {}", purpose.name(), target.display());
                        lock(&shared.requests).update(&request, |r| r.checkpoint = Some(checkpoint));
                        if !matches!(purpose, Purpose::Savepoint) {
                            shared.view(&id, |v| v.status = Status::Stopping);
                        }
                        savepoints.pending.insert(checkpoint, (request, target, purpose));
                        // Its trigger may have failed at once (its directory cannot be made).
                        actions.extend(savepoints.settle(&shared, &id, &graph, k, &notices, &mut run));
                        notify(&held, attempt, notices);
                    }),
                };
                let _ = reply.send(triggered);
            }
        }
    }
}

/// The savepoints a job's run has in flight, by checkpoint id: the request, where the
/// savepoint goes, what it is for; and a rescale's graph and savepoint once taken.
#[derive(Default)]
struct Savepoints {
    pending: std::collections::HashMap<u64, (String, PathBuf, Purpose)>,
    rescale: Option<(Box<JobGraph>, Restore)>,
    /// The checkpoint of the savepoint a stop was taken with.
    stopped_at: Option<u64>,
}

impl Savepoints {
    /// Whether a stop or a rescale is under way.
    fn ending(&self) -> bool {
        self.rescale.is_some()
            || self
                .pending
                .values()
                .any(|(_, _, p)| !matches!(p, Purpose::Savepoint))
    }

    /// The keeper's `notices`: a savepoint's checkpoint completed is exported (then the job
    /// stops, or is redeployed, as asked), one aborted fails its request.
    fn settle(
        &mut self,
        shared: &Shared,
        id: &str,
        graph: &JobGraph,
        keeper: &mut Keeper,
        notices: &[Notice],
        run: &mut JobRun,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        for notice in notices {
            let (checkpoint, completed) = match notice {
                Notice::Complete { summary } => (summary.id, true),
                Notice::Abort { id } => (*id, false),
                Notice::Trigger { .. } => continue,
            };
            let Some((request, target, purpose)) = self.pending.remove(&checkpoint) else {
                continue;
            };
            let exported = if completed {
                let marker = super::savepoints::marker(id, graph, checkpoint);
                keeper.export(checkpoint, &target, &marker)
            } else {
                Err(format!(
                    "its checkpoint {checkpoint} was aborted (timed out, or a task declined it: see the coordinator's log)"
                ))
            };
            let status = match &exported {
                Ok(()) => {
                    let path = target.display().to_string();
                    tracing::info!(job = %id, checkpoint, "savepoint taken: {path}");
                    shared.view(id, |v| {
                        v.savepoints.push(super::view::SavepointInfo {
                            id: checkpoint,
                            path: path.clone(),
                            completed_ms: super::view::now_ms(),
                        })
                    });
                    RequestStatus::Completed { path }
                }
                Err(why) => {
                    tracing::warn!(job = %id, checkpoint, "savepoint failed: {why}");
                    if !matches!(purpose, Purpose::Savepoint) {
                        shared.view(id, |v| v.status = Status::Running);
                    }
                    RequestStatus::Failed { error: why.clone() }
                }
            };
            lock(&shared.requests).update(&request, |r| r.status = status);
            if exported.is_err() {
                continue;
            }
            let path = target.display().to_string();
            let done = if purpose.name() == "swap" {
                "swapped"
            } else {
                "rescaled"
            };
            match purpose {
                Purpose::Savepoint => {}
                Purpose::Stop => {
                    self.stopped_at = Some(checkpoint);
                    actions.extend(run.stop(format!("stopped with savepoint {path}")));
                }
                Purpose::LiveSwap { .. } => {}
                Purpose::Rescale(g) | Purpose::Swap(g) => {
                    let (old, new) = (graph.components_by_uid(), g.components_by_uid());
                    for (uid, to) in new.iter().filter(|(uid, to)| old.get(*uid) != Some(*to)) {
                        let now = super::view::now_ms();
                        let info = SwapInfo {
                            operator: uid.clone(),
                            from: old.get(uid).cloned().unwrap_or_default(),
                            to: to.clone(),
                            mode: "restart".into(),
                            status: "confirmed".into(),
                            checkpoint: Some(checkpoint),
                            why: None,
                            started_ms: now,
                            at_ms: now,
                        };
                        record_swap(shared, id, info);
                    }
                    self.rescale = Some((
                        g,
                        Restore {
                            path: target.join(format!("chk-{checkpoint}")),
                            id: checkpoint,
                            allow_non_restored_state: false,
                        },
                    ));
                    actions.extend(run.redeploy(format!("{done} from savepoint {path}")));
                }
            }
        }
        actions
    }

    /// The job ended: the savepoints in flight will not complete.
    fn fail_all(&mut self, shared: &Shared, why: &str) {
        for (_, (request, _, _)) in self.pending.drain() {
            lock(&shared.requests).update(&request, |r| {
                r.status = RequestStatus::Failed { error: why.into() }
            });
        }
    }
}

/// Sends to every client following a job (dropping those gone).
struct Broadcast<'a>(&'a std::sync::Mutex<Vec<mpsc::UnboundedSender<ToClient>>>);

impl Broadcast<'_> {
    fn send(&self, message: ToClient) {
        lock(self.0).retain(|c| c.send(message.clone()).is_ok());
    }
}

/// Sleeps until `at` (a std instant), or forever if `None`.
async fn sleep_until_instant(at: Option<std::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

/// Adds (or updates: the newest of its operator and request) a swap in the job's stored
/// history and its view.
fn record_swap(shared: &Shared, id: &str, info: SwapInfo) {
    let now = info.at_ms;
    let mut swaps = Vec::new();
    let _ = shared.store.update(id, |j| {
        match j.swaps.iter_mut().rev().find(|s| {
            s.operator == info.operator && s.checkpoint == info.checkpoint && s.to == info.to
        }) {
            Some(s) => {
                s.status = info.status.clone();
                s.why = info.why.clone();
                s.at_ms = now;
            }
            None => j.swaps.push(info.clone()),
        }
        swaps = j.swaps.clone();
    });
    shared.view(id, |v| v.set_swaps(&swaps));
}

/// What the keeper's `notices` mean for the live swap, carried out.
#[allow(clippy::too_many_arguments)]
fn live_notices(
    shared: &Shared,
    id: &str,
    held: &[(String, u32)],
    live: &mut Option<LiveSwap>,
    graph: &mut JobGraph,
    keeper: &mut Keeper,
    run: &mut JobRun,
    notices: &[Notice],
) -> Vec<Action> {
    let mut actions = Vec::new();
    for notice in notices {
        let Some(l) = live.as_mut() else { break };
        let step = match notice {
            Notice::Complete { summary } => l.completed(summary.id, std::time::Instant::now()),
            Notice::Abort { id } => l.aborted(*id),
            Notice::Trigger { .. } => continue,
        };
        actions.extend(live_step(
            shared,
            id,
            held,
            live,
            graph,
            Some(&mut *keeper),
            run,
            step,
        ));
    }
    actions
}

/// Carries out what the live swap decided (`held`: the workers of the attempt).
#[allow(clippy::too_many_arguments)]
fn live_step(
    shared: &Shared,
    id: &str,
    held: &[(String, u32)],
    live: &mut Option<LiveSwap>,
    graph: &mut JobGraph,
    keeper: Option<&mut Keeper>,
    run: &mut JobRun,
    step: SwapStep,
) -> Vec<Action> {
    let Some(swap) = live.as_ref() else {
        return Vec::new();
    };
    let set_component = |graph: &mut JobGraph, hash: &str| {
        if let Some(op) = (graph.nodes.iter_mut().find(|n| n.uid == swap.operator))
            .and_then(|n| n.kind.component_mut())
        {
            op.component = PathBuf::from(hash);
        }
        let _ = shared.store.update(id, |j| j.graph = graph.clone());
        shared.view(id, |v| v.components = graph.components_by_uid());
    };
    let fail_request = |why: &str| {
        lock(&shared.requests).update(&swap.request, |r| {
            r.status = RequestStatus::Failed { error: why.into() }
        });
    };
    match step {
        SwapStep::Nothing => Vec::new(),
        SwapStep::Trigger => {
            let Some(k) = keeper else {
                let why = SwapStep::Failed("the job is between attempts".into());
                return live_step(shared, id, held, live, graph, None, run, why);
            };
            let now = std::time::Instant::now();
            match k.swap_savepoint(now, swap.checkpoint, &swap.operator, &swap.to) {
                Ok(notices) => {
                    tracing::info!(job = %id, checkpoint = swap.checkpoint, "every worker has the new component of `{}`: swapping at the barrier", swap.operator);
                    record_swap(shared, id, swap.info("swapping", None));
                    for (w, _) in held {
                        for notice in &notices {
                            let notice = notice.clone();
                            let message = ToWorker::Notice {
                                job: id.to_string(),
                                attempt: run.attempt(),
                                notice,
                            };
                            shared.to_worker(w, message);
                        }
                    }
                    live_notices(shared, id, held, live, graph, k, run, &notices)
                }
                Err(why) => live_step(
                    shared,
                    id,
                    held,
                    live,
                    graph,
                    Some(k),
                    run,
                    SwapStep::Failed(why),
                ),
            }
        }
        SwapStep::Failed(why) => {
            if let Some(k) = keeper {
                k.hold(false);
            }
            tracing::warn!(job = %id, "the live swap of `{}` failed: {why}", swap.operator);
            record_swap(shared, id, swap.info("failed", Some(why.clone())));
            fail_request(&format!("the swap did not happen: {why}"));
            *live = None;
            Vec::new()
        }
        SwapStep::Applied => {
            tracing::info!(job = %id, checkpoint = swap.checkpoint, "`{}` swapped to {} (on probation for {:?})", swap.operator, swap.to, super::swap::PROBATION);
            // No checkpoint on probation: nothing the new component emits is published before
            // it passed.
            if let Some(k) = keeper {
                k.hold(true);
            }
            set_component(graph, &swap.to);
            record_swap(shared, id, swap.info("applied", None));
            Vec::new()
        }
        SwapStep::Release => {
            if let Some(k) = keeper {
                k.hold(false);
            }
            Vec::new()
        }
        SwapStep::Confirmed => {
            let path = (graph.checkpoint.as_ref())
                .map(|c| {
                    c.dir
                        .join(format!("chk-{}", swap.checkpoint))
                        .display()
                        .to_string()
                })
                .unwrap_or_default();
            // The history first: whoever sees the request complete sees it confirmed.
            record_swap(shared, id, swap.info("confirmed", None));
            lock(&shared.requests).update(&swap.request, |r| {
                r.status = RequestStatus::Completed { path }
            });
            *live = None;
            Vec::new()
        }
        SwapStep::RollBack(why) => {
            tracing::warn!(job = %id, "rolling the swap of `{}` back to {}: {why}", swap.operator, swap.from);
            if swap.applied() {
                set_component(graph, &swap.from);
            }
            record_swap(shared, id, swap.info("rolled_back", Some(why.clone())));
            fail_request(&format!("rolled back to {}: {why}", swap.from));
            let operator = swap.operator.clone();
            *live = None;
            run.redeploy(format!("the swap of `{operator}` was rolled back: {why}"))
        }
    }
}
