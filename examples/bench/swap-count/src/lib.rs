//! `swap-count` (the swap benchmark's v1): a count per key in state `count` as a `u64`; timed
//! records go on to the latency sink (see `counter`).

mod counter;

use weir_guest_sdk::prelude::*;

impl counter::Counted for u64 {
    fn bump(&mut self) {
        *self += 1;
    }
}

pub struct SwapCount {
    counts: ValueState<u64>,
}

impl Operator for SwapCount {
    fn open(_ctx: &mut Context, _config: Config) -> Result<Self, Error> {
        Ok(SwapCount {
            counts: ValueState::new("count"),
        })
    }

    fn process(&mut self, ctx: &mut Context, record: Record<'_>) -> Result<(), Error> {
        self.process_batch(ctx, &[record])
    }

    fn process_batch(&mut self, ctx: &mut Context, records: &[Record<'_>]) -> Result<(), Error> {
        counter::count(&self.counts, ctx, records)
    }
}

export_operator!(SwapCount);
