//! `top`: a process window function. When a window fires it sees all its records and emits
//! the `n` with the largest numbers (config `n`, default 3; `field`: the number's top-level
//! JSON field, without it the whole value is a decimal number), one record each:
//! `key,window_start,window_end,rank,number`.

use serde::Deserialize;
use weir_guest_sdk::prelude::*;

#[derive(Deserialize)]
struct Settings {
    #[serde(default = "three")]
    n: usize,
    field: Option<String>,
}

fn three() -> usize {
    3
}

pub struct Top {
    n: usize,
    field: Option<String>,
}

impl Top {
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

impl ProcessWindow for Top {
    fn open(config: Config) -> Result<Self, Error> {
        let s: Settings = config.parse()?;
        Ok(Top {
            n: s.n,
            field: s.field,
        })
    }

    fn process(
        &self,
        key: &[u8],
        window: Window,
        records: &[Record<'_>],
        out: &mut WindowOutput,
    ) -> Result<(), Error> {
        let mut numbers = records
            .iter()
            .map(|r| self.number(r.value))
            .collect::<Result<Vec<i64>, Error>>()?;
        numbers.sort_unstable_by(|a, b| b.cmp(a));
        let k = String::from_utf8_lossy(key);
        for (rank, n) in numbers.iter().take(self.n).enumerate() {
            out.emit(
                key,
                format!("{k},{},{},{},{n}", window.start, window.end, rank + 1),
            );
        }
        Ok(())
    }
}

export_process_window!(Top);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emits_the_largest_numbers_of_the_window_in_order() {
        let top = Top::open(Config::from_json(r#"{"n": 2}"#)).unwrap();
        let mut out = WindowOutput::default();
        let w = Window { start: 0, end: 10 };
        let records = [
            Record::new("a", "5"),
            Record::new("a", "9"),
            Record::new("a", "2"),
        ];
        top.process(b"a", w, &records, &mut out).unwrap();
        assert_eq!(out.values(), ["a,0,10,1,9", "a,0,10,2,5"]);
        assert!(
            top.process(b"a", w, &[Record::new("a", "x")], &mut out)
                .is_err()
        );
    }
}
