//! `swap-key` (the swap benchmark): keys each record by a number below `keys` (config), taken
//! from its value (decimal): a bulk record's value is its index, which is its key; a timed
//! record's value is when it was made (µs since the epoch), and its key that modulo `keys`, so
//! that timed records keep hitting the keys the bulk records loaded. The value goes on as is.

use serde::Deserialize;
use weir_guest_sdk::prelude::*;
use weir_guest_sdk::text;

#[derive(Deserialize)]
struct Settings {
    keys: u64,
}

pub struct SwapKey {
    keys: u64,
}

impl Operator for SwapKey {
    fn open(_ctx: &mut Context, config: Config) -> Result<Self, Error> {
        let Settings { keys } = config.parse()?;
        if keys == 0 {
            return Err(Error::msg("keys must be at least 1"));
        }
        Ok(SwapKey { keys })
    }

    fn process(&mut self, ctx: &mut Context, record: Record<'_>) -> Result<(), Error> {
        let v = match text::parse_u64(record.value) {
            Some((v, [])) => v,
            _ => return Err(Error::msg("a value is not a decimal number")),
        };
        ctx.emit_with((v % self.keys).to_string(), None, |out| out.extend(record.value));
        Ok(())
    }
}

export_operator!(SwapKey);
