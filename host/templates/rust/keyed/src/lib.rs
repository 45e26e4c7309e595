//! `{{ident}}`: a keyed operator. Counts the records of each key (the `user` field, which the
//! manifest's source makes the key) in keyed state, and emits `<key> <count so far>`.
//!
//! Keyed state is held by the host, per key, checkpointed with the job and moved with its key
//! when the job is rescaled.

use weir_guest_sdk::prelude::*;

pub struct {{Type}} {
    counts: ValueState<u64>,
}

impl Operator for {{Type}} {
    fn open(_ctx: &mut Context, _config: Config) -> Result<Self, Error> {
        Ok({{Type}} {
            counts: ValueState::new("count"),
        })
    }

    fn process(&mut self, ctx: &mut Context, record: Record<'_>) -> Result<(), Error> {
        let n = self.counts.get(record.key)?.unwrap_or(0) + 1;
        self.counts.set(record.key, &n)?;
        ctx.emit(record.key, format!("{} {n}", record.key_str()?));
        Ok(())
    }
}

export_operator!({{Type}});

/// Native tests: the operator under the SDK's harness, no WASM involved (`cargo test`, which
/// `weir test` runs too).
#[cfg(test)]
mod tests {
    use super::*;
    use weir_guest_sdk::testing::Harness;

    #[test]
    fn counts_per_key() {
        let mut h = Harness::<{{Type}}>::open("{}").unwrap();
        h.process(&[
            Record::new("ana", "{}"),
            Record::new("bo", "{}"),
            Record::new("ana", "{}"),
        ])
        .unwrap();
        assert_eq!(h.output_values(), ["ana 1", "bo 1", "ana 2"]);
        assert_eq!(h.value::<u64>("count", "ana"), Some(2));
    }
}
