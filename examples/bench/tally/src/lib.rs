//! `tally`: counts the records it sees and sums a number in each, and emits `count,sum` when the
//! input ends: what the reference workloads verify at the sink.
//!
//! Config `reads`: `"order"` sums the amount of `map`'s orders (`amount: u64 LE | id | user`);
//! `"last-number"` sums the last number of a text value, after its last space or comma
//! (`"<word> <count>"`, or a window's `key,start,end,sum,count`).

use serde::Deserialize;
use weir_guest_sdk::prelude::*;
use weir_guest_sdk::text;

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

/// The decimal number (a u64) after the last space or comma of `text`, or the whole of it
/// without either.
fn last_number(text: &[u8]) -> Option<u64> {
    let after = |b| text::rfind_byte(text, b).map_or(0, |i| i + 1);
    let start = after(b' ').max(after(b','));
    match text::parse_u64(&text[start..])? {
        (n, []) => Some(n),
        _ => None,
    }
}

/// The amount of one of `map`'s orders: its first 8 bytes.
fn order_amount(value: &[u8]) -> Result<u64, Error> {
    value
        .first_chunk::<8>()
        .map(|amount| u64::from_le_bytes(*amount))
        .ok_or_else(|| Error::msg("an order starts with its 8-byte amount"))
}

#[cold]
fn not_a_number(value: &[u8]) -> Error {
    Error::msg(format!(
        "`{}` does not end in a number",
        String::from_utf8_lossy(value)
    ))
}

impl Operator for Tally {
    fn open(_ctx: &mut Context, config: Config) -> Result<Self, Error> {
        Ok(Tally {
            reads: config.parse::<Settings>()?.reads,
            count: 0,
            sum: 0,
        })
    }

    fn process(&mut self, ctx: &mut Context, record: Record<'_>) -> Result<(), Error> {
        self.process_batch(ctx, &[record])
    }

    /// One tight loop per batch, the kind of value decided once: a call per record would cost
    /// more than reading the record.
    fn process_batch(&mut self, _ctx: &mut Context, records: &[Record<'_>]) -> Result<(), Error> {
        let (mut count, mut sum) = (self.count, self.sum);
        match self.reads {
            Reads::Order => {
                for r in records {
                    sum += order_amount(r.value)?;
                    count += 1;
                }
            }
            Reads::LastNumber => {
                for r in records {
                    sum += last_number(r.value).ok_or_else(|| not_a_number(r.value))?;
                    count += 1;
                }
            }
        }
        (self.count, self.sum) = (count, sum);
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
        for bad in ["a", "a ", "a 1x", "a 99999999999999999999"] {
            assert!(h.process(&[Record::new("a", bad)]).is_err(), "{bad}");
        }
        assert_eq!(last_number(b"17"), Some(17));
        assert_eq!(last_number(b"770,0,10000,36,1"), Some(1));
    }

    #[test]
    fn counts_and_sums_order_amounts() {
        let mut h = Harness::<Tally>::open(r#"{"reads": "order"}"#).unwrap();
        let orders: Vec<Vec<u8>> = [2500u64, 9999]
            .iter()
            .map(|a| [&a.to_le_bytes()[..], &7u64.to_le_bytes(), b"user7"].concat())
            .collect();
        let records: Vec<Record<'_>> = orders.iter().map(|v| Record::new("user7", v)).collect();
        h.process(&records).unwrap();
        assert!(h.process(&[Record::new("u", "short")]).is_err());
        h.close().unwrap();
        assert_eq!(h.output_values(), ["2,12499"]);
    }
}
