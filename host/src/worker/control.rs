//! What the tasks of a running job share: cancellation, graceful stop, the first failure, and the
//! counters progress reports read.

use super::channel::Gate;
use crate::cancel::CancelToken;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Stops a job: `stop` lets sources end as if bounded (everything drains, sinks flush); `cancel`
/// tears everything down at once: waiting tasks wake, running and blocked guests are interrupted.
#[derive(Default)]
pub struct JobControl {
    stopping: AtomicBool,
    token: CancelToken,
    /// Why the job was cancelled, when not because a task failed.
    reason: OnceLock<String>,
    gates: Mutex<Vec<Arc<Gate>>>,
}

impl JobControl {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Registers a gate to wake on cancel.
    pub fn register(&self, gate: Arc<Gate>) {
        self.gates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(gate);
    }

    /// Ends the sources; the job drains and finishes.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Tears the job down: every waiting task wakes up and quits, every guest call stops.
    pub fn cancel(&self) {
        self.token.cancel();
        for g in self.gates.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            g.cancel();
        }
    }

    /// Cancels for a reason the job's error will give (e.g. the user's Ctrl-C).
    pub fn cancel_because(&self, reason: &str) {
        self.reason.get_or_init(|| reason.to_string());
        self.cancel();
    }

    /// Why the job was cancelled, if it was for a reason of its own.
    pub fn reason(&self) -> Option<&str> {
        self.reason.get().map(String::as_str)
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// The token that guests, sinks and sleeps watch.
    pub fn token(&self) -> &CancelToken {
        &self.token
    }
}

/// Job-wide counters.
pub struct JobMetrics {
    started: Instant,
    records_in: AtomicU64,
    records_out: AtomicU64,
    first_out: OnceLock<Duration>,
    running: OnceLock<Duration>,
}

impl JobMetrics {
    /// Counters starting now; `started` is when the user started the job.
    pub fn new(started: Instant) -> Arc<Self> {
        Arc::new(JobMetrics {
            started,
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            first_out: OnceLock::new(),
            running: OnceLock::new(),
        })
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

    /// How long after the start the first record reached a sink.
    pub fn first_output_after(&self) -> Option<Duration> {
        self.first_out.get().copied()
    }
}
