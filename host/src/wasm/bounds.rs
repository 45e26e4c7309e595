//! The bounds of one guest call in time: its deadline (`limits.call_timeout_ms`) and the job's
//! cancellation. Guest code is stopped through the epoch (a callback checks both a few times a
//! tick apart); a guest blocked inside the host, in the only WASI calls that can block (`poll`
//! and `pollable.block`, which is how `sleep` and every wait reach the host), is woken by the
//! same checks, since epoch interruption never fires inside host code.

use crate::cancel::CancelToken;
use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, Instant};
use wasmtime::component::{HasData, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::sync::io::poll;
use wasmtime_wasi_io::bindings::wasi::io::poll as async_poll;
use wasmtime_wasi_io::poll::DynPollable;

/// How often a blocked guest looks at its deadline and the job's cancellation.
const BLOCKED_CHECK: Duration = Duration::from_millis(10);

/// Why a guest call was stopped from outside the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Interrupted {
    /// The call ran past its deadline; `blocked` when it was waiting in a WASI call.
    #[error("the call ran past its deadline")]
    Deadline { blocked: bool },
    /// The job is being cancelled.
    #[error("the job was cancelled")]
    Cancelled,
}

/// The current call's deadline and the job's cancellation, as a store holds them.
pub struct CallBounds {
    pub deadline: Instant,
    pub cancel: CancelToken,
}

impl CallBounds {
    /// Starts a call that may run for `timeout`.
    pub fn start(&mut self, timeout: Duration) {
        let now = Instant::now();
        // Timeouts are bounded by the manifest; a far deadline is as good as none.
        self.deadline = now
            .checked_add(timeout)
            .unwrap_or(now + Duration::from_secs(86_400 * 365));
    }

    /// Whether the call may go on (at `now`; `blocked` says where it is).
    pub fn check(&self, now: Instant, blocked: bool) -> Result<(), Interrupted> {
        if self.cancel.is_cancelled() {
            Err(Interrupted::Cancelled)
        } else if now >= self.deadline {
            Err(Interrupted::Deadline { blocked })
        } else {
            Ok(())
        }
    }

    /// Runs `wait` (a blocking WASI operation) until it completes, the deadline passes or the
    /// job is cancelled.
    fn wait<R>(&self, wait: impl Future<Output = wasmtime::Result<R>>) -> wasmtime::Result<R> {
        let watchdog = async {
            loop {
                let now = Instant::now();
                if let Err(why) = self.check(now, true) {
                    return why;
                }
                tokio::time::sleep(BLOCKED_CHECK.min(self.deadline - now)).await;
            }
        };
        wasmtime_wasi::runtime::in_tokio(async {
            let mut wait = pin!(wait);
            let mut watchdog = pin!(watchdog);
            std::future::poll_fn(|cx| {
                if let Poll::Ready(r) = wait.as_mut().poll(cx) {
                    return Poll::Ready(r);
                }
                watchdog
                    .as_mut()
                    .poll(cx)
                    .map(|why| Err(wasmtime::Error::new(why)))
            })
            .await
        })
    }
}

/// `wasi:io/poll` for a guest: WASI's own implementation, waited on within the call's bounds.
pub struct BoundedPoll<'a> {
    pub table: &'a mut ResourceTable,
    pub bounds: &'a CallBounds,
}

/// Links [`BoundedPoll`] in the place of WASI's `wasi:io/poll`.
pub struct BoundedPollData;

impl HasData for BoundedPollData {
    type Data<'a> = BoundedPoll<'a>;
}

impl poll::Host for BoundedPoll<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        let table = &mut *self.table;
        self.bounds.wait(async_poll::Host::poll(table, pollables))
    }
}

impl poll::HostPollable for BoundedPoll<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        poll::HostPollable::ready(&mut *self.table, pollable)
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        let table = &mut *self.table;
        self.bounds
            .wait(async_poll::HostPollable::block(table, pollable))
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        poll::HostPollable::drop(&mut *self.table, pollable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(timeout: Duration) -> CallBounds {
        let mut b = CallBounds {
            deadline: Instant::now(),
            cancel: CancelToken::default(),
        };
        b.start(timeout);
        b
    }

    #[test]
    fn checks_cancellation_before_the_deadline() {
        let b = bounds(Duration::from_secs(60));
        let now = Instant::now();
        assert_eq!(b.check(now, false), Ok(()));
        assert_eq!(
            b.check(now + Duration::from_secs(61), true),
            Err(Interrupted::Deadline { blocked: true })
        );
        b.cancel.cancel();
        assert_eq!(b.check(now, false), Err(Interrupted::Cancelled));
    }

    #[test]
    fn a_blocking_wait_ends_at_the_deadline_or_on_cancel() {
        let forever = std::future::pending::<wasmtime::Result<()>>;
        let b = bounds(Duration::from_millis(50));
        let started = Instant::now();
        let e = b.wait(forever()).unwrap_err();
        assert_eq!(
            e.downcast_ref::<Interrupted>(),
            Some(&Interrupted::Deadline { blocked: true })
        );
        assert!(started.elapsed() < Duration::from_secs(5));

        let b = bounds(Duration::from_secs(600));
        let cancel = b.cancel.clone();
        let canceller = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            cancel.cancel();
        });
        let e = b.wait(forever()).unwrap_err();
        assert_eq!(
            e.downcast_ref::<Interrupted>(),
            Some(&Interrupted::Cancelled)
        );
        canceller.join().unwrap();

        let b = bounds(Duration::from_secs(600));
        assert_eq!(b.wait(async { Ok(7) }).unwrap(), 7);
    }
}
