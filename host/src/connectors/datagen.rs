//! `datagen`: records that are a pure function of their index, so any run (and any engine) can
//! regenerate them. Subtask k of P emits indices k, k+P, k+2P, ... in increasing order.

use super::{ConnectorError, Poll, Source, share};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use weir_batch::Record;

/// SplitMix64 as the reference workloads define it: `h(seed, i)` is the i-th output for `seed`.
pub mod splitmix {
    pub const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

    pub fn mix64(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn h(seed: u64, i: u64) -> u64 {
        mix64(seed.wrapping_add(i.wrapping_add(1).wrapping_mul(GAMMA)))
    }
}

/// The most words a generated line may have (a line stays well under a megabyte).
pub const MAX_WORDS_PER_LINE: u32 = 10_000;

/// What the generated records look like.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum DatagenShape {
    /// Value: the index in decimal.
    Sequence,
    /// Value: `words_per_line` words `w<n>` with n = h(seed, i*words_per_line + j) % vocabulary.
    Lines {
        words_per_line: u32,
        vocabulary: u64,
    },
    /// Value: when the record was made, in microseconds since the Unix epoch (decimal): what
    /// the `latency` sink measures against.
    Clock,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DatagenConfig {
    pub seed: u64,
    /// Records in total across subtasks; `None` = unbounded.
    pub count: Option<u64>,
    /// Records per second in total across subtasks; `None` = as fast as downstream takes them.
    pub rate: Option<f64>,
    pub shape: DatagenShape,
}

pub(super) struct Datagen {
    config: DatagenConfig,
    /// The index streams (splits) this subtask emits, in turn: (next index, step). Subtask k of
    /// P starts with the one stream (k, P); a restore at another parallelism deals the streams
    /// out again.
    streams: VecDeque<(u64, u64)>,
    emitted: u64,
    started: Instant,
    line: String,
    /// This subtask's share of the rate, records per second.
    rate: Option<f64>,
}

impl Datagen {
    pub(super) fn new(config: DatagenConfig, subtask: u32, parallelism: u32) -> Self {
        let rate = config.rate.map(|r| r / f64::from(parallelism));
        Datagen {
            config,
            streams: VecDeque::from([(u64::from(subtask), u64::from(parallelism))]),
            emitted: 0,
            started: Instant::now(),
            line: String::new(),
            rate,
        }
    }

    fn render(&mut self, i: u64) {
        use std::fmt::Write;
        self.line.clear();
        match self.config.shape {
            DatagenShape::Sequence => {
                let _ = write!(self.line, "{i}");
            }
            DatagenShape::Clock => {
                let _ = write!(self.line, "{}", super::sinks::now_us());
            }
            DatagenShape::Lines {
                words_per_line,
                vocabulary,
            } => {
                let w = u64::from(words_per_line);
                for j in 0..w {
                    if j > 0 {
                        self.line.push(' ');
                    }
                    let _ = write!(
                        self.line,
                        "w{}",
                        splitmix::h(self.config.seed, i.wrapping_mul(w).wrapping_add(j))
                            % vocabulary
                    );
                }
            }
        }
    }
}

impl Datagen {
    /// Drops the streams at the front that have nothing left; whether any is left.
    fn live(&mut self) -> bool {
        while let Some(&(next, _)) = self.streams.front() {
            if self.config.count.is_none_or(|c| next < c) {
                return true;
            }
            self.streams.pop_front();
        }
        false
    }
}

impl Source for Datagen {
    fn position(&mut self) -> Result<Vec<u8>, ConnectorError> {
        self.live();
        Ok(serde_json::to_vec(&self.streams).expect("a position serializes"))
    }

    fn restore(
        &mut self,
        positions: &[&[u8]],
        subtask: u32,
        parallelism: u32,
    ) -> Result<(), ConnectorError> {
        let mut streams = Vec::new();
        for p in positions {
            let s: Vec<(u64, u64)> = serde_json::from_slice(p).map_err(|e| {
                ConnectorError::Failed(format!(
                    "unreadable datagen position in the checkpoint: {e}"
                ))
            })?;
            if s.iter().any(|&(_, step)| step == 0) {
                return Err(ConnectorError::Failed(
                    "a datagen position in the checkpoint has a step of 0".into(),
                ));
            }
            streams.extend(s);
        }
        self.streams = share(streams, subtask, parallelism).into();
        Ok(())
    }

    fn poll(&mut self, batch: &mut Vec<u8>, max_bytes: usize) -> Result<Poll, ConnectorError> {
        // With a rate, emit small batches and sleep until they are due, so pacing stays smooth.
        let mut budget = u64::MAX;
        if let Some(rate) = self.rate {
            let due = (self.started.elapsed().as_secs_f64() * rate) as u64;
            if due <= self.emitted {
                let wait = (self.emitted + 1) as f64 / rate - self.started.elapsed().as_secs_f64();
                std::thread::sleep(Duration::from_secs_f64(wait.clamp(0.0, 0.05)));
                return Ok(Poll::More);
            }
            budget = due - self.emitted;
        }
        while batch.len() < max_bytes && budget > 0 && self.live() {
            let (i, step) = self.streams[0];
            self.render(i);
            weir_batch::push(batch, &Record::new(b"", self.line.as_bytes()));
            match i.checked_add(step) {
                Some(next) => self.streams[0].0 = next,
                // Past u64::MAX there are no more indices: an unbounded stream ends there.
                None => {
                    self.streams.pop_front();
                }
            }
            self.emitted += 1;
            budget -= 1;
        }
        Ok(if self.live() { Poll::More } else { Poll::Ended })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_test_vectors() {
        assert_eq!(splitmix::h(11, 0), 5833679380957638813);
        assert_eq!(splitmix::h(31, 0), 15517599431202433770);
        let mut d = Datagen::new(
            DatagenConfig {
                seed: 21,
                count: Some(1),
                rate: None,
                shape: DatagenShape::Lines {
                    words_per_line: 8,
                    vocabulary: 10000,
                },
            },
            0,
            1,
        );
        let mut batch = Vec::new();
        assert_eq!(d.poll(&mut batch, 1 << 20).unwrap(), Poll::Ended);
        let r = weir_batch::iter(&batch).next().unwrap().unwrap();
        assert_eq!(r.value, b"w9543 w8719 w2415 w7457 w7481 w8911 w870 w3777");
    }

    fn values(batch: &[u8]) -> Vec<u64> {
        weir_batch::iter(batch)
            .map(|r| {
                std::str::from_utf8(r.unwrap().value)
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn index_streams_are_dealt_out_again_at_another_parallelism() {
        let config = DatagenConfig {
            seed: 0,
            count: Some(100),
            rate: None,
            shape: DatagenShape::Sequence,
        };
        let mut seen = Vec::new();
        let mut positions = Vec::new();
        for k in 0..3 {
            let mut d = Datagen::new(config.clone(), k, 3);
            let mut batch = Vec::new();
            d.poll(&mut batch, 30).unwrap();
            seen.extend(values(&batch));
            positions.push(d.position().unwrap());
        }
        let refs: Vec<&[u8]> = positions.iter().map(Vec::as_slice).collect();
        for k in 0..2 {
            let mut d = Datagen::new(config.clone(), k, 2);
            d.restore(&refs, k, 2).unwrap();
            loop {
                let mut batch = Vec::new();
                let poll = d.poll(&mut batch, 1 << 20).unwrap();
                seen.extend(values(&batch));
                if poll == Poll::Ended {
                    break;
                }
            }
        }
        seen.sort();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn subtasks_split_the_indices_between_them() {
        let config = DatagenConfig {
            seed: 0,
            count: Some(10),
            rate: None,
            shape: DatagenShape::Sequence,
        };
        let mut seen = Vec::new();
        for k in 0..3 {
            let mut d = Datagen::new(config.clone(), k, 3);
            loop {
                let mut batch = Vec::new();
                let poll = d.poll(&mut batch, 16).unwrap();
                for r in weir_batch::iter(&batch) {
                    seen.push(
                        std::str::from_utf8(r.unwrap().value)
                            .unwrap()
                            .parse::<u64>()
                            .unwrap(),
                    );
                }
                if poll == Poll::Ended {
                    break;
                }
            }
        }
        seen.sort();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
    }
}
