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
use smallvec::SmallVec;
use std::borrow::Borrow;
use std::collections::BTreeSet;
use std::hash::Hash;

/// What a record makes the caller do, in order; all of it concerns the record's key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordAction {
    /// Merge the contents of windows `from` into `into`.
    Merge { into: Window, from: Vec<Window> },
    /// Add the record to this window.
    Add(Window),
    /// Emit this window's result (its timestamp: `window.end - 1`).
    Fire(Window),
    /// The record is late for every window it belongs to: to the late output.
    Late,
}

/// What a watermark makes the caller do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action<K> {
    /// Emit `window`'s result for `key` (its timestamp: `window.end - 1`).
    Fire { key: K, window: Window },
    /// Drop `window` of `key`: its contents go.
    Purge { key: K, window: Window },
}

/// A timer: when, what, of which key and window. Fires sort before purges at the same time.
type Timer<K> = (i64, Kind, K, Window);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Fire,
    /// A continuous trigger's firing within the window.
    Continuous,
    Purge,
}

/// A key's windows not yet dropped (most keys have one or two).
type KeyWindows = SmallVec<[Window; 2]>;

/// The windows of all keys of one operator subtask.
#[derive(Debug)]
pub struct WindowOperator<K: Ord + Clone + Hash + Eq> {
    assigner: Assigner,
    lateness: i64,
    /// Windows fire when time passes their end (the default trigger); `false` for a trigger
    /// that fires otherwise (counts): time then only drops windows.
    fire_on_time: bool,
    /// A continuous trigger's interval: windows also fire every this many ms of time, from
    /// the first record's (Flink's `ContinuousEventTimeTrigger`).
    continuous: Option<i64>,
    /// The next continuous firing of each window that has one.
    next_fire: hashbrown::HashMap<(K, Window), i64, foldhash::fast::RandomState>,
    watermark: i64,
    windows: hashbrown::HashMap<K, KeyWindows, foldhash::fast::RandomState>,
    timers: BTreeSet<Timer<K>>,
}

impl<K: Ord + Clone + Hash + Eq> WindowOperator<K> {
    /// Windows of `assigner`, kept `allowed_lateness` ms past their end.
    pub fn new(assigner: Assigner, allowed_lateness: i64) -> Self {
        WindowOperator {
            assigner,
            lateness: allowed_lateness.max(0),
            fire_on_time: true,
            continuous: None,
            next_fire: hashbrown::HashMap::default(),
            watermark: super::watermark::MIN,
            windows: hashbrown::HashMap::default(),
            timers: BTreeSet::new(),
        }
    }

    /// Windows that also fire every `interval` ms of time while they are open (a continuous
    /// trigger), besides at their end.
    pub fn firing_every(mut self, interval: i64) -> Self {
        self.continuous = Some(interval.max(1));
        self
    }

    /// Windows that time only drops, for a trigger that fires them otherwise.
    pub fn without_time_firing(mut self) -> Self {
        self.fire_on_time = false;
        self
    }

    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// When the next timer is due, if any.
    pub fn next_timer(&self) -> Option<i64> {
        self.timers.first().map(|t| t.0)
    }

    /// When `window` is dropped.
    fn cleanup_time(&self, window: &Window) -> i64 {
        window.max_timestamp().saturating_add(self.lateness)
    }

    fn is_late(&self, window: &Window) -> bool {
        self.cleanup_time(window) <= self.watermark
    }

    /// A record of `key` with timestamp `ts`: what to do, appended to `out`.
    pub fn on_record<Q>(&mut self, key: &Q, ts: i64, out: &mut Vec<RecordAction>)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let mut skipped = true;
        for window in self.assigner.assign(ts) {
            let window = if self.assigner.is_merging() {
                self.merge_into(key, window, out)
            } else {
                window
            };
            if self.is_late(&window) {
                if self.assigner.is_merging() {
                    self.retire(key, &window);
                }
                continue;
            }
            skipped = false;
            out.push(RecordAction::Add(window));
            if let Some(every) = self.continuous {
                self.continue_firing(key.to_owned(), window, ts, every);
            }
            let known = self.windows.get(key).is_some_and(|ws| ws.contains(&window));
            if self.fire_on_time && window.max_timestamp() <= self.watermark {
                // Accepted after it fired: it fires again at once, with this record.
                out.push(RecordAction::Fire(window));
            }
            if known {
                // Its timers are in place: the one that fires it (unless it fired), the one
                // that drops it.
                continue;
            }
            let key = key.to_owned();
            if self.fire_on_time && window.max_timestamp() > self.watermark {
                self.timers
                    .insert((window.max_timestamp(), Kind::Fire, key.clone(), window));
            }
            self.timers
                .insert((self.cleanup_time(&window), Kind::Purge, key.clone(), window));
            self.windows.entry(key).or_default().push(window);
        }
        if skipped && ts.saturating_add(self.lateness) <= self.watermark {
            out.push(RecordAction::Late);
        }
    }

    /// Merges `window` (a new session of `key`) with the key's windows it overlaps or touches;
    /// the window the record goes into.
    fn merge_into<Q>(&mut self, key: &Q, window: Window, out: &mut Vec<RecordAction>) -> Window
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let existing: Vec<Window> = self
            .windows
            .get(key)
            .map(|w| w.to_vec())
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
                out.push(RecordAction::Merge { into, from });
            }
            return into;
        }
        window
    }

    /// Forgets `window` of `key` and its timers (merged into another, or late).
    fn retire<Q>(&mut self, key: &Q, window: &Window)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.forget(key, window);
        let key = key.to_owned();
        self.timers
            .remove(&(window.max_timestamp(), Kind::Fire, key.clone(), *window));
        self.timers
            .remove(&(self.cleanup_time(window), Kind::Purge, key, *window));
    }

    /// Sets the first continuous firing of `window` of `key`, unless it has one: the first
    /// multiple of `every` after `ts` (Flink's `ContinuousEventTimeTrigger`).
    fn continue_firing(&mut self, key: K, window: Window, ts: i64, every: i64) {
        let slot = (key, window);
        if self.next_fire.contains_key(&slot) {
            return;
        }
        let at = ts
            .saturating_sub(ts.rem_euclid(every))
            .saturating_add(every);
        self.timers
            .insert((at, Kind::Continuous, slot.0.clone(), window));
        self.next_fire.insert(slot, at);
    }

    /// Removes `window` from `key`'s windows, with its continuous firing.
    fn forget<Q>(&mut self, key: &Q, window: &Window)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if self.continuous.is_some()
            && let Some(at) = self.next_fire.remove(&(key.to_owned(), *window))
        {
            self.timers
                .remove(&(at, Kind::Continuous, key.to_owned(), *window));
        }
        if let Some(ws) = self.windows.get_mut(key) {
            ws.retain(|w| w != window);
            if ws.is_empty() {
                self.windows.remove(key);
            }
        }
    }

    /// The watermark advanced to `watermark` (one that does not advance changes nothing):
    /// windows fire and are dropped, in time order.
    pub fn on_watermark(&mut self, watermark: i64) -> Vec<Action<K>> {
        if watermark <= self.watermark {
            return Vec::new();
        }
        self.watermark = watermark;
        let mut out = Vec::new();
        while self.timers.first().is_some_and(|t| t.0 <= watermark) {
            let Some((time, kind, key, window)) = self.timers.pop_first() else {
                break;
            };
            match kind {
                Kind::Fire => out.push(Action::Fire { key, window }),
                Kind::Continuous => {
                    let slot = (key, window);
                    self.next_fire.remove(&slot);
                    // Exactly at the window's end its own firing covers it, and ends the
                    // series (Flink's timers are one at the same time); past the end, within
                    // the lateness, it goes on until the window is dropped.
                    let alive = (self.windows.get(&slot.0)).is_some_and(|ws| ws.contains(&window));
                    if alive && time != window.max_timestamp() {
                        let every = self.continuous.unwrap_or(1);
                        let next = time.saturating_add(every);
                        self.timers
                            .insert((next, Kind::Continuous, slot.0.clone(), window));
                        self.next_fire.insert(slot.clone(), next);
                        out.push(Action::Fire {
                            key: slot.0,
                            window,
                        });
                    }
                }
                Kind::Purge => {
                    self.forget(&key, &window);
                    out.push(Action::Purge { key, window });
                }
            }
        }
        out
    }

    /// Takes back window `window` of `key` from a checkpoint, with its timers: the one that
    /// fires it unless it `fired` already, and the one that drops it.
    pub fn restore(&mut self, key: K, window: Window, fired: bool) {
        if self.fire_on_time && !fired {
            self.timers
                .insert((window.max_timestamp(), Kind::Fire, key.clone(), window));
        }
        self.timers
            .insert((self.cleanup_time(&window), Kind::Purge, key.clone(), window));
        let ws = self.windows.entry(key).or_default();
        if !ws.contains(&window) {
            ws.push(window);
        }
    }

    /// How many windows are kept (not yet dropped), over all keys.
    pub fn windows(&self) -> usize {
        self.windows.values().map(SmallVec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(start: i64, end: i64) -> Window {
        Window { start, end }
    }

    type Op = WindowOperator<String>;

    /// What a record of key `k` at `ts` makes the caller do.
    fn rec(op: &mut Op, key: &str, ts: i64) -> Vec<RecordAction> {
        let mut out = Vec::new();
        op.on_record(key, ts, &mut out);
        out
    }

    fn add(window: Window) -> RecordAction {
        RecordAction::Add(window)
    }

    /// A firing of key "k"'s window, by the watermark.
    fn fire(window: Window) -> Action<String> {
        Action::Fire {
            key: "k".into(),
            window,
        }
    }

    fn purge(window: Window) -> Action<String> {
        Action::Purge {
            key: "k".into(),
            window,
        }
    }

    fn tumbling(size: i64) -> Assigner {
        Assigner::Tumbling { size, offset: 0 }
    }

    #[test]
    fn a_restored_window_fires_unless_it_had_and_is_dropped_in_time() {
        let mut op: Op = WindowOperator::new(tumbling(10), 5);
        op.restore("k".into(), w(0, 10), true);
        op.restore("k".into(), w(10, 20), false);
        assert_eq!(op.on_watermark(19), [purge(w(0, 10)), fire(w(10, 20))]);
        assert_eq!(
            rec(&mut op, "k", 12),
            [add(w(10, 20)), RecordAction::Fire(w(10, 20))]
        );
        assert_eq!(op.on_watermark(24), [purge(w(10, 20))]);
        assert_eq!(op.windows(), 0);
    }

    #[test]
    fn a_continuous_trigger_fires_every_interval_from_the_first_record_and_at_the_end() {
        let mut op: Op = WindowOperator::new(tumbling(10), 0).firing_every(4);
        rec(&mut op, "k", 1);
        // Firings at 4 and 8 (the first multiple of 4 after 1, then every 4), the end at 9.
        assert_eq!(op.on_watermark(5), [fire(w(0, 10))]);
        assert_eq!(
            op.on_watermark(9),
            [fire(w(0, 10)), fire(w(0, 10)), purge(w(0, 10))]
        );
        assert_eq!(op.on_watermark(100), [], "dropped with its firings");
        // A continuous firing exactly on the end is the end's.
        let mut op: Op = WindowOperator::new(tumbling(10), 0).firing_every(3);
        rec(&mut op, "k", 0);
        assert_eq!(
            op.on_watermark(9),
            [
                fire(w(0, 10)),
                fire(w(0, 10)),
                fire(w(0, 10)),
                purge(w(0, 10))
            ]
        );
    }

    #[test]
    fn a_window_fires_when_the_watermark_reaches_its_last_millisecond() {
        let mut op: Op = WindowOperator::new(tumbling(10), 0);
        assert_eq!(rec(&mut op, "k", 5), [add(w(0, 10))]);
        assert_eq!(
            rec(&mut op, "k", 6),
            [add(w(0, 10))],
            "known: no new timers"
        );
        assert_eq!(op.on_watermark(8), [], "one before its last millisecond");
        assert_eq!(op.on_watermark(9), [fire(w(0, 10)), purge(w(0, 10))]);
        assert_eq!(op.windows(), 0);
        // Beyond the (zero) lateness: to the late output.
        assert_eq!(rec(&mut op, "k", 3), [RecordAction::Late]);
        // A watermark that does not advance changes nothing.
        assert_eq!(op.on_watermark(9), []);
        // The next window is untouched.
        assert_eq!(rec(&mut op, "k", 10), [add(w(10, 20))]);
    }

    #[test]
    fn within_the_lateness_a_late_record_fires_its_window_again_and_at_cleanup_it_is_dropped() {
        let mut op: Op = WindowOperator::new(tumbling(10), 5);
        rec(&mut op, "k", 5);
        assert_eq!(op.on_watermark(9), [fire(w(0, 10))]);
        // Late but within the lateness: in, and fired again at once (each time).
        for ts in [7, 2] {
            assert_eq!(
                rec(&mut op, "k", ts),
                [add(w(0, 10)), RecordAction::Fire(w(0, 10))]
            );
        }
        assert_eq!(op.on_watermark(13), [], "one before its cleanup time");
        assert_eq!(op.on_watermark(14), [purge(w(0, 10))], "exactly on cleanup");
        assert_eq!(rec(&mut op, "k", 8), [RecordAction::Late]);
    }

    #[test]
    fn a_record_is_late_only_when_every_window_it_belongs_to_was_dropped() {
        let sliding = Assigner::Sliding {
            size: 10,
            slide: 5,
            offset: 0,
        };
        let mut op: Op = WindowOperator::new(sliding, 0);
        rec(&mut op, "k", 1);
        let fired = op.on_watermark(9);
        assert!(
            fired.contains(&fire(w(0, 10))) && fired.contains(&fire(w(-5, 5))),
            "{fired:?}"
        );
        // Timestamp 7 belongs to [0,10) (dropped) and [5,15) (open): not late.
        assert_eq!(rec(&mut op, "k", 7), [add(w(5, 15))]);
        assert_eq!(op.on_watermark(14), [fire(w(5, 15)), purge(w(5, 15))]);
    }

    #[test]
    fn sessions_merge_and_a_late_record_bridges_two_fired_sessions_into_one_that_fires_again() {
        let mut op: Op = WindowOperator::new(Assigner::Session { gap: 10 }, 100);
        assert_eq!(rec(&mut op, "k", 0), [add(w(0, 10))]);
        assert_eq!(
            rec(&mut op, "k", 5),
            [
                RecordAction::Merge {
                    into: w(0, 15),
                    from: vec![w(0, 10)]
                },
                add(w(0, 15))
            ]
        );
        assert_eq!(op.on_watermark(14), [fire(w(0, 15))]);
        assert_eq!(rec(&mut op, "k", 20), [add(w(20, 30))]);
        assert_eq!(op.on_watermark(35), [fire(w(20, 30))]);
        // Timestamp 12 makes [12,22): it touches both fired sessions.
        assert_eq!(
            rec(&mut op, "k", 12),
            [
                RecordAction::Merge {
                    into: w(0, 30),
                    from: vec![w(0, 15), w(20, 30)]
                },
                add(w(0, 30)),
                RecordAction::Fire(w(0, 30))
            ]
        );
        assert_eq!(op.windows(), 1);
        assert_eq!(op.on_watermark(128), [], "cleanup of [0,30) is at 129");
        assert_eq!(op.on_watermark(129), [purge(w(0, 30))]);
        assert_eq!(op.windows(), 0);
    }

    #[test]
    fn keys_keep_their_own_windows_and_fire_in_time_order() {
        let mut op: Op = WindowOperator::new(tumbling(10), 0);
        rec(&mut op, "b", 15);
        rec(&mut op, "a", 3);
        rec(&mut op, "a", 12);
        let actions = op.on_watermark(100);
        let fired: Vec<(&str, Window)> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Fire { key, window } => Some((key.as_str(), *window)),
                _ => None,
            })
            .collect();
        assert_eq!(fired, [("a", w(0, 10)), ("a", w(10, 20)), ("b", w(10, 20))]);
    }
}
