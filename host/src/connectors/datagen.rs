//! `datagen`: records that are a pure function of their index, so any run (and any engine) can
//! regenerate them. Subtask k of P emits indices k, k+P, k+2P, ... in increasing order.

use super::{ConnectorError, Poll, Source};
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
#[derive(Clone, Debug, PartialEq)]
pub enum DatagenShape {
    /// Value: the index in decimal.
    Sequence,
    /// Value: `words_per_line` words `w<n>` with n = h(seed, i*words_per_line + j) % vocabulary.
    Lines {
        words_per_line: u32,
        vocabulary: u64,
    },
}

#[derive(Clone, Debug, PartialEq)]
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
    next: u64,
    step: u64,
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
            next: u64::from(subtask),
            step: u64::from(parallelism),
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

impl Source for Datagen {
    fn position(&mut self) -> Result<Vec<u8>, ConnectorError> {
        Ok(self.next.to_le_bytes().to_vec())
    }

    fn restore(&mut self, position: &[u8]) -> Result<(), ConnectorError> {
        let next = position
            .try_into()
            .map(u64::from_le_bytes)
            .map_err(|_| ConnectorError::Failed("unreadable datagen position".into()))?;
        if next % self.step != self.next % self.step {
            return Err(ConnectorError::Failed(format!(
                "datagen position {next} is not one of this subtask's indices"
            )));
        }
        self.next = next;
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
        while batch.len() < max_bytes && budget > 0 {
            if self.config.count.is_some_and(|c| self.next >= c) {
                return Ok(Poll::Ended);
            }
            let i = self.next;
            self.render(i);
            weir_batch::push(batch, &Record::new(b"", self.line.as_bytes()));
            // Past u64::MAX there are no more indices: an unbounded source ends there.
            let Some(next) = self.next.checked_add(self.step) else {
                return Ok(Poll::Ended);
            };
            self.next = next;
            self.emitted += 1;
            budget -= 1;
        }
        if self.config.count.is_some_and(|c| self.next >= c) {
            return Ok(Poll::Ended);
        }
        Ok(Poll::More)
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
