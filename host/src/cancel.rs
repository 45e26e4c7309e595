//! Cancellation of a job, as every blocking place sees it: task threads waiting on a gate, a
//! guest running or blocked inside a WASI call, a sink pausing between records. One token per
//! job; once cancelled it stays cancelled.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A job's cancellation flag, cheap to clone and to check.
#[derive(Clone, Default)]
pub struct CancelToken {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    cancelled: AtomicBool,
    /// When it was cancelled (for how long tasks take to stop).
    at: OnceLock<Instant>,
    /// Wakes [`CancelToken::sleep`] at once.
    lock: Mutex<()>,
    wake: Condvar,
}

impl std::fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelToken")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

/// The job was cancelled while waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

impl CancelToken {
    /// Cancels: every check from now on says so, and sleepers wake.
    pub fn cancel(&self) {
        self.inner.at.get_or_init(Instant::now);
        self.inner.cancelled.store(true, Ordering::SeqCst);
        let _guard = self.inner.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.inner.wake.notify_all();
    }

    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::Relaxed)
    }

    /// When the token was cancelled, if it was.
    pub fn cancelled_at(&self) -> Option<Instant> {
        self.inner.at.get().copied()
    }

    /// Sleeps for `d`, or until cancelled.
    pub fn sleep(&self, d: Duration) -> Result<(), Cancelled> {
        let until = Instant::now() + d.min(Duration::from_secs(86_400));
        let mut guard = self.inner.lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if self.is_cancelled() {
                return Err(Cancelled);
            }
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            guard = self
                .inner
                .wake
                .wait_timeout(guard, until - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_wakes_a_sleeper_at_once() {
        let token = CancelToken::default();
        assert_eq!(token.sleep(Duration::from_millis(1)), Ok(()));
        let t = token.clone();
        let started = Instant::now();
        let sleeper = std::thread::spawn(move || t.sleep(Duration::from_secs(600)));
        std::thread::sleep(Duration::from_millis(20));
        token.cancel();
        assert_eq!(sleeper.join().unwrap(), Err(Cancelled));
        assert!(started.elapsed() < Duration::from_secs(60));
        assert!(token.is_cancelled() && token.cancelled_at().is_some());
        assert_eq!(token.sleep(Duration::from_secs(600)), Err(Cancelled));
    }
}
