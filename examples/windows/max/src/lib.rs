//! `max`: a reduce window function. A window's value is the record value with the largest
//! number (config `field`: read from this top-level JSON field; without it the whole value is
//! a decimal number), emitted as it stands when the window fires.

use serde::Deserialize;
use weir_guest_sdk::prelude::*;

#[derive(Deserialize, Default)]
struct Settings {
    field: Option<String>,
}

pub struct Max {
    field: Option<String>,
}

impl Max {
    fn number(&self, value: &[u8]) -> Result<i64, Error> {
        let n = match &self.field {
            None => std::str::from_utf8(value)
                .ok()
                .and_then(|s| s.trim().parse().ok()),
            Some(field) => serde_json::from_slice::<serde_json::Value>(value)
                .ok()
                .and_then(|v| v.get(field)?.as_i64()),
        };
        n.ok_or_else(|| Error::msg(format!("no number in `{}`", String::from_utf8_lossy(value))))
    }
}

impl Reduce for Max {
    fn open(config: Config) -> Result<Self, Error> {
        let s: Settings = if config.as_json().trim().is_empty() {
            Settings::default()
        } else {
            config.parse()?
        };
        Ok(Max { field: s.field })
    }

    fn reduce(&self, value: &[u8], record: Record<'_>) -> Result<Vec<u8>, Error> {
        Ok(if self.number(record.value)? > self.number(value)? {
            record.value.to_vec()
        } else {
            value.to_vec()
        })
    }
}

export_reduce!(Max);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_value_with_the_largest_number() {
        let m = Max::open(Config::from_json(r#"{"field": "amount"}"#)).unwrap();
        let a = br#"{"amount": 5, "n": 1}"#;
        let b = r#"{"amount": 9}"#;
        assert_eq!(m.reduce(a, Record::new("k", b)).unwrap(), b.as_bytes());
        assert_eq!(
            m.reduce(b.as_bytes(), Record::new("k", "{\"amount\": 2}"))
                .unwrap(),
            b.as_bytes()
        );
        assert!(m.reduce(a, Record::new("k", "{}")).is_err());
    }
}
