//! Watermarks, as Flink makes them.
//!
//! - A source's [`Generator`] follows the largest timestamp seen. Bounded out-of-orderness
//!   gives `max - max_delay - 1`; monotonous is the same with no delay. It emits after every
//!   record (`interval = 0`: the watermark then depends only on the input, never on timing) or
//!   at each periodic tick, and marks itself idle after `idle_timeout` without records.
//! - A task's [`Valve`] takes, over its inputs, the minimum watermark of those that are not idle
//!   and not ended. Its output only advances. An input that comes back from idleness counts
//!   again only once it has caught up with the output, as Flink's `StatusWatermarkValve`.
//!   When every input is idle, the task is idle too.
//!
//! Both are plain structs fed events (with the time, where it matters), returning what to send.

use std::time::{Duration, Instant};

/// The watermark before any record: nothing is known to be complete.
pub const MIN: i64 = i64::MIN;
/// The watermark of an input that has ended: it holds nothing back.
pub const MAX: i64 = i64::MAX;
/// In a channel, a watermark of [`MIN`] says that the sender is idle: no watermark a generator
/// emits is ever that low (a source coming back from idleness sends at least `MIN + 1`).
pub const IDLE: i64 = MIN;

/// How a source's watermark follows its timestamps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// `largest timestamp - max_delay - 1` ms.
    BoundedOutOfOrderness { max_delay: i64 },
    /// Timestamps never go back: `largest timestamp - 1`.
    Monotonous,
}

impl Strategy {
    fn delay(self) -> i64 {
        match self {
            Strategy::BoundedOutOfOrderness { max_delay } => max_delay,
            Strategy::Monotonous => 0,
        }
    }
}

/// What a generator says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emit {
    /// A new, larger watermark.
    Watermark(i64),
    /// No record for the idle timeout: this source holds nothing back until its next record.
    Idle,
}

/// A source's (or a split's) watermark generator.
#[derive(Debug)]
pub struct Generator {
    strategy: Strategy,
    /// Emit after every record (Flink's punctuated generators) rather than at ticks.
    per_record: bool,
    idle_timeout: Option<Duration>,
    largest: Option<i64>,
    emitted: i64,
    last_record: Instant,
    idle: bool,
}

impl Generator {
    pub fn new(
        strategy: Strategy,
        per_record: bool,
        idle_timeout: Option<Duration>,
        now: Instant,
    ) -> Self {
        Generator {
            strategy,
            per_record,
            idle_timeout,
            largest: None,
            emitted: MIN,
            last_record: now,
            idle: false,
        }
    }

    /// The watermark the timestamps seen so far allow.
    pub fn current(&self) -> i64 {
        self.largest.map_or(MIN, |t| {
            t.saturating_sub(self.strategy.delay()).saturating_sub(1)
        })
    }

    /// A record of timestamp `ts` at `now`: a new watermark at once when emitting per record.
    /// A source that was idle becomes active again, and its next watermark says so.
    pub fn on_record(&mut self, ts: i64, now: Instant) -> Option<Emit> {
        self.largest = Some(self.largest.map_or(ts, |l| l.max(ts)));
        self.last_record = now;
        if std::mem::replace(&mut self.idle, false) {
            // Back from idleness: say so at once, with a watermark even if it did not advance.
            self.emitted = self.current().max(self.emitted).max(MIN + 1);
            return Some(Emit::Watermark(self.emitted));
        }
        if self.per_record {
            self.advance()
        } else {
            None
        }
    }

    /// The largest timestamp seen, for a checkpoint.
    pub fn largest(&self) -> Option<i64> {
        self.largest
    }

    /// Takes back the largest timestamp of a checkpoint (before any record): the watermark
    /// starts where it was, and [`Generator::current`] gives it to send at once.
    pub fn restore(&mut self, largest: i64) {
        self.largest = Some(largest);
        self.emitted = self.current();
    }

    /// A periodic tick at `now`: the watermark if it advanced, or idleness after the timeout.
    pub fn on_tick(&mut self, now: Instant) -> Option<Emit> {
        if let Some(timeout) = self.idle_timeout
            && !self.idle
            && now.saturating_duration_since(self.last_record) >= timeout
        {
            self.idle = true;
            return Some(Emit::Idle);
        }
        if self.per_record || self.idle {
            return None;
        }
        self.advance()
    }

    fn advance(&mut self) -> Option<Emit> {
        let wm = self.current();
        (wm > self.emitted).then(|| {
            self.emitted = wm;
            Emit::Watermark(wm)
        })
    }

    pub fn is_idle(&self) -> bool {
        self.idle
    }
}

/// One input of a valve.
#[derive(Clone, Copy, Debug)]
struct Input {
    watermark: i64,
    idle: bool,
    /// Counts in the minimum: not idle, and caught up with the output since it last was.
    aligned: bool,
}

/// What a valve forwards downstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValveOutput {
    Watermark(i64),
    /// Every input is idle.
    Idle,
    /// An input is active again after all were idle.
    Active,
}

/// The watermark of a task with several inputs.
#[derive(Debug)]
pub struct Valve {
    inputs: Vec<Input>,
    output: i64,
    idle: bool,
    /// Watermarks received below what the input had sent already (a misbehaving source),
    /// ignored.
    backwards: u64,
}

impl Valve {
    pub fn new(inputs: usize) -> Self {
        Valve {
            inputs: vec![
                Input {
                    watermark: MIN,
                    idle: false,
                    aligned: true,
                };
                inputs
            ],
            output: MIN,
            idle: false,
            backwards: 0,
        }
    }

    /// The watermark forwarded so far.
    pub fn current(&self) -> i64 {
        self.output
    }

    /// Watermarks that went backwards on an input, ignored.
    pub fn backwards(&self) -> u64 {
        self.backwards
    }

    /// Input `i` delivered watermark `wm`.
    pub fn on_watermark(&mut self, i: usize, wm: i64) -> Vec<ValveOutput> {
        let mut out = Vec::new();
        let input = &mut self.inputs[i];
        if input.idle {
            input.idle = false;
            input.aligned = false;
            if self.idle {
                self.idle = false;
                out.push(ValveOutput::Active);
            }
        }
        if wm < input.watermark {
            self.backwards += 1;
            return out;
        }
        input.watermark = wm;
        if !input.aligned && wm >= self.output {
            input.aligned = true;
        }
        out.extend(self.advance());
        out
    }

    /// Input `i` is idle.
    pub fn on_idle(&mut self, i: usize) -> Vec<ValveOutput> {
        let input = &mut self.inputs[i];
        if input.idle {
            return Vec::new();
        }
        input.idle = true;
        input.aligned = false;
        let mut out: Vec<ValveOutput> = self.advance().into_iter().collect();
        if !self.idle && self.inputs.iter().all(|i| i.idle) {
            self.idle = true;
            out.push(ValveOutput::Idle);
        }
        out
    }

    /// Input `i` ended: it holds nothing back from now on.
    pub fn on_end(&mut self, i: usize) -> Vec<ValveOutput> {
        self.inputs[i] = Input {
            watermark: MAX,
            idle: false,
            aligned: true,
        };
        self.advance().into_iter().collect()
    }

    /// The new minimum over the aligned inputs, if it advanced.
    fn advance(&mut self) -> Option<ValveOutput> {
        let min = self
            .inputs
            .iter()
            .filter(|i| i.aligned && !i.idle)
            .map(|i| i.watermark)
            .min()?;
        (min > self.output).then(|| {
            self.output = min;
            ValveOutput::Watermark(min)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_out_of_orderness_trails_the_largest_timestamp_by_the_delay_and_a_millisecond() {
        let t0 = Instant::now();
        let mut g = Generator::new(
            Strategy::BoundedOutOfOrderness { max_delay: 2000 },
            true,
            None,
            t0,
        );
        assert_eq!(g.current(), MIN);
        assert_eq!(g.on_record(7000, t0), Some(Emit::Watermark(4999)));
        // Out of order: no new watermark.
        assert_eq!(g.on_record(6000, t0), None);
        assert_eq!(g.on_record(12000, t0), Some(Emit::Watermark(9999)));
        let mut m = Generator::new(Strategy::Monotonous, true, None, t0);
        assert_eq!(m.on_record(5, t0), Some(Emit::Watermark(4)));
    }

    #[test]
    fn a_periodic_generator_emits_at_ticks_and_goes_idle_after_the_timeout() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut g = Generator::new(Strategy::Monotonous, false, Some(30 * s), t0);
        assert_eq!(g.on_record(100, t0), None);
        assert_eq!(g.on_record(50, t0), None);
        assert_eq!(g.on_tick(t0 + s), Some(Emit::Watermark(99)));
        assert_eq!(g.on_tick(t0 + 2 * s), None, "nothing new");
        assert_eq!(g.on_tick(t0 + 31 * s), Some(Emit::Idle));
        assert!(g.is_idle());
        assert_eq!(g.on_tick(t0 + 40 * s), None, "idle once");
        // A record brings it back with its watermark at once.
        assert_eq!(g.on_record(200, t0 + 41 * s), Some(Emit::Watermark(199)));
        assert!(!g.is_idle());
    }

    #[test]
    fn a_valve_forwards_the_minimum_of_its_active_inputs_and_never_goes_back() {
        let mut v = Valve::new(3);
        assert_eq!(v.on_watermark(0, 10), vec![]);
        assert_eq!(v.on_watermark(1, 5), vec![]);
        assert_eq!(v.on_watermark(2, 7), vec![ValveOutput::Watermark(5)]);
        assert_eq!(v.on_watermark(1, 20), vec![ValveOutput::Watermark(7)]);
        // A watermark going back is ignored and counted.
        assert_eq!(v.on_watermark(2, 3), vec![]);
        assert_eq!(v.backwards(), 1);
        assert_eq!(v.current(), 7);
        // Input 2 idle: the others alone decide.
        assert_eq!(v.on_idle(2), vec![ValveOutput::Watermark(10)]);
        // Back with a watermark below the output: it counts again once it has caught up.
        assert_eq!(v.on_watermark(2, 8), vec![]);
        assert_eq!(v.on_watermark(0, 30), vec![ValveOutput::Watermark(20)]);
        assert_eq!(v.on_watermark(2, 25), vec![]);
        assert_eq!(v.on_watermark(1, 40), vec![ValveOutput::Watermark(25)]);
        // An ended input holds nothing back.
        assert_eq!(v.on_end(2), vec![ValveOutput::Watermark(30)]);
    }

    #[test]
    fn a_valve_is_idle_when_every_input_is_and_active_again_with_the_first_watermark() {
        let mut v = Valve::new(2);
        assert_eq!(v.on_watermark(0, 10), vec![]);
        assert_eq!(v.on_idle(1), vec![ValveOutput::Watermark(10)]);
        assert_eq!(v.on_idle(0), vec![ValveOutput::Idle]);
        assert_eq!(v.on_idle(0), vec![], "once");
        assert_eq!(
            v.on_watermark(1, 50),
            vec![ValveOutput::Active, ValveOutput::Watermark(50)]
        );
    }
}
