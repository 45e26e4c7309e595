//! A task: one subtask of a chain, on its own thread, with a mailbox loop (Flink's StreamTask).
//! The head is a source or an input gate; each batch runs through the chain's operators in turn
//! (the same buffer, no channel between them) and leaves through the record writers.

use super::channel::{Gate, Received};
use super::checkpointing::{Report, TaskLink};
use super::control::{JobControl, JobMetrics};
use super::event_time::{Piece, SourceClock};
use super::metrics::TaskMetrics;
use super::window::{WindowError, WindowStep};
use super::writer::{RecordWriter, WriteError};
use crate::cancel::CancelToken;
use crate::checkpoint::CheckpointId;
use crate::connectors::{ConnectorError, Poll, Sink, Source};
use crate::net::control::StateAnswer;
use crate::state::snapshot::TaskSnapshot;
use crate::wasm::{GuestError, OperatorInstance, Outputs};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

thread_local! {
    /// The job node this task thread is running (its index in the job graph), so that a panic
    /// inside weir can name it.
    static CURRENT_NODE: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Notes that this thread now runs job node `node`.
pub fn enter_node(node: usize) {
    CURRENT_NODE.set(Some(node));
}

/// The job node this thread ran last, if any.
pub fn current_node() -> Option<usize> {
    CURRENT_NODE.get()
}

/// Why a task stopped before its end.
#[derive(Debug)]
pub enum TaskError {
    /// The job is being cancelled (another task failed, or the user asked).
    Cancelled,
    /// This task failed: `uid` names the operator, source or sink at fault.
    Failed { uid: Arc<str>, cause: String },
}

/// Where a step's output goes.
#[derive(Default)]
pub struct Routes {
    /// The next step of the chain, for a chained main output.
    pub chained: Option<usize>,
    /// Writers of the main output's edges to other chains.
    pub main: Vec<usize>,
    /// Writers of each named side output.
    pub side: Vec<(String, Vec<usize>)>,
}

/// One node of the chain, after the head.
pub enum Step {
    Operator(Box<OperatorInstance>),
    Window(Box<WindowStep>),
    Sink(Box<dyn Sink>),
}

pub struct ChainStep {
    /// The node's index in the job graph.
    pub node: usize,
    /// How its guest was instantiated (what a component swapped in is instantiated with).
    pub spec: Option<crate::wasm::InstanceSpec>,
    pub uid: Arc<str>,
    pub step: Step,
    pub routes: Routes,
}

/// Where a task's input comes from.
pub enum Head {
    Source {
        /// The node's index in the job graph.
        node: usize,
        uid: Arc<str>,
        source: Box<dyn Source>,
        routes: Routes,
        /// Its event time, when it has timestamps.
        clock: Option<Box<SourceClock>>,
    },
    Gate(Arc<Gate>),
}

pub struct Task {
    pub steps: Vec<ChainStep>,
    pub writers: Vec<RecordWriter>,
    pub buffer_bytes: usize,
    /// The most queued input one call takes ([`merge_bytes`]).
    pub merge_bytes: usize,
    pub flush_interval: Duration,
    pub control: Arc<JobControl>,
    /// This attempt's cancellation.
    pub cancel: CancelToken,
    pub metrics: Arc<JobMetrics>,
    /// The link to the checkpoint driver, when the job checkpoints.
    pub checkpoints: Option<TaskLink>,
    /// Whether checkpoints are incremental.
    pub incremental: bool,
    /// The checkpoints this task took snapshots for since its last full one, oldest first.
    pub taken: Vec<CheckpointId>,
    /// The keyed entries its last full snapshot held.
    pub full_entries: usize,
    /// This task's counters.
    pub task_metrics: Arc<TaskMetrics>,
    /// Queries of its operators' keyed state.
    pub queries: super::query::TaskQueries,
}

/// A source's part of a checkpoint: its uid, its position and its watermark generator's state.
type SourceState<'a> = (&'a Arc<str>, Vec<u8>, Option<Vec<u8>>);
type OwnedSourceState = (Arc<str>, Vec<u8>, Option<Vec<u8>>);

/// The most snapshots in a chain (a full one and deltas on it) before the next is full again,
/// which bounds what a restore reads.
const MAX_CHAIN: usize = 8;

/// A task that falls behind takes the input buffers queued for it, up to this many bytes, in one
/// operator call (see [`Gate::recv_merged`]).
const MERGE_BYTES: usize = 1 << 20;

/// How much queued input one call may take: [`MERGE_BYTES`], but no more than a 16th of an
/// operator's memory (the batch, its records and what the operator emits must fit), and at
/// least one buffer (then nothing is merged).
pub fn merge_bytes(buffer_bytes: usize, memory_bytes: usize) -> usize {
    MERGE_BYTES.min(memory_bytes / 16).max(buffer_bytes)
}

/// Merging pays where the per-call cost matters, i.e. where calls are short; a chain whose last
/// call took longer than this gets one buffer per call, so that merging never brings a slow
/// operator near its call time limit.
const MERGE_BELOW: Duration = Duration::from_millis(20);

/// How many bytes of queued input the next call may take, after a call that took `last_call`.
fn merge_limit(last_call: Duration, merge_bytes: usize) -> usize {
    if last_call < MERGE_BELOW {
        merge_bytes
    } else {
        0
    }
}

/// A guest's error as the task's: cancellation stays cancellation, anything else fails the task.
pub(super) fn guest_failed(uid: &Arc<str>, e: GuestError) -> TaskError {
    match e {
        GuestError::Cancelled { .. } => TaskError::Cancelled,
        e => TaskError::Failed {
            uid: uid.clone(),
            cause: e.to_string(),
        },
    }
}

/// A window step's error as the task's, as [`guest_failed`] does.
fn window_failed(uid: &Arc<str>, e: WindowError) -> TaskError {
    match e {
        WindowError::Guest(e) => guest_failed(uid, e),
        WindowError::Failed(cause) => TaskError::Failed {
            uid: uid.clone(),
            cause,
        },
    }
}

/// A connector's error as the task's, as [`guest_failed`] does.
pub(super) fn connector_failed(uid: &Arc<str>, e: ConnectorError) -> TaskError {
    match e {
        ConnectorError::Cancelled => TaskError::Cancelled,
        e => TaskError::Failed {
            uid: uid.clone(),
            cause: e.to_string(),
        },
    }
}

impl Task {
    /// Runs the task to the end of its input from `head` (or until the job is cancelled).
    pub fn run(mut self, head: Head) -> Result<(), TaskError> {
        let mut last_flush = Instant::now();
        let mut last_call = Duration::ZERO;
        let mut last_barrier = self
            .checkpoints
            .as_ref()
            .map_or(0, |c| c.shared.triggered.load(Ordering::SeqCst));
        let source = match head {
            Head::Source {
                node,
                uid,
                mut source,
                routes,
                mut clock,
            } => {
                if let Some(wm) = clock.as_mut().and_then(|c| c.take_pending()) {
                    self.watermark(wm)?;
                }
                loop {
                    if self.cancel.is_cancelled() {
                        return Err(TaskError::Cancelled);
                    }
                    self.serve_queries();
                    self.work(Task::fire_processing_timers)?;
                    if let Some(c) = &self.checkpoints {
                        let due = c.shared.triggered.load(Ordering::SeqCst);
                        if due > last_barrier {
                            last_barrier = due;
                            let position =
                                source.position().map_err(|e| connector_failed(&uid, e))?;
                            let time = clock.as_ref().and_then(|c| c.snapshot());
                            self.checkpoint(due, Some((&uid, position, time)), Duration::ZERO)?;
                        }
                    }
                    if self.control.is_stopping() {
                        break;
                    }
                    let mut batch = Vec::with_capacity(self.buffer_bytes + 1024);
                    enter_node(node);
                    let poll = self.work(|task| {
                        let poll = source
                            .poll(&mut batch, task.buffer_bytes)
                            .map_err(|e| connector_failed(&uid, e))?;
                        if let Some((output, rejected)) = source.rejected() {
                            let output = output.to_string();
                            task.dispatch(&uid, &routes, Some(output), rejected)?;
                        }
                        if !batch.is_empty() {
                            let n = weir_batch::count(&batch).unwrap_or(0) as u64;
                            task.metrics.add_in(n);
                            TaskMetrics::add(&task.task_metrics.records_in, n);
                            TaskMetrics::add(&task.task_metrics.bytes_in, batch.len() as u64);
                            let batch = std::mem::take(&mut batch);
                            match &mut clock {
                                None => task.dispatch(&uid, &routes, None, batch)?,
                                Some(c) => {
                                    let pieces =
                                        c.on_batch(batch, Instant::now()).map_err(|cause| {
                                            TaskError::Failed {
                                                uid: uid.clone(),
                                                cause,
                                            }
                                        })?;
                                    for piece in pieces {
                                        match piece {
                                            Piece::Data(d) => {
                                                task.dispatch(&uid, &routes, None, d)?
                                            }
                                            Piece::Watermark(wm) => task.watermark(wm)?,
                                        }
                                    }
                                }
                            }
                        }
                        if let Some(wm) = clock.as_mut().and_then(|c| c.on_tick(Instant::now())) {
                            task.watermark(wm)?;
                        }
                        Ok(poll)
                    })?;
                    if last_flush.elapsed() >= self.flush_interval {
                        self.flush()?;
                        last_flush = Instant::now();
                    }
                    if poll == Poll::Ended {
                        break;
                    }
                }
                let position = source.position().map_err(|e| connector_failed(&uid, e))?;
                let time = clock.as_ref().and_then(|c| c.snapshot());
                Some((uid, position, time))
            }
            Head::Gate(gate) => {
                loop {
                    self.serve_queries();
                    self.work(Task::fire_processing_timers)?;
                    let pending = self.writers.iter().any(RecordWriter::has_pending);
                    let flush = pending.then(|| last_flush + self.flush_interval);
                    let deadline = match (flush, self.next_processing_timer()) {
                        (Some(f), Some(t)) => Some(f.min(t)),
                        (f, t) => f.or(t),
                    };
                    let m = &self.task_metrics;
                    let received = TaskMetrics::waiting(&m.idle_ns, &m.idle_since, || {
                        gate.recv_merged(deadline, merge_limit(last_call, self.merge_bytes))
                    });
                    match received {
                        Received::Data(batch) => {
                            let started = Instant::now();
                            let m = &self.task_metrics;
                            TaskMetrics::add(
                                &m.records_in,
                                weir_batch::count(&batch).unwrap_or(0) as u64,
                            );
                            TaskMetrics::add(&m.bytes_in, batch.len() as u64);
                            self.work(|task| task.run_step(0, batch))?;
                            last_call = started.elapsed();
                            if last_flush.elapsed() >= self.flush_interval {
                                self.flush()?;
                                last_flush = Instant::now();
                            }
                        }
                        Received::Barrier(id, align) => self.checkpoint(id, None, align)?,
                        Received::Watermark(wm) => self.work(|task| task.watermark(wm))?,
                        Received::Abandoned(id) => {
                            if let Some(c) = &self.checkpoints {
                                c.report(Report::Decline {
                                    id,
                                    task: c.task,
                                    why: "a newer checkpoint's barrier overtook it".into(),
                                });
                            }
                        }
                        Received::TimedOut => {
                            self.flush()?;
                            last_flush = Instant::now();
                        }
                        Received::AllEnded => break,
                        Received::Cancelled => return Err(TaskError::Cancelled),
                    }
                }
                None
            }
        };
        self.finish(source)
    }

    /// Answers the queries of its operators' state waiting, if any.
    fn serve_queries(&mut self) {
        if !self.queries.0.is_pending() {
            return;
        }
        for (query, reply) in self.queries.0.take() {
            let step = self.steps.iter_mut().find(|s| *s.uid == *query.operator);
            reply(match step.map(|s| &mut s.step) {
                Some(Step::Operator(op)) => super::query::answer(op.keyed_state(), &query),
                Some(Step::Window(w)) => super::query::answer(w.instance().keyed_state(), &query),
                Some(Step::Sink(_)) => StateAnswer::NotFound {
                    why: format!("`{}` is a sink: it keeps no keyed state", query.operator),
                },
                None => StateAnswer::NotFound {
                    why: format!("`{}` does not run in this task", query.operator),
                },
            });
        }
    }

    /// Takes this task's part of checkpoint `id`: the source's position (at the head of a
    /// chain), each operator's keyed state, each sink's pre-commit; then forwards the barrier
    /// downstream and hands the snapshot to the driver, which writes it.
    fn checkpoint(
        &mut self,
        id: CheckpointId,
        source: Option<SourceState<'_>>,
        align: Duration,
    ) -> Result<(), TaskError> {
        if self.checkpoints.is_none() {
            return Ok(());
        }
        let started = Instant::now();
        let (snapshot, base) = self.snapshot(Some(id), source)?;
        for w in &mut self.writers {
            w.barrier(id).map_err(|_| TaskError::Cancelled)?;
        }
        // The steps that swap their component at this barrier, with their private state as
        // the snapshot just took it.
        let swaps: Vec<(usize, crate::wasm::LoadedComponent, Option<Vec<u8>>)> =
            (0..self.steps.len())
                .filter_map(|i| {
                    let uid = &self.steps[i].uid;
                    let component = self.control.swap_for(id, uid)?;
                    let private = (snapshot.private.iter())
                        .find(|(u, _)| **u == **uid)
                        .map(|(_, state)| state.clone());
                    Some((i, component, private))
                })
                .collect();
        if let Some(c) = &self.checkpoints {
            c.report(Report::Snapshot {
                id,
                task: c.task,
                snapshot,
                base,
                sync: started.elapsed(),
                align,
            });
        }
        for (i, component, private) in swaps {
            self.swap(i, &component, private.as_deref())?;
        }
        Ok(())
    }

    /// Step `i` goes on with `component` (a new version of its operator or window function)
    /// from where its snapshot for the barrier just passed left it: its keyed state, and
    /// `private` (its private state) handed to the new version's `restore`.
    fn swap(
        &mut self,
        i: usize,
        component: &crate::wasm::LoadedComponent,
        private: Option<&[u8]>,
    ) -> Result<(), TaskError> {
        let started = Instant::now();
        let step = &mut self.steps[i];
        enter_node(step.node);
        let Some(spec) = &step.spec else {
            return Err(TaskError::Failed {
                uid: step.uid.clone(),
                cause: "a swap reached a step that runs no component".into(),
            });
        };
        let swapped = match &mut step.step {
            Step::Operator(op) => op.swap(component, spec, private),
            Step::Window(w) => w.instance().swap(component, spec),
            Step::Sink(_) => Ok(()),
        };
        swapped.map_err(|e| TaskError::Failed {
            uid: step.uid.clone(),
            cause: format!("the component swapped in failed: {e}"),
        })?;
        tracing::info!(
            operator = %step.uid,
            subtask = spec.subtask,
            ms = started.elapsed().as_secs_f64() * 1e3,
            "swapped in a new component"
        );
        Ok(())
    }

    /// The task's snapshot for checkpoint `id` (`None`: its last, at the end of input).
    fn snapshot(
        &mut self,
        id: Option<CheckpointId>,
        source: Option<SourceState<'_>>,
    ) -> Result<(TaskSnapshot, Option<CheckpointId>), TaskError> {
        let published = self
            .checkpoints
            .as_ref()
            .map_or(0, |c| c.shared.published.load(Ordering::SeqCst));
        // Incremental: a delta against this task's snapshot in the last completed checkpoint,
        // when it has one, the chain of deltas since its last full snapshot is short, every
        // operator still knows what changed since, and less than half as many keys changed as
        // the last full snapshot held (else the delta is about as large, and a restore would
        // read both for nothing).
        let changed = self
            .steps
            .iter_mut()
            .try_fold(0, |sum, s| match &mut s.step {
                Step::Operator(op) => Some(sum + op.changed_keys(published)?),
                Step::Window(w) => Some(sum + w.instance().changed_keys(published)?),
                Step::Sink(_) => Some(sum),
            });
        let base = match (id, changed) {
            (Some(_), Some(changed))
                if self.incremental
                    && self.taken.len() < MAX_CHAIN
                    && self.taken.contains(&published)
                    && changed * 2 < self.full_entries =>
            {
                Some(published)
            }
            _ => None,
        };
        if base.is_none() {
            self.taken.clear();
        }
        self.taken.extend(id);
        let (sources, private) = match source {
            Some((uid, position, time)) => (
                vec![(uid.to_string(), position)],
                // The source's watermark generator, beside its position.
                time.map(|t| vec![(uid.to_string(), t)]).unwrap_or_default(),
            ),
            None => (Vec::new(), Vec::new()),
        };
        let mut snapshot = TaskSnapshot {
            sources,
            private,
            finished: id.is_none(),
            ..TaskSnapshot::default()
        };
        let mut full_entries = 0;
        for step in &mut self.steps {
            let keyed = match &mut step.step {
                Step::Operator(op) => {
                    // A finished task is never run again: a closed operator has no state to give.
                    if id.is_some()
                        && let Some(state) = op
                            .snapshot_private()
                            .map_err(|e| guest_failed(&step.uid, e))?
                        && !state.is_empty()
                    {
                        snapshot.private.push((step.uid.to_string(), state));
                    }
                    op.snapshot_state(id.unwrap_or(CheckpointId::MAX), base)
                }
                Step::Window(w) => w
                    .instance()
                    .snapshot_state(id.unwrap_or(CheckpointId::MAX), base),
                Step::Sink(sink) => {
                    let pending = sink
                        .pre_commit(id, published)
                        .map_err(|e| connector_failed(&step.uid, e))?;
                    if !pending.is_empty() {
                        snapshot.sinks.push((step.uid.to_string(), pending));
                    }
                    continue;
                }
            };
            let state = keyed.map_err(|cause| TaskError::Failed {
                uid: step.uid.clone(),
                cause,
            })?;
            if base.is_none() {
                full_entries += state.entries() as usize;
            }
            snapshot.operators.push((step.uid.to_string(), state));
        }
        if base.is_none() {
            self.full_entries = full_entries;
        }
        Ok((snapshot, base))
    }

    /// End of input: close the steps in chain order (what a step emits while closing still
    /// reaches the steps after it), pre-commit the sinks' last output, end every outgoing
    /// channel, and report the task's last snapshot (`source`: the head's uid and position).
    fn finish(mut self, source: Option<OwnedSourceState>) -> Result<(), TaskError> {
        for i in 0..self.steps.len() {
            let uid = self.steps[i].uid.clone();
            enter_node(self.steps[i].node);
            match &mut self.steps[i].step {
                Step::Operator(op) => {
                    let outputs = op.close().map_err(|e| guest_failed(&uid, e))?;
                    self.dispatch_outputs(i, outputs)?;
                }
                Step::Window(w) => {
                    let outputs = w.close().map_err(|e| window_failed(&uid, e))?;
                    self.dispatch_outputs(i, outputs)?;
                }
                Step::Sink(sink) => sink.close().map_err(|e| connector_failed(&uid, e))?,
            }
        }
        let last = match &self.checkpoints {
            Some(_) => Some(
                self.snapshot(
                    None,
                    source.as_ref().map(|(u, p, t)| (u, p.clone(), t.clone())),
                )?
                .0,
            ),
            None => None,
        };
        for w in &mut self.writers {
            w.end().map_err(|_| TaskError::Cancelled)?;
        }
        if let (Some(c), Some(snapshot)) = (&self.checkpoints, last) {
            c.report(Report::Finished {
                task: c.task,
                snapshot,
            });
        }
        Ok(())
    }

    /// The task's watermark is now `wm` (or, as `watermark::IDLE`, its inputs are idle): the
    /// window steps fire what it completes, in chain order (what one emits reaches the steps
    /// after it first), then it goes downstream.
    fn watermark(&mut self, wm: i64) -> Result<(), TaskError> {
        if wm != crate::time::watermark::IDLE {
            for i in 0..self.steps.len() {
                let step = &mut self.steps[i];
                enter_node(step.node);
                let uid = &step.uid;
                let outputs = match &mut step.step {
                    Step::Window(w) => w.on_watermark(wm).map_err(|e| window_failed(uid, e))?,
                    Step::Operator(op) => {
                        op.advance_watermark(wm).map_err(|e| guest_failed(uid, e))?
                    }
                    Step::Sink(_) => continue,
                };
                self.dispatch_outputs(i, outputs)?;
            }
        }
        for w in &mut self.writers {
            w.watermark(wm).map_err(|_| TaskError::Cancelled)?;
        }
        Ok(())
    }

    /// When the next processing-time timer of its operators is due.
    fn next_processing_timer(&self) -> Option<Instant> {
        let next = (self.steps.iter())
            .filter_map(|s| match &s.step {
                Step::Operator(op) => op.next_processing_timer(),
                Step::Window(w) => w.next_clock_timer(),
                Step::Sink(_) => None,
            })
            .min()?;
        let wait = next.saturating_sub(crate::wasm::now_ms()).max(0) as u64;
        Some(Instant::now() + Duration::from_millis(wait))
    }

    /// Fires its operators' processing-time timers and its processing-time windows that are
    /// due.
    fn fire_processing_timers(&mut self) -> Result<(), TaskError> {
        let now = crate::wasm::now_ms();
        for i in 0..self.steps.len() {
            let step = &mut self.steps[i];
            let uid = &step.uid;
            let outputs = match &mut step.step {
                Step::Operator(op) if op.next_processing_timer().is_some_and(|t| t <= now) => {
                    enter_node(step.node);
                    op.fire_processing_timers(now)
                        .map_err(|e| guest_failed(uid, e))?
                }
                Step::Window(w) if w.next_clock_timer().is_some_and(|t| t <= now) => {
                    enter_node(step.node);
                    w.on_clock(now).map_err(|e| window_failed(uid, e))?
                }
                _ => continue,
            };
            self.dispatch_outputs(i, outputs)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), TaskError> {
        for w in &mut self.writers {
            w.flush().map_err(|_| TaskError::Cancelled)?;
        }
        Ok(())
    }

    /// Runs `f`, counting its time as busy but for what it waited for credit.
    fn work<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> T {
        let backpressured = self.task_metrics.backpressured_ns.load(Ordering::Relaxed);
        let started = Instant::now();
        let out = f(self);
        let elapsed = started.elapsed().as_nanos() as u64;
        let waited = self
            .task_metrics
            .backpressured_ns
            .load(Ordering::Relaxed)
            .saturating_sub(backpressured);
        TaskMetrics::add(&self.task_metrics.busy_ns, elapsed.saturating_sub(waited));
        out
    }

    fn run_step(&mut self, i: usize, batch: Vec<u8>) -> Result<(), TaskError> {
        let step = &mut self.steps[i];
        enter_node(step.node);
        match &mut step.step {
            Step::Operator(op) => {
                let outputs = op.process(&batch).map_err(|e| guest_failed(&step.uid, e))?;
                self.dispatch_outputs(i, outputs)
            }
            Step::Window(w) => {
                let outputs = w.process(&batch).map_err(|e| window_failed(&step.uid, e))?;
                self.dispatch_outputs(i, outputs)
            }
            Step::Sink(sink) => {
                let n = weir_batch::count(&batch).unwrap_or(0) as u64;
                sink.write(&batch)
                    .map_err(|e| connector_failed(&step.uid, e))?;
                self.metrics.add_out(n);
                TaskMetrics::add(&self.task_metrics.records_out, n);
                TaskMetrics::add(&self.task_metrics.bytes_out, batch.len() as u64);
                Ok(())
            }
        }
    }

    fn dispatch_outputs(&mut self, i: usize, outputs: Outputs) -> Result<(), TaskError> {
        // Routes are read while later steps run, so take them out for the duration.
        let routes = std::mem::take(&mut self.steps[i].routes);
        let (uid, node) = (self.steps[i].uid.clone(), self.steps[i].node);
        let result = outputs.into_iter().try_for_each(|(output, batch)| {
            enter_node(node);
            self.dispatch(&uid, &routes, output, batch)
        });
        self.steps[i].routes = routes;
        result
    }

    fn dispatch(
        &mut self,
        uid: &Arc<str>,
        routes: &Routes,
        output: Option<String>,
        batch: Vec<u8>,
    ) -> Result<(), TaskError> {
        let writers: &[usize] = match &output {
            None => {
                if let Some(next) = routes.chained {
                    return self.run_step(next, batch);
                }
                &routes.main
            }
            // A side output no edge consumes is dropped, as in Flink.
            Some(name) => routes
                .side
                .iter()
                .find(|(n, _)| n == name)
                .map_or(&[], |(_, w)| w.as_slice()),
        };
        let Some((&last, rest)) = writers.split_last() else {
            return Ok(());
        };
        TaskMetrics::add(
            &self.task_metrics.records_out,
            weir_batch::count(&batch).unwrap_or(0) as u64,
        );
        for &w in rest {
            self.write(uid, w, batch.clone())?;
        }
        self.write(uid, last, batch)
    }

    fn write(&mut self, uid: &Arc<str>, writer: usize, batch: Vec<u8>) -> Result<(), TaskError> {
        self.writers[writer].write(batch).map_err(|e| match e {
            WriteError::Cancelled => TaskError::Cancelled,
            WriteError::Malformed(e) => TaskError::Failed {
                uid: uid.clone(),
                cause: format!("emitted a {e}"),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_calls_take_merged_input() {
        assert_eq!(merge_limit(Duration::ZERO, 4096), 4096);
        assert_eq!(merge_limit(Duration::from_millis(19), 4096), 4096);
        assert_eq!(merge_limit(MERGE_BELOW, 4096), 0);
        assert_eq!(merge_limit(Duration::from_secs(3), 4096), 0);
    }

    #[test]
    fn merged_input_is_bounded_by_a_mib_and_the_operator_s_memory() {
        let mib = 1 << 20;
        assert_eq!(merge_bytes(32 << 10, 256 * mib), mib);
        assert_eq!(merge_bytes(32 << 10, 4 * mib), 256 << 10);
        // Less than one buffer's worth: one buffer per call, nothing merged.
        assert_eq!(merge_bytes(32 << 10, 256 << 10), 32 << 10);
        assert_eq!(merge_bytes(64 * mib, 256 * mib), 64 * mib);
    }
}
