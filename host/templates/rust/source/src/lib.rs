//! `{{ident}}`: a source component. Emits `event <i>` for i in 0..count (the manifest's
//! `config.count`), keyed by i; subtask k of P emits i = k, k+P, k+2P, ...
//!
//! Its position is the next i. The host checkpoints it, so a job restored from a checkpoint
//! resumes with exactly the first record not yet emitted.

use serde::Deserialize;
use weir_guest_sdk::prelude::*;

#[derive(Deserialize)]
struct Settings {
    count: u64,
}

pub struct {{Type}} {
    count: u64,
    next: u64,
    step: u64,
}

impl Source for {{Type}} {
    fn open(_ctx: &mut Context, config: Config, split: Split) -> Result<Self, Error> {
        let settings: Settings = config.parse()?;
        Ok({{Type}} {
            count: settings.count,
            next: u64::from(split.subtask),
            step: u64::from(split.parallelism),
        })
    }

    fn poll(&mut self, ctx: &mut Context, max_records: u32) -> Result<Poll, Error> {
        for _ in 0..max_records {
            if self.next >= self.count {
                break;
            }
            let i = self.next;
            ctx.emit(i.to_string(), format!("event {i}"));
            self.next += self.step;
        }
        Ok(if self.next >= self.count {
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
            .map_err(|_| Error::msg("a position is 8 bytes"))?;
        self.next = u64::from_le_bytes(bytes);
        Ok(())
    }
}

export_source!({{Type}});

/// Native tests: the source under the SDK's harness, no WASM involved (`cargo test`, which
/// `weir test` runs too).
#[cfg(test)]
mod tests {
    use super::*;
    use weir_guest_sdk::testing::SourceHarness;

    #[test]
    fn resumes_from_its_position() {
        let mut s = SourceHarness::<{{Type}}>::open(r#"{"count": 4}"#, 0, 1).unwrap();
        assert_eq!(s.poll(2).unwrap(), Poll::More);
        let position = s.position();
        let mut t = SourceHarness::<{{Type}}>::open(r#"{"count": 4}"#, 0, 1).unwrap();
        t.restore(&position).unwrap();
        assert_eq!(t.poll(10).unwrap(), Poll::Ended);
        let values: Vec<String> = t.take_output().iter().map(|e| e.value_str()).collect();
        assert_eq!(values, ["event 2", "event 3"]);
    }
}
