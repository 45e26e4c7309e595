//! A faulty new version of the swap example's `count`: it declares state `count` at version 2
//! (the same `u64` as v1's) and its migration hook panics on every count that is a multiple of
//! 13. Swapped in for v1, it fails on the first such word it meets, and the swap is rolled back.

use weir_guest_sdk::prelude::*;

pub struct BadMigration {
    counts: ValueState<u64>,
}

impl Operator for BadMigration {
    fn open(_ctx: &mut Context, _config: Config) -> Result<Self, Error> {
        Ok(BadMigration {
            counts: ValueState::new("count"),
        })
    }

    fn state_versions() -> Vec<(&'static str, u32)> {
        vec![("count", 2)]
    }

    fn migrate(_state: &str, _from: u32, value: &[u8]) -> Result<Vec<u8>, Error> {
        let n: u64 = weir_guest_sdk::codec::decode(value)?;
        assert!(n % 13 != 0, "unlucky count {n}");
        Ok(value.to_vec())
    }

    fn process(&mut self, ctx: &mut Context, record: Record<'_>) -> Result<(), Error> {
        let n = self.counts.get(record.key)?.unwrap_or(0) + 1;
        self.counts.set(record.key, &n)?;
        ctx.emit(record.key, format!("{} {n}", record.key_str()?));
        Ok(())
    }
}

export_operator!(BadMigration);
