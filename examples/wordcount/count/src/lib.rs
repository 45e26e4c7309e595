//! `count`: the running count of each key, kept in keyed state; emits `<key> <count so far>` for
//! every record, as Flink's keyed word count does.

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
        let n = self.counts.get(record.key)?.unwrap_or(0) + 1;
        self.counts.set(record.key, &n)?;
        ctx.emit(record.key, format!("{} {n}", record.key_str()?));
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
