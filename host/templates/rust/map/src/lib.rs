//! `{{ident}}`: a map operator. Every input line, in upper case, followed by the configured
//! `suffix` (the manifest's `config` table).

use serde::Deserialize;
use weir_guest_sdk::prelude::*;

#[derive(Deserialize)]
struct Settings {
    #[serde(default)]
    suffix: String,
}

pub struct {{Type}} {
    suffix: String,
}

impl Operator for {{Type}} {
    fn open(_ctx: &mut Context, config: Config) -> Result<Self, Error> {
        let settings: Settings = config.parse()?;
        Ok({{Type}} {
            suffix: settings.suffix,
        })
    }

    fn process(&mut self, ctx: &mut Context, record: Record<'_>) -> Result<(), Error> {
        let line = record.value_str()?.to_uppercase();
        ctx.emit(record.key, format!("{line}{}", self.suffix));
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
    fn upper_cases_each_line_and_adds_the_suffix() {
        let mut h = Harness::<{{Type}}>::open(r#"{"suffix": "?"}"#).unwrap();
        h.process(&[Record::new("", "hello"), Record::new("", "wasm")])
            .unwrap();
        assert_eq!(h.output_values(), ["HELLO?", "WASM?"]);
    }
}
