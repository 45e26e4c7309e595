//! `swap-count-v2` (the swap benchmark's v2): the same count, its state `count` in a new
//! encoding (version 2: the count and how many of it v2 counted), each of v1's values migrated
//! the first time its key comes again.

#[path = "../../swap-count/src/counter.rs"]
mod counter;

use serde::{Deserialize, Serialize};
use weir_guest_sdk::prelude::*;

#[derive(Default, Serialize, Deserialize)]
struct Tally {
    n: u64,
    v2: u64,
}

impl counter::Counted for Tally {
    fn bump(&mut self) {
        self.n += 1;
        self.v2 += 1;
    }
}

pub struct SwapCountV2 {
    tallies: ValueState<Tally>,
}

impl Operator for SwapCountV2 {
    fn open(_ctx: &mut Context, _config: Config) -> Result<Self, Error> {
        Ok(SwapCountV2 {
            tallies: ValueState::new("count"),
        })
    }

    fn state_versions() -> Vec<(&'static str, u32)> {
        vec![("count", 2)]
    }

    fn migrate(state: &str, from: u32, value: &[u8]) -> Result<Vec<u8>, Error> {
        if (state, from) != ("count", 1) {
            return Err(Error::msg(format!("no migration of `{state}` from version {from}")));
        }
        let n: u64 = weir_guest_sdk::codec::decode(value)?;
        weir_guest_sdk::codec::encode(&Tally { n, v2: 0 })
    }

    fn process(&mut self, ctx: &mut Context, record: Record<'_>) -> Result<(), Error> {
        self.process_batch(ctx, &[record])
    }

    fn process_batch(&mut self, ctx: &mut Context, records: &[Record<'_>]) -> Result<(), Error> {
        counter::count(&self.tallies, ctx, records)
    }
}

export_operator!(SwapCountV2);
