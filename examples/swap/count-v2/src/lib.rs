//! `count` v2, swapped in for v1 while the job runs: it emits JSON
//! (`{"word":"fox","count":3}`) instead of text, and keeps more per word: the running count and
//! how many of those occurrences v2 counted itself, so its state `count` has a new encoding
//! (version 2). Values v1 wrote (a `u64`) reach [`Operator::migrate`] the first time v2 uses
//! their word, and come out as a [`Tally`] that carries the count on.
//!
//! `fail_at_batch` in the operator's config (ignored by v1) makes v2 fail on that batch: the
//! swap's rollback test uses it.

use serde::{Deserialize, Serialize};
use weir_guest_sdk::prelude::*;

/// What v2 keeps per word.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// The running count, v1's included.
    pub n: u64,
    /// The occurrences v2 counted.
    pub v2: u64,
}

#[derive(Deserialize, Default)]
struct Settings {
    #[serde(default)]
    fail_at_batch: Option<u64>,
}

pub struct Count {
    tallies: ValueState<Tally>,
    fail_at_batch: Option<u64>,
    batches: u64,
}

impl Operator for Count {
    fn open(_ctx: &mut Context, config: Config) -> Result<Self, Error> {
        let settings: Settings = config.parse()?;
        Ok(Count {
            tallies: ValueState::new("count"),
            fail_at_batch: settings.fail_at_batch,
            batches: 0,
        })
    }

    fn state_versions() -> Vec<(&'static str, u32)> {
        vec![("count", 2)]
    }

    fn migrate(state: &str, from: u32, value: &[u8]) -> Result<Vec<u8>, Error> {
        match (state, from) {
            ("count", 1) => {
                let n: u64 = weir_guest_sdk::codec::decode(value)?;
                Ok(weir_guest_sdk::codec::encode(&Tally { n, v2: 0 })?)
            }
            _ => Err(Error::msg(format!(
                "no migration of `{state}` from version {from}"
            ))),
        }
    }

    fn process_batch(&mut self, ctx: &mut Context, records: &[Record<'_>]) -> Result<(), Error> {
        self.batches += 1;
        if self.fail_at_batch == Some(self.batches) {
            return Err(Error::msg(format!(
                "failing at batch {} as configured",
                self.batches
            )));
        }
        records.iter().try_for_each(|r| self.process(ctx, *r))
    }

    fn process(&mut self, ctx: &mut Context, record: Record<'_>) -> Result<(), Error> {
        let mut t = self.tallies.get(record.key)?.unwrap_or_default();
        t.n += 1;
        t.v2 += 1;
        self.tallies.set(record.key, &t)?;
        let word = record.key_str()?;
        ctx.emit(
            record.key,
            format!("{{\"word\":{word:?},\"count\":{}}}", t.n),
        );
        Ok(())
    }
}

export_operator!(Count);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_guest_sdk::testing::Harness;

    #[test]
    fn a_v1_count_migrates_into_a_tally() {
        let v1 = weir_guest_sdk::codec::encode(&41u64).unwrap();
        let v2 = Count::migrate("count", 1, &v1).unwrap();
        let t: Tally = weir_guest_sdk::codec::decode(&v2).unwrap();
        assert_eq!(t, Tally { n: 41, v2: 0 });
        assert!(Count::migrate("count", 3, &v1).is_err());
    }

    #[test]
    fn emits_json_and_counts_on() {
        let mut h = Harness::<Count>::open("{}").unwrap();
        h.process(&[Record::new("fox", "fox"), Record::new("fox", "fox")])
            .unwrap();
        assert_eq!(
            h.output_values(),
            [r#"{"word":"fox","count":1}"#, r#"{"word":"fox","count":2}"#]
        );
        assert_eq!(
            h.value::<Tally>("count", "fox"),
            Some(Tally { n: 2, v2: 2 })
        );
    }
}
