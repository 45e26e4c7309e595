//! What both versions of the swap benchmark's count do, over their own state type: count per
//! key, once per batch (`get_many`/`set_many`), and pass timed records on (their value is when
//! they were made, at least [`TIMED`] µs since the epoch) to the latency sink; the bulk
//! records, which load the keys, only count.

use serde::{Serialize, de::DeserializeOwned};
use weir_guest_sdk::keys::Distinct;
use weir_guest_sdk::prelude::*;
use weir_guest_sdk::text;

/// Values from this on are times (µs since the epoch: after 2001); smaller ones are indices.
pub const TIMED: u64 = 1_000_000_000_000_000;

/// A count kept per key.
pub trait Counted: Serialize + DeserializeOwned + Default {
    fn bump(&mut self);
}

/// Counts records per key in value state `count`.
pub fn count<T: Counted>(
    state: &ValueState<T>,
    ctx: &mut Context,
    records: &[Record<'_>],
) -> Result<(), Error> {
    let distinct = Distinct::of(records);
    let mut counts: Vec<T> = (state.get_many(distinct.keys())?.into_iter())
        .map(Option::unwrap_or_default)
        .collect();
    for (r, &i) in records.iter().zip(distinct.positions()) {
        counts[i as usize].bump();
        if text::parse_u64(r.value).is_some_and(|(v, _)| v >= TIMED) {
            ctx.emit_record(*r);
        }
    }
    let updates: Vec<(&[u8], Option<T>)> = (distinct.keys().iter().copied())
        .zip(counts.into_iter().map(Some))
        .collect();
    state.set_many(&updates)?;
    Ok(())
}
