//! An operator that panics on the record whose value is `config.panic_on` (default "boom"): shows
//! that a panicking guest fails its job cleanly, with the operator and the panic message named.

use serde::Deserialize;
use weir_guest_sdk::prelude::*;

#[derive(Deserialize)]
#[serde(default)]
struct Settings {
    panic_on: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            panic_on: "boom".into(),
        }
    }
}

pub struct Panic {
    trigger: String,
}

impl Operator for Panic {
    fn open(_ctx: &mut Context, config: Config) -> Result<Self, Error> {
        Ok(Panic {
            trigger: config.parse::<Settings>()?.panic_on,
        })
    }

    fn process(&mut self, ctx: &mut Context, record: Record<'_>) -> Result<(), Error> {
        if record.value == self.trigger.as_bytes() {
            panic!("guest gave up on record {:?}", self.trigger);
        }
        ctx.emit_record(record);
        Ok(())
    }
}

export_operator!(Panic);
