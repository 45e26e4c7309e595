//! Timers of an operator's keys, as Flink's `TimerService`: the `weir:operator/timers` import
//! registers and deletes them, the task fires them (event-time ones as its watermark passes
//! them, processing-time ones as its clock does) through the component's `on-timer` export.
//!
//! Timers are keyed state: each is an entry of the map state [`TIMERS_STATE`] under its key, so
//! it is checkpointed, restored and moved by key group on rescale with the key's other state.
//! The queues here order them by time; a restored instance rebuilds them from the state.

use super::bindings::weir::operator::timers::{self, TimeDomain};
use super::host::{HostState, StateResult, answer, invalid};
use crate::state::StateAccessError;
use crate::time::timers::TimerQueue;

/// The map state where the host keeps an operator's timers: map key = domain and time.
pub const TIMERS_STATE: &str = "weir:timers";
/// State names that start so are the host's; guests cannot use them.
pub const RESERVED_PREFIX: &str = "weir:";

/// The watermark, the clock and the timers one operator instance sees.
#[derive(Debug)]
pub struct TimeService {
    pub watermark: i64,
    event: TimerQueue<Vec<u8>>,
    processing: TimerQueue<Vec<u8>>,
    /// The component exports `on-timer`, so it may register timers.
    pub on_timer: bool,
}

impl Default for TimeService {
    fn default() -> Self {
        TimeService {
            watermark: crate::time::watermark::MIN,
            event: TimerQueue::default(),
            processing: TimerQueue::default(),
            on_timer: false,
        }
    }
}

fn domain_byte(d: TimeDomain) -> u8 {
    match d {
        TimeDomain::Event => 0,
        TimeDomain::Processing => 1,
    }
}

/// A timer as a map key: its domain, then its time big endian with the sign bit flipped (so
/// that a key's timers sort by time).
fn timer_key(domain: TimeDomain, time: i64) -> [u8; 9] {
    let mut k = [0; 9];
    k[0] = domain_byte(domain);
    k[1..].copy_from_slice(&((time as u64) ^ (1 << 63)).to_be_bytes());
    k
}

fn timer_of(key: &[u8]) -> Option<(TimeDomain, i64)> {
    let k: &[u8; 9] = key.try_into().ok()?;
    let domain = match k[0] {
        0 => TimeDomain::Event,
        1 => TimeDomain::Processing,
        _ => return None,
    };
    let time = (u64::from_be_bytes(k[1..].try_into().ok()?) ^ (1 << 63)) as i64;
    Some((domain, time))
}

/// Milliseconds since the Unix epoch: processing time.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl TimeService {
    fn queue(&mut self, domain: TimeDomain) -> &mut TimerQueue<Vec<u8>> {
        match domain {
            TimeDomain::Event => &mut self.event,
            TimeDomain::Processing => &mut self.processing,
        }
    }

    /// When the next processing-time timer is due (ms since the epoch).
    pub fn next_processing(&self) -> Option<i64> {
        self.processing.next()
    }

    /// Whether an event-time timer is due at watermark `wm`.
    pub fn event_due(&self, wm: i64) -> bool {
        self.event.next().is_some_and(|t| t <= wm)
    }
}

impl HostState {
    fn set_timer(
        &mut self,
        domain: TimeDomain,
        key: Vec<u8>,
        time: i64,
        register: bool,
    ) -> StateResult<()> {
        if register && !self.time.on_timer {
            return invalid(
                "the operator registered a timer but exports no `on-timer` (weir:operator/timer-handler, the timed-operator world)",
            );
        }
        let mk = timer_key(domain, time);
        let r = if register {
            self.state
                .map_put(TIMERS_STATE, key.clone(), mk.to_vec(), Vec::new())
        } else {
            self.state.map_remove(TIMERS_STATE, &key, &mk)
        };
        if let Err(e) = answer(r)? {
            return Ok(Err(e));
        }
        let queue = self.time.queue(domain);
        if register {
            queue.register(key, time);
        } else {
            queue.delete(&key, time);
        }
        Ok(Ok(()))
    }

    /// Takes the timers of `domain` due at `now` out of the queue and the state and appends
    /// them to `batch` as `on-timer` takes them (per timer: the domain as a byte, the time as
    /// i64 LE, the key as a u32 LE length and its bytes); how many.
    pub(super) fn take_due(
        &mut self,
        domain: TimeDomain,
        now: i64,
        batch: &mut Vec<u8>,
    ) -> Result<usize, StateAccessError> {
        let due = self.time.queue(domain).due(now);
        for (time, key) in &due {
            self.state
                .map_remove(TIMERS_STATE, key, &timer_key(domain, *time))?;
            batch.push(domain_byte(domain));
            batch.extend_from_slice(&time.to_le_bytes());
            weir_batch::lengths::push(batch, Some(key));
        }
        Ok(due.len())
    }

    /// After a restore: the timers the keyed state holds, back in their queues.
    pub(super) fn restore_timers(&mut self) -> Result<(), StateAccessError> {
        for (key, mk, _) in self.state.all_map_entries(TIMERS_STATE)? {
            let (domain, time) = timer_of(&mk).ok_or_else(|| {
                StateAccessError::Storage("the checkpoint holds a timer that cannot be read".into())
            })?;
            self.time.queue(domain).register(key, time);
        }
        Ok(())
    }
}

impl timers::Host for HostState {
    fn current_watermark(&mut self) -> wasmtime::Result<i64> {
        Ok(self.time.watermark)
    }

    fn current_processing_time(&mut self) -> wasmtime::Result<i64> {
        Ok(now_ms())
    }

    fn register_timer(&mut self, domain: TimeDomain, key: Vec<u8>, time: i64) -> StateResult<()> {
        self.set_timer(domain, key, time, true)
    }

    fn delete_timer(&mut self, domain: TimeDomain, key: Vec<u8>, time: i64) -> StateResult<()> {
        self.set_timer(domain, key, time, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_keys_sort_by_domain_then_time_and_read_back() {
        let keys = [
            timer_key(TimeDomain::Event, -5),
            timer_key(TimeDomain::Event, 0),
            timer_key(TimeDomain::Event, i64::MAX),
            timer_key(TimeDomain::Processing, i64::MIN),
        ];
        assert!(keys.windows(2).all(|k| k[0] < k[1]));
        assert_eq!(timer_of(&keys[0]), Some((TimeDomain::Event, -5)));
        assert_eq!(timer_of(&keys[3]), Some((TimeDomain::Processing, i64::MIN)));
        assert_eq!(timer_of(&[2; 9]), None);
        assert_eq!(timer_of(&[0; 3]), None);
    }
}
