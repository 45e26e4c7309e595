//! An operator that never returns from its first batch: shows that the per-call CPU limit stops a
//! looping guest.

use weir_guest_sdk::prelude::*;

pub struct Spin;

impl Operator for Spin {
    fn open(_ctx: &mut Context, _config: Config) -> Result<Self, Error> {
        Ok(Spin)
    }

    fn process(&mut self, _ctx: &mut Context, record: Record<'_>) -> Result<(), Error> {
        let mut x = record.value.len() as u64;
        loop {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

export_operator!(Spin);
