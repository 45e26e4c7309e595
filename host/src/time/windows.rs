//! The event-time window operator's rules, as Flink's `WindowOperator` with its default
//! event-time trigger, without I/O and without the windows' contents: fed records (a key and a
//! timestamp) and watermarks, it says which window of which key a record goes into, which
//! windows merge (sessions), which fire and which are dropped. The caller keeps the contents
//! (in keyed state) and runs the window function.
//!
//! The rules users rely on:
//! - a window fires when the watermark reaches its last millisecond (`end - 1`);
//! - it is dropped once `end - 1 + allowed_lateness <= watermark`;
//! - a record accepted after its window fired fires it again at once;
//! - a record goes to the late output only when every window it belongs to was dropped already
//!   (and it is itself beyond the lateness);
//! - session windows merge when they overlap or touch, and a late record may bridge two
//!   sessions that fired into one that fires again.

use super::assigner::{Assigner, Window, merge};
use std::collections::{BTreeMap, BTreeSet};

/// What the caller does, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action<K> {
    /// Merge the contents of `from` (windows of `key`) into `into`.
    Merge {
        key: K,
        into: Window,
        from: Vec<Window>,
    },
    /// Add the record to `window` of `key`.
    Add { key: K, window: Window },
    /// Emit `window`'s result for `key` (its timestamp: `window.end - 1`).
    Fire { key: K, window: Window },
    /// Drop `window` of `key`: its contents go.
    Purge { key: K, window: Window },
    /// The record is late for every window it belongs to: to the late output.
    Late { key: K },
}

/// A timer: when, what, of which key and window. Fires sort before purges at the same time.
type Timer<K> = (i64, Kind, K, Window);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Fire,
    Purge,
}

/// The windows of all keys of one operator subtask.
#[derive(Debug)]
pub struct WindowOperator<K: Ord + Clone> {
    assigner: Assigner,
    lateness: i64,
    watermark: i64,
    /// Each key's windows not yet dropped.
    windows: BTreeMap<K, BTreeSet<Window>>,
    timers: BTreeSet<Timer<K>>,
}

impl<K: Ord + Clone> WindowOperator<K> {
    /// Windows of `assigner`, kept `allowed_lateness` ms past their end.
    pub fn new(assigner: Assigner, allowed_lateness: i64) -> Self {
        WindowOperator {
            assigner,
            lateness: allowed_lateness.max(0),
            watermark: super::watermark::MIN,
            windows: BTreeMap::new(),
            timers: BTreeSet::new(),
        }
    }

    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// When `window` is dropped.
    fn cleanup_time(&self, window: &Window) -> i64 {
        window.max_timestamp().saturating_add(self.lateness)
    }

    fn is_late(&self, window: &Window) -> bool {
        self.cleanup_time(window) <= self.watermark
    }

    /// A record of `key` with timestamp `ts`.
    pub fn on_record(&mut self, key: K, ts: i64) -> Vec<Action<K>> {
        let mut out = Vec::new();
        let mut skipped = true;
        for window in self.assigner.assign(ts) {
            let window = if self.assigner.is_merging() {
                self.merge_into(&key, window, &mut out)
            } else {
                window
            };
            if self.is_late(&window) {
                if self.assigner.is_merging() {
                    self.retire(&key, &window);
                }
                continue;
            }
            skipped = false;
            self.windows.entry(key.clone()).or_default().insert(window);
            out.push(Action::Add {
                key: key.clone(),
                window,
            });
            if window.max_timestamp() <= self.watermark {
                // Accepted after it fired: it fires again at once, with this record.
                out.push(Action::Fire {
                    key: key.clone(),
                    window,
                });
            } else {
                self.timers
                    .insert((window.max_timestamp(), Kind::Fire, key.clone(), window));
            }
            self.timers
                .insert((self.cleanup_time(&window), Kind::Purge, key.clone(), window));
        }
        if skipped && ts.saturating_add(self.lateness) <= self.watermark {
            out.push(Action::Late { key });
        }
        out
    }

    /// Merges `window` (a new session of `key`) with the key's windows it overlaps or touches;
    /// the window the record goes into.
    fn merge_into(&mut self, key: &K, window: Window, out: &mut Vec<Action<K>>) -> Window {
        let existing: Vec<Window> = self
            .windows
            .get(key)
            .map(|w| w.iter().copied().collect())
            .unwrap_or_default();
        let mut all = existing.clone();
        all.push(window);
        for (into, parts) in merge(&all) {
            if !parts.contains(&window) {
                continue;
            }
            let from: Vec<Window> = parts
                .into_iter()
                .filter(|w| existing.contains(w) && *w != into)
                .collect();
            if !from.is_empty() {
                for w in &from {
                    self.retire(key, w);
                }
                out.push(Action::Merge {
                    key: key.clone(),
                    into,
                    from,
                });
            }
            return into;
        }
        window
    }

    /// Forgets `window` of `key` and its timers (merged into another, or late).
    fn retire(&mut self, key: &K, window: &Window) {
        if let Some(ws) = self.windows.get_mut(key) {
            ws.remove(window);
            if ws.is_empty() {
                self.windows.remove(key);
            }
        }
        self.timers
            .remove(&(window.max_timestamp(), Kind::Fire, key.clone(), *window));
        self.timers
            .remove(&(self.cleanup_time(window), Kind::Purge, key.clone(), *window));
    }

    /// The watermark advanced to `watermark` (one that does not advance changes nothing):
    /// windows fire and are dropped, in time order.
    pub fn on_watermark(&mut self, watermark: i64) -> Vec<Action<K>> {
        if watermark <= self.watermark {
            return Vec::new();
        }
        self.watermark = watermark;
        let mut out = Vec::new();
        while let Some(first) = self.timers.first() {
            if first.0 > watermark {
                break;
            }
            let Some((_, kind, key, window)) = self.timers.pop_first() else {
                break;
            };
            match kind {
                Kind::Fire => out.push(Action::Fire { key, window }),
                Kind::Purge => {
                    if let Some(ws) = self.windows.get_mut(&key) {
                        ws.remove(&window);
                        if ws.is_empty() {
                            self.windows.remove(&key);
                        }
                    }
                    out.push(Action::Purge { key, window });
                }
            }
        }
        out
    }

    /// Takes back window `window` of `key` from a checkpoint, with its timers: the one that
    /// fires it unless it `fired` already, and the one that drops it.
    pub fn restore(&mut self, key: K, window: Window, fired: bool) {
        if !fired {
            self.timers
                .insert((window.max_timestamp(), Kind::Fire, key.clone(), window));
        }
        self.timers
            .insert((self.cleanup_time(&window), Kind::Purge, key.clone(), window));
        self.windows.entry(key).or_default().insert(window);
    }

    /// How many windows are kept (not yet dropped), over all keys.
    pub fn windows(&self) -> usize {
        self.windows.values().map(BTreeSet::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(start: i64, end: i64) -> Window {
        Window { start, end }
    }

    fn add(window: Window) -> Action<&'static str> {
        Action::Add { key: "k", window }
    }

    fn fire(window: Window) -> Action<&'static str> {
        Action::Fire { key: "k", window }
    }

    fn purge(window: Window) -> Action<&'static str> {
        Action::Purge { key: "k", window }
    }

    fn tumbling(size: i64) -> Assigner {
        Assigner::Tumbling { size, offset: 0 }
    }

    #[test]
    fn a_restored_window_fires_unless_it_had_and_is_dropped_in_time() {
        let mut op = WindowOperator::new(tumbling(10), 5);
        op.restore("k", w(0, 10), true);
        op.restore("k", w(10, 20), false);
        assert_eq!(op.on_watermark(19), [purge(w(0, 10)), fire(w(10, 20))]);
        assert_eq!(op.on_record("k", 12), [add(w(10, 20)), fire(w(10, 20))]);
        assert_eq!(op.on_watermark(24), [purge(w(10, 20))]);
        assert_eq!(op.windows(), 0);
    }

    #[test]
    fn a_window_fires_when_the_watermark_reaches_its_last_millisecond() {
        let mut op = WindowOperator::new(tumbling(10), 0);
        assert_eq!(op.on_record("k", 5), [add(w(0, 10))]);
        assert_eq!(op.on_watermark(8), [], "one before its last millisecond");
        assert_eq!(op.on_watermark(9), [fire(w(0, 10)), purge(w(0, 10))]);
        assert_eq!(op.windows(), 0);
        // Beyond the (zero) lateness: to the late output.
        assert_eq!(op.on_record("k", 3), [Action::Late { key: "k" }]);
        // A watermark that does not advance changes nothing.
        assert_eq!(op.on_watermark(9), []);
        // The next window is untouched.
        assert_eq!(op.on_record("k", 10), [add(w(10, 20))]);
    }

    #[test]
    fn within_the_lateness_a_late_record_fires_its_window_again_and_at_cleanup_it_is_dropped() {
        let mut op = WindowOperator::new(tumbling(10), 5);
        op.on_record("k", 5);
        assert_eq!(op.on_watermark(9), [fire(w(0, 10))]);
        // Late but within the lateness: in, and fired again at once.
        assert_eq!(op.on_record("k", 7), [add(w(0, 10)), fire(w(0, 10))]);
        assert_eq!(op.on_watermark(13), [], "one before its cleanup time");
        assert_eq!(op.on_watermark(14), [purge(w(0, 10))], "exactly on cleanup");
        assert_eq!(op.on_record("k", 8), [Action::Late { key: "k" }]);
    }

    #[test]
    fn a_record_is_late_only_when_every_window_it_belongs_to_was_dropped() {
        let sliding = Assigner::Sliding {
            size: 10,
            slide: 5,
            offset: 0,
        };
        let mut op = WindowOperator::new(sliding, 0);
        op.on_record("k", 1);
        let fired = op.on_watermark(9);
        assert!(
            fired.contains(&fire(w(0, 10))) && fired.contains(&fire(w(-5, 5))),
            "{fired:?}"
        );
        // Timestamp 7 belongs to [0,10) (dropped) and [5,15) (open): not late.
        assert_eq!(op.on_record("k", 7), [add(w(5, 15))]);
        assert_eq!(op.on_watermark(14), [fire(w(5, 15)), purge(w(5, 15))]);
    }

    #[test]
    fn sessions_merge_and_a_late_record_bridges_two_fired_sessions_into_one_that_fires_again() {
        let mut op = WindowOperator::new(Assigner::Session { gap: 10 }, 100);
        assert_eq!(op.on_record("k", 0), [add(w(0, 10))]);
        assert_eq!(
            op.on_record("k", 5),
            [
                Action::Merge {
                    key: "k",
                    into: w(0, 15),
                    from: vec![w(0, 10)]
                },
                add(w(0, 15))
            ]
        );
        assert_eq!(op.on_watermark(14), [fire(w(0, 15))]);
        assert_eq!(op.on_record("k", 20), [add(w(20, 30))]);
        assert_eq!(op.on_watermark(35), [fire(w(20, 30))]);
        // Timestamp 12 makes [12,22): it touches both fired sessions.
        assert_eq!(
            op.on_record("k", 12),
            [
                Action::Merge {
                    key: "k",
                    into: w(0, 30),
                    from: vec![w(0, 15), w(20, 30)]
                },
                add(w(0, 30)),
                fire(w(0, 30))
            ]
        );
        assert_eq!(op.windows(), 1);
        assert_eq!(op.on_watermark(128), [], "cleanup of [0,30) is at 129");
        assert_eq!(op.on_watermark(129), [purge(w(0, 30))]);
        assert_eq!(op.windows(), 0);
    }

    #[test]
    fn keys_keep_their_own_windows_and_fire_in_time_order() {
        let mut op = WindowOperator::new(tumbling(10), 0);
        op.on_record("b", 15);
        op.on_record("a", 3);
        op.on_record("a", 12);
        let actions = op.on_watermark(100);
        let fired: Vec<(&str, Window)> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Fire { key, window } => Some((*key, *window)),
                _ => None,
            })
            .collect();
        assert_eq!(fired, [("a", w(0, 10)), ("a", w(10, 20)), ("b", w(10, 20))]);
    }
}
