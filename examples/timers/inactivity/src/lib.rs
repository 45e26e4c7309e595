//! `inactivity`: a keyed operator with event-time timers. For each key it remembers the
//! latest timestamp seen and sets a timer `gap` ms after it; when the watermark passes a timer
//! and no later record of the key moved it, the key has been quiet for `gap`: it emits
//! `<key> quiet since <last> at <time>` (with the timestamp `time`).
//!
//! Config `gap_ms` (default 10,000). With `clock = "processing"`, the timer follows the wall
//! clock instead: `gap_ms` after the record was seen.

use serde::Deserialize;
use weir_guest_sdk::prelude::*;

#[derive(Deserialize)]
struct Settings {
    #[serde(default = "default_gap")]
    gap_ms: i64,
    #[serde(default)]
    clock: Clock,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Clock {
    #[default]
    Event,
    Processing,
}

fn default_gap() -> i64 {
    10_000
}

pub struct Inactivity {
    gap: i64,
    clock: Clock,
    /// Per key: the time its timer is set for, and the latest time seen.
    due: ValueState<(i64, i64)>,
}

impl Operator for Inactivity {
    fn open(_ctx: &mut Context, config: Config) -> Result<Self, Error> {
        let s: Settings = config.parse()?;
        if s.gap_ms <= 0 {
            return Err(Error::msg("gap_ms must be positive"));
        }
        Ok(Inactivity {
            gap: s.gap_ms,
            clock: s.clock,
            due: ValueState::new("due"),
        })
    }

    fn process(&mut self, ctx: &mut Context, record: Record<'_>) -> Result<(), Error> {
        let seen = match self.clock {
            Clock::Event => record
                .timestamp
                .ok_or_else(|| Error::msg("a record without a timestamp"))?,
            Clock::Processing => ctx.current_processing_time(),
        };
        let mut previous = self.due.get(record.key)?;
        if let Some((old, last)) = previous
            && seen >= old
        {
            // The key was quiet for the gap before this record, though the watermark had not
            // yet said so: report it now.
            self.delete(ctx, record.key, old)?;
            emit_quiet(ctx, record.key, last, old);
            previous = None;
        }
        let last = previous.map_or(seen, |(_, last)| last.max(seen));
        let at = last + self.gap;
        if let Some((old, _)) = previous
            && old != at
        {
            self.delete(ctx, record.key, old)?;
        }
        match self.clock {
            Clock::Event => ctx.register_event_timer(record.key, at)?,
            Clock::Processing => ctx.register_processing_timer(record.key, at)?,
        }
        self.due.set(record.key, &(at, last))?;
        Ok(())
    }

    fn on_timer(&mut self, ctx: &mut Context, timer: Timer<'_>) -> Result<(), Error> {
        let Some((at, last)) = self.due.get(timer.key)? else {
            return Ok(());
        };
        if at != timer.time {
            return Ok(());
        }
        self.due.clear(timer.key)?;
        emit_quiet(ctx, timer.key, last, timer.time);
        Ok(())
    }
}

fn emit_quiet(ctx: &mut Context, key: &[u8], last: i64, at: i64) {
    let text = String::from_utf8_lossy(key);
    ctx.emit_record(Record {
        key,
        value: format!("{text} quiet since {last} at {at}").as_bytes(),
        timestamp: Some(at),
    });
}

impl Inactivity {
    fn delete(&self, ctx: &mut Context, key: &[u8], at: i64) -> Result<(), Error> {
        match self.clock {
            Clock::Event => ctx.delete_event_timer(key, at)?,
            Clock::Processing => ctx.delete_processing_timer(key, at)?,
        }
        Ok(())
    }
}

export_operator!(Inactivity);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_guest_sdk::testing::Harness;

    fn at<'a>(key: &'a str, ts: i64) -> Record<'a> {
        Record {
            key: key.as_bytes(),
            value: b"",
            timestamp: Some(ts),
        }
    }

    #[test]
    fn a_key_quiet_for_the_gap_is_reported_once_when_the_watermark_passes() {
        let mut h = Harness::<Inactivity>::open(r#"{"gap_ms": 100}"#).unwrap();
        h.process(&[at("a", 10), at("b", 20), at("a", 50)]).unwrap();
        // a's timer moved from 110 to 150; one timer per key.
        assert_eq!(h.timers().len(), 2);
        h.advance_watermark(149).unwrap();
        assert_eq!(h.output_values(), ["b quiet since 20 at 120"]);
        h.advance_watermark(150).unwrap();
        assert_eq!(h.output_values(), ["a quiet since 50 at 150"]);
        assert!(h.timers().is_empty());
        // An older record does not move the timer back.
        h.process(&[at("c", 100), at("c", 40)]).unwrap();
        h.advance_watermark(1000).unwrap();
        assert_eq!(h.output_values(), ["c quiet since 100 at 200"]);
        // A record past its key's due time, before the watermark got there: reported at once.
        h.process(&[at("d", 2000), at("d", 2500)]).unwrap();
        assert_eq!(h.output_values(), ["d quiet since 2000 at 2100"]);
        assert_eq!(h.timers().len(), 1);
    }

    #[test]
    fn processing_time_timers_follow_the_clock() {
        let mut h = Harness::<Inactivity>::open(r#"{"gap_ms": 5, "clock": "processing"}"#).unwrap();
        h.advance_processing_time(1000).unwrap();
        h.process(&[Record::new("k", "")]).unwrap();
        h.advance_watermark(i64::MAX).unwrap();
        assert!(h.output_values().is_empty(), "not an event-time timer");
        h.advance_processing_time(1004).unwrap();
        assert!(h.output_values().is_empty());
        h.advance_processing_time(1005).unwrap();
        assert_eq!(h.output_values(), ["k quiet since 1000 at 1005"]);
    }
}
