//! `sum-count`: an aggregate window function. Each window's accumulator is the sum and the
//! count of its records' numbers; when the window fires it emits the line
//! `key,window_start,window_end,sum,count` (what the reference `window` workload expects).
//!
//! Config `field`: read the number from this top-level field of a JSON value; without it the
//! whole value is a decimal number.

use serde::Deserialize;
use weir_guest_sdk::prelude::*;
use weir_guest_sdk::text;

#[derive(Deserialize, Default)]
struct Settings {
    field: Option<String>,
}

pub struct SumCount {
    field: Option<String>,
}

impl SumCount {
    fn number(&self, record: Record<'_>) -> Result<u64, Error> {
        match &self.field {
            None => match text::parse_u64(record.value) {
                Some((n, [])) => Ok(n),
                _ => Err(Error::msg(format!(
                    "`{}` is not a number",
                    String::from_utf8_lossy(record.value)
                ))),
            },
            Some(field) => {
                let v: serde_json::Value = record.value_json()?;
                v.get(field)
                    .and_then(serde_json::Value::as_u64)
                    .ok_or_else(|| Error::msg(format!("`{field}` is not a number in {v}")))
            }
        }
    }
}

impl Aggregate for SumCount {
    /// (sum, count)
    type Acc = (u64, u64);

    fn open(config: Config) -> Result<Self, Error> {
        let s: Settings = if config.as_json().trim().is_empty() {
            Settings::default()
        } else {
            config.parse()?
        };
        Ok(SumCount { field: s.field })
    }

    fn create(&self) -> Self::Acc {
        (0, 0)
    }

    fn add(&self, acc: &mut Self::Acc, record: Record<'_>) -> Result<(), Error> {
        acc.0 += self.number(record)?;
        acc.1 += 1;
        Ok(())
    }

    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) -> Result<(), Error> {
        acc.0 += other.0;
        acc.1 += other.1;
        Ok(())
    }

    fn result(&self, key: &[u8], window: Window, acc: &Self::Acc) -> Result<Vec<u8>, Error> {
        let mut line = Vec::with_capacity(key.len() + 48);
        line.extend_from_slice(key);
        for n in [window.start, window.end] {
            line.push(b',');
            line.extend_from_slice(n.to_string().as_bytes());
        }
        for n in [acc.0, acc.1] {
            line.push(b',');
            text::push_u64(&mut line, n);
        }
        Ok(line)
    }
}

export_aggregate!(SumCount);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_counts_and_formats_the_reference_line() {
        let f = SumCount::open(Config::from_json("{}")).unwrap();
        let mut acc = f.create();
        f.add(&mut acc, Record::new("770", "36")).unwrap();
        let w = Window {
            start: 0,
            end: 10_000,
        };
        assert_eq!(f.result(b"770", w, &acc).unwrap(), b"770,0,10000,36,1");
        assert!(f.add(&mut acc, Record::new("770", "x")).is_err());

        let j = SumCount::open(Config::from_json(r#"{"field": "amount"}"#)).unwrap();
        let mut acc = j.create();
        j.add(&mut acc, Record::new("u", r#"{"amount": 5}"#))
            .unwrap();
        let mut other = j.create();
        j.add(&mut other, Record::new("u", r#"{"amount": 7}"#))
            .unwrap();
        j.merge(&mut acc, other).unwrap();
        assert_eq!(acc, (12, 2));
    }
}
