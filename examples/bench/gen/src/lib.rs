//! `gen`: the reference workloads' input (`examples/bench/README.md`) as a WASM source.
//!
//! Every record is a pure function of its index i, so any run regenerates it bit for bit; subtask
//! k of P emits i = k, k+P, k+2P, ... < n. The position is the next index (8 bytes, little
//! endian), so a restored source resumes with exactly the record it had not emitted yet.
//!
//! Config: `workload` (`stateless`, `wordcount` or `window`) and `n` (records in total).

use serde::Deserialize;
use weir_guest_sdk::prelude::*;
use weir_guest_sdk::text;

/// SplitMix64: `h(seed, i)` is the i-th output for `seed`.
pub fn h(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add(i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// `"{i},user{h(11,i) % 1000},{h(12,i) % 10000}"`.
    Stateless,
    /// A line of 8 words `w{h(21, 8i+j) % 10000}`.
    Wordcount,
    /// Key `h(31,i) % 1000`, timestamp `2000 + i/10 - h(32,i) % 2001` ms, value `h(33,i) % 100`.
    Window,
}

#[derive(Deserialize)]
struct Settings {
    workload: Workload,
    n: u64,
}

pub struct Gen {
    workload: Workload,
    n: u64,
    next: u64,
    step: u64,
    /// The window workload's key, rendered before its record.
    key: Vec<u8>,
}

impl Gen {
    /// Emits record `i`, its value written straight into the output batch.
    fn emit(&mut self, ctx: &mut Context, i: u64) {
        match self.workload {
            Workload::Stateless => ctx.emit_with([], None, |v| {
                v.push_u64(i);
                v.extend(b",user");
                v.push_u64(h(11, i) % 1000);
                v.push(b',');
                v.push_u64(h(12, i) % 10000);
            }),
            Workload::Wordcount => ctx.emit_with([], None, |v| {
                for j in 0..8 {
                    v.extend(if j == 0 { b"w" } else { b" w" });
                    v.push_u64(h(21, 8 * i + j) % 10000);
                }
            }),
            Workload::Window => {
                self.key.clear();
                text::push_u64(&mut self.key, h(31, i) % 1000);
                let timestamp = 2000 + (i / 10) as i64 - (h(32, i) % 2001) as i64;
                ctx.emit_with(&self.key, Some(timestamp), |v| v.push_u64(h(33, i) % 100));
            }
        }
    }
}

impl Source for Gen {
    fn open(_ctx: &mut Context, config: Config, split: Split) -> Result<Self, Error> {
        let s: Settings = config.parse()?;
        Ok(Gen {
            workload: s.workload,
            n: s.n,
            next: u64::from(split.subtask),
            step: u64::from(split.parallelism),
            key: Vec::new(),
        })
    }

    fn poll(&mut self, ctx: &mut Context, max_records: u32) -> Result<Poll, Error> {
        for _ in 0..max_records {
            if self.next >= self.n {
                break;
            }
            self.emit(ctx, self.next);
            self.next += self.step;
        }
        Ok(if self.next >= self.n {
            Poll::Ended
        } else {
            Poll::More
        })
    }

    fn position(&self) -> Vec<u8> {
        self.next.to_le_bytes().to_vec()
    }

    fn restore(&mut self, position: &[u8]) -> Result<(), Error> {
        let bytes: [u8; 8] = position
            .try_into()
            .map_err(|_| Error::msg("a gen position is 8 bytes"))?;
        let next = u64::from_le_bytes(bytes);
        if next % self.step != self.next % self.step {
            return Err(Error::msg(format!(
                "position {next} belongs to another subtask"
            )));
        }
        self.next = next;
        Ok(())
    }
}

export_source!(Gen);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_guest_sdk::testing::SourceHarness;

    fn open(workload: &str, n: u64, subtask: u32, parallelism: u32) -> SourceHarness<Gen> {
        SourceHarness::open(
            &format!(r#"{{"workload": "{workload}", "n": {n}}}"#),
            subtask,
            parallelism,
        )
        .unwrap()
    }

    #[test]
    fn first_records_match_the_reference() {
        assert_eq!(h(11, 0), 5833679380957638813);
        assert_eq!(h(31, 0), 15517599431202433770);
        let mut s = open("stateless", 1, 0, 1);
        assert_eq!(s.poll(10).unwrap(), Poll::Ended);
        assert_eq!(s.take_output()[0].value_str(), "0,user813,323");
        let mut s = open("wordcount", 1, 0, 1);
        s.poll(10).unwrap();
        assert_eq!(
            s.take_output()[0].value_str(),
            "w9543 w8719 w2415 w7457 w7481 w8911 w870 w3777"
        );
        let mut s = open("window", 1, 0, 1);
        s.poll(10).unwrap();
        let r = &s.take_output()[0];
        assert_eq!(
            (r.key.as_slice(), r.value_str().as_str()),
            (&b"770"[..], "36")
        );
        assert!(r.timestamp.unwrap() < 10_000, "{:?}", r.timestamp);
    }

    #[test]
    fn positions_are_monotonic_and_a_restored_position_resumes_exactly() {
        let mut whole = open("stateless", 1000, 1, 3);
        let mut all = Vec::new();
        let mut positions = vec![whole.position()];
        while whole.poll(7).unwrap() == Poll::More {
            positions.push(whole.position());
            all.extend(whole.take_output());
        }
        all.extend(whole.take_output());
        assert!(
            positions
                .windows(2)
                .all(|w| u64::from_le_bytes(w[0].clone().try_into().unwrap())
                    < u64::from_le_bytes(w[1].clone().try_into().unwrap()))
        );
        assert_eq!(all.len(), 333, "subtask 1 of 3 owns i = 1, 4, ..., 997");

        // Take a position midway; a fresh subtask restored to it emits exactly the rest.
        let mut first = open("stateless", 1000, 1, 3);
        first.poll(50).unwrap();
        let emitted = first.take_output();
        let position = first.position();
        let mut resumed = open("stateless", 1000, 1, 3);
        resumed.restore(&position).unwrap();
        while resumed.poll(64).unwrap() == Poll::More {}
        let rest = resumed.take_output();
        assert_eq!([emitted, rest].concat(), all);

        assert!(resumed.restore(&[1, 2]).is_err());
        assert!(
            resumed
                .restore(&3u64.to_le_bytes())
                .unwrap_err()
                .message()
                .contains("another subtask")
        );
    }
}
