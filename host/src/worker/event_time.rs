//! A source task's event time: stamping records with the ingestion time where the manifest asks
//! for it, and running their timestamps through the source's watermark generator
//! ([`crate::time::Generator`]). With `interval = 0` a watermark follows every record that
//! advances it, the batch cut there, so what a job emits depends only on its input; otherwise
//! one is emitted at each tick of the interval.

use crate::plan::{SourceTime, Timestamps};
use crate::time::watermark::{self, Emit, Generator, Strategy};
use crate::wasm::now_ms;
use std::time::{Duration, Instant};
use weir_batch::Record;

/// What a source's batch becomes: records, and watermarks between them.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    Data(Vec<u8>),
    Watermark(i64),
}

pub struct SourceClock {
    ingestion: bool,
    generator: Option<Generator>,
    per_record: bool,
    interval: Duration,
    last_tick: Instant,
    /// A watermark to send before anything else (a restored one).
    pending: Option<i64>,
    /// Records seen, to name one in an error.
    records: u64,
}

impl SourceClock {
    pub fn new(time: &SourceTime, now: Instant) -> Self {
        let generator = time.watermarks.map(|w| {
            let strategy = if w.max_delay_ms == 0 {
                Strategy::Monotonous
            } else {
                Strategy::BoundedOutOfOrderness {
                    max_delay: w.max_delay_ms,
                }
            };
            Generator::new(strategy, w.interval.is_zero(), w.idle_timeout, now)
        });
        SourceClock {
            ingestion: time.timestamps == Timestamps::Ingestion,
            per_record: time.watermarks.is_some_and(|w| w.interval.is_zero()),
            interval: time.watermarks.map_or(Duration::MAX, |w| w.interval),
            generator,
            last_tick: now,
            pending: None,
            records: 0,
        }
    }

    /// Takes back the generator's state from the checkpoint states `states` (one per old
    /// subtask this one takes over): the smallest largest timestamp, so that no record is
    /// taken for late that was not.
    pub fn restore(&mut self, states: &[&[u8]]) -> Result<(), String> {
        let Some(g) = &mut self.generator else {
            return Ok(());
        };
        let mut smallest: Option<i64> = None;
        for s in states {
            let bytes: [u8; 8] = (*s).try_into().map_err(|_| {
                "the checkpoint holds a source's watermark state that cannot be read".to_string()
            })?;
            let largest = i64::from_le_bytes(bytes);
            smallest = Some(smallest.map_or(largest, |m| m.min(largest)));
        }
        if let Some(largest) = smallest {
            g.restore(largest);
            let wm = g.current();
            self.pending = (wm > watermark::MIN).then_some(wm);
        }
        Ok(())
    }

    /// The generator's state for a checkpoint (none before the first record).
    pub fn snapshot(&self) -> Option<Vec<u8>> {
        let largest = self.generator.as_ref()?.largest()?;
        Some(largest.to_le_bytes().to_vec())
    }

    /// A watermark to send before the first record (a restored source's), once.
    pub fn take_pending(&mut self) -> Option<i64> {
        self.pending.take()
    }

    /// Stamps `batch` where the source asks for the ingestion time and follows its
    /// timestamps: the records, with the watermarks to send between and after them.
    pub fn on_batch(&mut self, batch: Vec<u8>, now: Instant) -> Result<Vec<Piece>, String> {
        let batch = if self.ingestion {
            stamp(&batch, now_ms())?
        } else {
            batch
        };
        let Some(g) = &mut self.generator else {
            return Ok(vec![Piece::Data(batch)]);
        };
        let mut pieces = Vec::new();
        let mut records = weir_batch::iter(&batch);
        // Where the records not yet in a piece start.
        let mut from = 0;
        let mut at = 0;
        while let Some(next) = records.next_raw() {
            let (record, raw) = next.map_err(|e| format!("emitted a malformed batch: {e}"))?;
            self.records += 1;
            let ts = record.timestamp.ok_or_else(|| {
                format!(
                    "record {} of this subtask has no timestamp, and the source's watermarks follow them (a source component sets them as it emits; or use timestamp = \"ingestion\")",
                    self.records
                )
            })?;
            at += raw.len();
            if let Some(Emit::Watermark(wm)) = g.on_record(ts, now) {
                if self.per_record {
                    pieces.push(Piece::Data(batch[from..at].to_vec()));
                    from = at;
                }
                pieces.push(Piece::Watermark(wm));
            }
        }
        if from == 0 && at == batch.len() && pieces.is_empty() {
            return Ok(vec![Piece::Data(batch)]);
        }
        if from < at {
            // Periodic: the watermark a record back from idleness brought goes after them.
            let rest = Piece::Data(batch[from..at].to_vec());
            match pieces.iter().position(|p| matches!(p, Piece::Watermark(_))) {
                Some(i) if !self.per_record => pieces.insert(i, rest),
                _ => pieces.push(rest),
            }
        }
        Ok(pieces)
    }

    /// Called between polls: at each tick of the interval, the watermark if it advanced, or
    /// (as [`watermark::IDLE`]) idleness after the idle timeout without records.
    pub fn on_tick(&mut self, now: Instant) -> Option<i64> {
        let g = self.generator.as_mut()?;
        if !self.per_record && now.saturating_duration_since(self.last_tick) < self.interval {
            return None;
        }
        self.last_tick = now;
        match g.on_tick(now)? {
            Emit::Watermark(wm) => Some(wm),
            Emit::Idle => Some(watermark::IDLE),
        }
    }
}

/// `batch` with every record's timestamp set to `ts`.
fn stamp(batch: &[u8], ts: i64) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(batch.len() + 8 * 64);
    for r in weir_batch::iter(batch) {
        let r = r.map_err(|e| format!("emitted a malformed batch: {e}"))?;
        weir_batch::push(
            &mut out,
            &Record {
                timestamp: Some(ts),
                ..r
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::WatermarkSettings;

    fn batch(timestamps: &[i64]) -> Vec<u8> {
        let mut b = Vec::new();
        for (i, ts) in timestamps.iter().enumerate() {
            let v = i.to_string();
            weir_batch::push(
                &mut b,
                &Record {
                    key: b"",
                    value: v.as_bytes(),
                    timestamp: Some(*ts),
                },
            );
        }
        b
    }

    fn clock(interval: Duration, idle: Option<Duration>) -> SourceClock {
        SourceClock::new(
            &SourceTime {
                timestamps: Timestamps::Record,
                watermarks: Some(WatermarkSettings {
                    max_delay_ms: 10,
                    interval,
                    idle_timeout: idle,
                }),
            },
            Instant::now(),
        )
    }

    fn counts(pieces: &[Piece]) -> Vec<String> {
        pieces
            .iter()
            .map(|p| match p {
                Piece::Data(d) => format!("{}r", weir_batch::count(d).unwrap()),
                Piece::Watermark(w) => format!("w{w}"),
            })
            .collect()
    }

    #[test]
    fn per_record_watermarks_cut_the_batch_where_they_advance() {
        let mut c = clock(Duration::ZERO, None);
        let now = Instant::now();
        let pieces = c.on_batch(batch(&[100, 105, 103, 120, 50]), now).unwrap();
        assert_eq!(
            counts(&pieces),
            ["1r", "w89", "1r", "w94", "2r", "w109", "1r"]
        );
        assert_eq!(c.snapshot(), Some(120i64.to_le_bytes().to_vec()));
        assert_eq!(c.on_tick(now), None);

        // Restored: the watermark starts where it was, sent first.
        let mut r = clock(Duration::ZERO, None);
        r.restore(&[&120i64.to_le_bytes(), &130i64.to_le_bytes()])
            .unwrap();
        assert_eq!(r.take_pending(), Some(109));
        assert_eq!(r.take_pending(), None);
        assert_eq!(counts(&r.on_batch(batch(&[115]), now).unwrap()), ["1r"]);
        assert!(r.restore(&[&[1, 2]]).is_err());
    }

    #[test]
    fn periodic_watermarks_come_at_ticks_and_idleness_after_the_timeout() {
        let t0 = Instant::now();
        let ms = Duration::from_millis(1);
        let mut c = SourceClock::new(
            &SourceTime {
                timestamps: Timestamps::Record,
                watermarks: Some(WatermarkSettings {
                    max_delay_ms: 0,
                    interval: 200 * ms,
                    idle_timeout: Some(1000 * ms),
                }),
            },
            t0,
        );
        assert_eq!(counts(&c.on_batch(batch(&[5, 9, 7]), t0).unwrap()), ["3r"]);
        assert_eq!(c.on_tick(t0 + 100 * ms), None, "before the tick");
        assert_eq!(c.on_tick(t0 + 200 * ms), Some(8));
        assert_eq!(c.on_tick(t0 + 400 * ms), None, "no advance");
        assert_eq!(c.on_tick(t0 + 1200 * ms), Some(watermark::IDLE));
        // Back from idleness: the watermark goes after the records.
        let pieces = c.on_batch(batch(&[20]), t0 + 1300 * ms).unwrap();
        assert_eq!(counts(&pieces), ["1r", "w19"]);
    }

    #[test]
    fn ingestion_time_stamps_every_record_and_a_missing_timestamp_is_named() {
        let mut c = SourceClock::new(
            &SourceTime {
                timestamps: Timestamps::Ingestion,
                watermarks: None,
            },
            Instant::now(),
        );
        let mut b = Vec::new();
        weir_batch::push(&mut b, &Record::new(b"k", b"v"));
        let before = now_ms();
        let pieces = c.on_batch(b.clone(), Instant::now()).unwrap();
        let Piece::Data(d) = &pieces[0] else { panic!() };
        let ts = weir_batch::iter(d)
            .next()
            .unwrap()
            .unwrap()
            .timestamp
            .unwrap();
        assert!(ts >= before && ts <= now_ms());

        let mut c = clock(Duration::ZERO, None);
        let e = c.on_batch(b, Instant::now()).unwrap_err();
        assert!(
            e.contains("record 1 of this subtask has no timestamp"),
            "{e}"
        );
    }
}
