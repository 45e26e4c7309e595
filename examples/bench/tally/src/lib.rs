//! `tally`: counts the records it sees and sums a number in each, and emits `count,sum` when the
//! input ends: what the reference workloads verify at the sink.
//!
//! Config `reads`: `"order"` sums the amount of `(id, user, amount)` orders (binary encoding);
//! `"last-number"` sums the last space-separated number of a text value (`"<word> <count>"`).

use serde::Deserialize;
use weir_guest_sdk::prelude::*;

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum Reads {
    Order,
    LastNumber,
}

#[derive(Deserialize)]
struct Settings {
    reads: Reads,
}

pub struct Tally {
    reads: Reads,
    count: u64,
    sum: u64,
}

impl Operator for Tally {
    fn open(_ctx: &mut Context, config: Config) -> Result<Self, Error> {
        Ok(Tally {
            reads: config.parse::<Settings>()?.reads,
            count: 0,
            sum: 0,
        })
    }

    fn process(&mut self, _ctx: &mut Context, record: Record<'_>) -> Result<(), Error> {
        let n = match self.reads {
            Reads::Order => record.value_bin::<(u64, &str, u64)>()?.2,
            Reads::LastNumber => {
                let text = record.value_str()?;
                let last = text.rsplit(' ').next().unwrap_or(text);
                last.parse()
                    .map_err(|e| Error::msg(format!("`{text}` does not end in a number: {e}")))?
            }
        };
        self.count += 1;
        self.sum += n;
        Ok(())
    }

    fn close(&mut self, ctx: &mut Context) -> Result<(), Error> {
        ctx.emit("", format!("{},{}", self.count, self.sum));
        Ok(())
    }
}

export_operator!(Tally);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_guest_sdk::testing::Harness;

    #[test]
    fn counts_and_sums_word_counts() {
        let mut h = Harness::<Tally>::open(r#"{"reads": "last-number"}"#).unwrap();
        h.process(&[
            Record::new("a", "a 1"),
            Record::new("b", "b 1"),
            Record::new("a", "a 2"),
        ])
        .unwrap();
        h.close().unwrap();
        assert_eq!(h.output_values(), ["3,4"]);
        assert!(Harness::<Tally>::open(r#"{"reads": "nothing"}"#).is_err());
    }
}
