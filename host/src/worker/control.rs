//! What the tasks of a running job share: cancellation, graceful stop, the first failure, and the
//! counters progress reports read.

use super::channel::Gate;
use crate::cancel::CancelToken;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Stops a job: `stop` lets sources end as if bounded (everything drains, sinks flush); `cancel`
/// tears the current attempt down at once: waiting tasks wake, running and blocked guests are
/// interrupted. A job restarted after a failure runs a new attempt with a fresh cancellation;
/// a job cancelled for a reason of its own (the user's Ctrl-C) stays cancelled.
#[derive(Default)]
pub struct JobControl {
    stopping: AtomicBool,
    /// Why the job was cancelled, when not because a task failed.
    reason: OnceLock<String>,
    attempt: Mutex<Attempt>,
    /// Where its guests' lines are kept for the API, when they are.
    logs: OnceLock<Arc<crate::wasm::guest_log::RecentLogs>>,
    /// Components to swap in at checkpoint barriers: by checkpoint id, the operator's uid and
    /// its new component (compiled before the barrier is injected).
    swaps: Mutex<std::collections::HashMap<u64, (String, crate::wasm::LoadedComponent)>>,
}

/// One run of the job's tasks, from its start or from a checkpoint.
#[derive(Default)]
struct Attempt {
    token: CancelToken,
    gates: Vec<Arc<Gate>>,
    /// What closes its channels to other processes.
    closers: Vec<Box<dyn Fn() + Send + Sync>>,
    /// Each task's queries of its state, by (chain, subtask).
    queries: std::collections::HashMap<(usize, u32), Arc<super::query::QueryInbox>>,
}

impl JobControl {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    fn attempt(&self) -> std::sync::MutexGuard<'_, Attempt> {
        self.attempt.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// At the barrier of checkpoint `checkpoint`, operator `operator`'s subtasks take their
    /// snapshot, then go on with `component`.
    pub fn swap_at(
        &self,
        checkpoint: u64,
        operator: String,
        component: crate::wasm::LoadedComponent,
    ) {
        let mut swaps = self.swaps.lock().unwrap_or_else(|e| e.into_inner());
        swaps.insert(checkpoint, (operator, component));
    }

    /// The component operator `operator` swaps to at the barrier of checkpoint `checkpoint`,
    /// if it does.
    pub fn swap_for(
        &self,
        checkpoint: u64,
        operator: &str,
    ) -> Option<crate::wasm::LoadedComponent> {
        let swaps = self.swaps.lock().unwrap_or_else(|e| e.into_inner());
        swaps
            .get(&checkpoint)
            .filter(|(uid, _)| uid == operator)
            .map(|(_, c)| c.clone())
    }

    /// Registers a gate to wake on cancel.
    pub fn register(&self, gate: Arc<Gate>) {
        self.attempt().gates.push(gate);
    }

    /// Registers what closes a channel to another process on cancel.
    pub fn register_closer(&self, close: Box<dyn Fn() + Send + Sync>) {
        let mut attempt = self.attempt();
        if attempt.token.is_cancelled() {
            close();
        }
        attempt.closers.push(close);
    }

    /// Makes task (`chain`, `subtask`) of the current attempt answer queries from `inbox`.
    pub fn register_queries(
        &self,
        chain: usize,
        subtask: u32,
        inbox: Arc<super::query::QueryInbox>,
    ) {
        self.attempt().queries.insert((chain, subtask), inbox);
    }

    /// Passes `query` to its task, which answers through `reply` (at once, if it does not run
    /// here).
    pub fn query(&self, query: crate::net::control::StateQuery, reply: super::query::Reply) {
        let inbox = self
            .attempt()
            .queries
            .get(&(query.chain, query.subtask))
            .cloned();
        match inbox {
            Some(inbox) => inbox.push(query, reply),
            None => reply(crate::net::control::StateAnswer::Failed {
                why: format!(
                    "subtask {} of the chain of `{}` does not run here (yet)",
                    query.subtask, query.operator
                ),
            }),
        }
    }

    /// Keeps the guests' lines in `logs` (for the API) from now on.
    pub fn keep_logs(&self, logs: Arc<crate::wasm::guest_log::RecentLogs>) {
        let _ = self.logs.set(logs);
    }

    /// Where the guests' lines are kept, if they are.
    pub fn logs(&self) -> Option<Arc<crate::wasm::guest_log::RecentLogs>> {
        self.logs.get().cloned()
    }

    /// Ends the sources; the job drains and finishes.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Tears the current attempt down: every waiting task wakes up and quits, every guest call
    /// stops.
    pub fn cancel(&self) {
        let attempt = self.attempt();
        attempt.token.cancel();
        for g in &attempt.gates {
            g.cancel();
        }
        for close in &attempt.closers {
            close();
        }
    }

    /// Cancels the job for good, for a reason its error will give (e.g. the user's Ctrl-C).
    pub fn cancel_because(&self, reason: &str) {
        self.reason.get_or_init(|| reason.to_string());
        self.cancel();
    }

    /// Why the job was cancelled for good, if it was.
    pub fn reason(&self) -> Option<&str> {
        self.reason.get().map(String::as_str)
    }

    /// Starts a new attempt after a failure: a fresh cancellation, unless the job was cancelled
    /// for good meanwhile.
    pub fn begin_attempt(&self) {
        let mut attempt = self.attempt();
        if self.reason.get().is_none() {
            *attempt = Attempt::default();
        }
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Whether the current attempt is being cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.attempt().token.is_cancelled()
    }

    /// The current attempt's cancellation, which guests, sinks and sleeps watch.
    pub fn token(&self) -> CancelToken {
        self.attempt().token.clone()
    }
}

/// The last completed checkpoint, for progress reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointSummary {
    pub id: u64,
    pub duration: Duration,
    /// What it wrote.
    pub bytes: u64,
    /// What a restore from it reads (more than `bytes` when it is incremental).
    pub full_bytes: u64,
}

/// Job-wide counters.
pub struct JobMetrics {
    started: Instant,
    records_in: AtomicU64,
    records_out: AtomicU64,
    first_out: OnceLock<Duration>,
    running: OnceLock<Duration>,
    /// Tasks of the first attempt still being set up (instantiated, their state restored).
    setting_up: AtomicU64,
    ready: OnceLock<Duration>,
    checkpoint: Mutex<Checkpoints>,
    /// The current attempt's tasks in this process.
    tasks: Mutex<Vec<Arc<super::metrics::TaskMetrics>>>,
    restarts: AtomicU64,
}

/// The checkpoints a run completed.
#[derive(Default)]
struct Checkpoints {
    last: Option<CheckpointSummary>,
    /// Durations of the first [`MAX_DURATIONS`] completed checkpoints, for the median.
    durations: Vec<Duration>,
    count: u64,
}

/// Durations kept for the median (a day of checkpoints every 10 s).
const MAX_DURATIONS: usize = 8640;

impl JobMetrics {
    /// Counters starting now; `started` is when the user started the job.
    pub fn new(started: Instant) -> Arc<Self> {
        Arc::new(JobMetrics {
            started,
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            first_out: OnceLock::new(),
            running: OnceLock::new(),
            setting_up: AtomicU64::new(u64::MAX),
            ready: OnceLock::new(),
            checkpoint: Mutex::new(Checkpoints::default()),
            tasks: Mutex::default(),
            restarts: AtomicU64::new(0),
        })
    }

    /// The tasks of a new attempt (the last attempt's go).
    pub fn set_tasks(&self, tasks: Vec<Arc<super::metrics::TaskMetrics>>) {
        *self.tasks.lock().unwrap_or_else(|e| e.into_inner()) = tasks;
    }

    /// The current attempt's tasks in this process.
    pub fn tasks(&self) -> Vec<Arc<super::metrics::TaskMetrics>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The counters of the current attempt's tasks in this process.
    pub fn task_figures(&self) -> Vec<crate::net::control::TaskFigures> {
        self.tasks().iter().map(|t| t.figures()).collect()
    }

    /// The job restarts.
    pub fn restarted(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Records produced by the sources.
    pub fn add_in(&self, n: u64) {
        self.records_in.fetch_add(n, Ordering::Relaxed);
    }

    /// Records written by the sinks.
    pub fn add_out(&self, n: u64) {
        if n > 0 {
            self.first_out.get_or_init(|| self.started.elapsed());
        }
        self.records_out.fetch_add(n, Ordering::Relaxed);
    }

    pub fn records_in(&self) -> u64 {
        self.records_in.load(Ordering::Relaxed)
    }

    pub fn records_out(&self) -> u64 {
        self.records_out.load(Ordering::Relaxed)
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Marks every task as started.
    pub fn mark_running(&self) {
        self.running.get_or_init(|| self.started.elapsed());
    }

    /// How long after the start every task was running.
    pub fn running_after(&self) -> Option<Duration> {
        self.running.get().copied()
    }

    /// The first attempt starts `tasks` tasks.
    pub fn expect_tasks(&self, tasks: usize) {
        let _ = self.setting_up.compare_exchange(
            u64::MAX,
            tasks as u64,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }

    /// A task is set up: its operators instantiated and their state restored.
    pub fn task_ready(&self) {
        if self.setting_up.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.ready.get_or_init(|| self.started.elapsed());
        }
    }

    /// How long after the start every task of the first attempt was set up (with a restore:
    /// how long the restore took).
    pub fn ready_after(&self) -> Option<Duration> {
        self.ready.get().copied()
    }

    /// Notes a completed checkpoint.
    pub fn checkpoint_completed(&self, summary: CheckpointSummary) {
        let mut c = self.checkpoint.lock().unwrap_or_else(|e| e.into_inner());
        c.last = Some(summary);
        c.count += 1;
        if c.durations.len() < MAX_DURATIONS {
            c.durations.push(summary.duration);
        }
    }

    /// The last completed checkpoint, if any.
    pub fn last_checkpoint(&self) -> Option<CheckpointSummary> {
        self.checkpoint
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last
    }

    /// How many checkpoints completed, and their median duration.
    pub fn checkpoints(&self) -> (u64, Option<Duration>) {
        let c = self.checkpoint.lock().unwrap_or_else(|e| e.into_inner());
        let mut d = c.durations.clone();
        d.sort_unstable();
        (c.count, d.get(d.len() / 2).copied())
    }

    /// How long after the start the first record reached a sink.
    pub fn first_output_after(&self) -> Option<Duration> {
        self.first_out.get().copied()
    }

    /// When the first record was written by a sink, in ms since the Unix epoch.
    pub fn first_output_unix_ms(&self) -> Option<u64> {
        let first = self.first_out.get()?;
        let ago = self.started.elapsed().saturating_sub(*first);
        let at = std::time::SystemTime::now().checked_sub(ago)?;
        Some(at.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64)
    }
}
