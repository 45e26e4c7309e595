//! Timers of a subtask's keys, as Flink's `InternalTimerService`: event-time timers fire as
//! the watermark passes them, processing-time timers as the clock does. A key has at most one
//! timer per time (registering it again changes nothing), and timers fire in time order (then
//! by key). Timers are keyed state: the caller stores them by key group in checkpoints, so they
//! move with their keys on rescale.

use std::collections::BTreeSet;

/// One kind of timers (event time, or processing time) of a subtask.
#[derive(Debug)]
pub struct TimerQueue<K: Ord + Clone> {
    timers: BTreeSet<(i64, K)>,
}

impl<K: Ord + Clone> Default for TimerQueue<K> {
    fn default() -> Self {
        TimerQueue {
            timers: BTreeSet::new(),
        }
    }
}

impl<K: Ord + Clone> TimerQueue<K> {
    /// A timer of `key` at `time`; `false` if it was already there.
    pub fn register(&mut self, key: K, time: i64) -> bool {
        self.timers.insert((time, key))
    }

    /// Removes the timer of `key` at `time`; whether there was one.
    pub fn delete(&mut self, key: &K, time: i64) -> bool {
        self.timers.remove(&(time, key.clone()))
    }

    /// The timers due once time reaches `now` (a watermark, or the clock), taken out, in order.
    pub fn due(&mut self, now: i64) -> Vec<(i64, K)> {
        let mut out = Vec::new();
        while self.timers.first().is_some_and(|(t, _)| *t <= now) {
            if let Some(t) = self.timers.pop_first() {
                out.push(t);
            }
        }
        out
    }

    /// When the next timer is due, if any.
    pub fn next(&self) -> Option<i64> {
        self.timers.first().map(|(t, _)| *t)
    }

    pub fn len(&self) -> usize {
        self.timers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.timers.is_empty()
    }

    /// Every timer, in order (for a snapshot).
    pub fn iter(&self) -> impl Iterator<Item = &(i64, K)> {
        self.timers.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_once_in_time_order_then_by_key() {
        let mut q = TimerQueue::default();
        assert!(q.register("b", 10));
        assert!(q.register("a", 10));
        assert!(!q.register("a", 10), "once per key and time");
        assert!(q.register("a", 5));
        assert!(q.register("c", 20));
        assert!(q.delete(&"c", 20));
        assert!(!q.delete(&"c", 20));
        assert_eq!(q.next(), Some(5));
        assert_eq!(q.due(4), []);
        assert_eq!(q.due(10), [(5, "a"), (10, "a"), (10, "b")]);
        assert!(q.is_empty());
        q.register("d", i64::MAX);
        assert_eq!(q.due(i64::MAX - 1), []);
        assert_eq!(q.len(), 1);
        assert_eq!(q.iter().count(), 1);
    }
}
