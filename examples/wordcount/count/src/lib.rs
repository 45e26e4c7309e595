//! `count`: the running count of each key, kept in keyed state; emits `<key> <count so far>` for
//! every record, as Flink's keyed word count does.
//!
//! State is read and written once per batch (`get_many`/`set_many`), not per record: each state
//! call crosses the WASM boundary, and a batch repeats many keys.

use weir_guest_sdk::keys::Distinct;
use weir_guest_sdk::prelude::*;

pub struct Count {
    counts: ValueState<u64>,
}

impl Operator for Count {
    fn open(_ctx: &mut Context, _config: Config) -> Result<Self, Error> {
        Ok(Count {
            counts: ValueState::new("count"),
        })
    }

    fn process(&mut self, ctx: &mut Context, record: Record<'_>) -> Result<(), Error> {
        self.process_batch(ctx, &[record])
    }

    fn process_batch(&mut self, ctx: &mut Context, records: &[Record<'_>]) -> Result<(), Error> {
        // The batch's distinct keys, and each record's position among them.
        let distinct = Distinct::of(records);
        let mut counts: Vec<u64> = self
            .counts
            .get_many(distinct.keys())?
            .into_iter()
            .map(|c| c.unwrap_or(0))
            .collect();
        for (r, &i) in records.iter().zip(distinct.positions()) {
            let count = &mut counts[i as usize];
            *count += 1;
            let count = *count;
            ctx.emit_with(r.key, None, |line| {
                line.extend(r.key);
                line.push(b' ');
                line.push_u64(count);
            });
        }
        let updates: Vec<(&[u8], Option<u64>)> = distinct
            .keys()
            .iter()
            .copied()
            .zip(counts)
            .map(|(k, c)| (k, Some(c)))
            .collect();
        self.counts.set_many(&updates)?;
        Ok(())
    }
}

export_operator!(Count);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_guest_sdk::testing::Harness;

    #[test]
    fn counts_per_key_across_batches() {
        let mut h = Harness::<Count>::open("{}").unwrap();
        h.process(&[
            Record::new("a", "a"),
            Record::new("b", "b"),
            Record::new("a", "a"),
        ])
        .unwrap();
        h.process(&[Record::new("a", "a")]).unwrap();
        h.close().unwrap();
        assert_eq!(h.output_values(), ["a 1", "b 1", "a 2", "a 3"]);
        assert_eq!(h.value::<u64>("count", "a"), Some(3));
        assert_eq!(h.value::<u64>("count", "c"), None);
    }
}
