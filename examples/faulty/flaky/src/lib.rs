//! An operator that fails once: on the first attempt of its job (restart attempt 0) it returns
//! an error when it reaches record `fail_at` of its subtask; after a restart it runs through.
//! It counts the records it has seen in a private field, kept across restarts through
//! checkpoints (`snapshot`/`restore`), and emits `seen <n>` to its side output `seen` at the
//! end: with exactly-once, the counts of all subtasks add up to the input's size.

use serde::Deserialize;
use weir_guest_sdk::prelude::*;

#[derive(Deserialize)]
struct Settings {
    fail_at: u64,
}

pub struct Flaky {
    fail_at: u64,
    attempt: u32,
    seen: u64,
}

impl Operator for Flaky {
    fn open(ctx: &mut Context, config: Config) -> Result<Self, Error> {
        Ok(Flaky {
            fail_at: config.parse::<Settings>()?.fail_at,
            attempt: ctx.attempt(),
            seen: 0,
        })
    }

    fn process(&mut self, ctx: &mut Context, record: Record<'_>) -> Result<(), Error> {
        self.seen += 1;
        if self.attempt == 0 && self.seen == self.fail_at {
            return Err(Error::msg(format!(
                "failing on purpose at record {} of attempt 0",
                self.seen
            )));
        }
        ctx.emit_record(record);
        Ok(())
    }

    fn snapshot(&mut self) -> Result<Vec<u8>, Error> {
        Ok(self.seen.to_le_bytes().to_vec())
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), Error> {
        let seen: [u8; 8] = state
            .try_into()
            .map_err(|_| Error::msg("a snapshot of 8 bytes"))?;
        // After a change of parallelism a subtask may take over several counts: they add up.
        self.seen += u64::from_le_bytes(seen);
        Ok(())
    }

    fn close(&mut self, ctx: &mut Context) -> Result<(), Error> {
        ctx.emit_to("seen", "", format!("seen {}", self.seen));
        Ok(())
    }
}

export_operator!(Flaky);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_guest_sdk::testing::Harness;

    #[test]
    fn fails_on_attempt_0_only_and_keeps_its_count_through_a_restore() {
        let r = Record::new("", "x");
        let mut first = Harness::<Flaky>::open_attempt(r#"{"fail_at": 3}"#, 0).unwrap();
        first.process(&[r, r]).unwrap();
        let state = first.snapshot().unwrap();
        assert!(first.process(&[r]).is_err());
        let mut second = Harness::<Flaky>::open_attempt(r#"{"fail_at": 3}"#, 1).unwrap();
        second.restore(&state).unwrap();
        second.process(&[r, r, r]).unwrap();
        second.close().unwrap();
        let out = second.take_output();
        assert_eq!(out.last().unwrap().value_str(), "seen 5");
    }
}
