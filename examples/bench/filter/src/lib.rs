//! `filter` (stateless workload): keeps the orders whose amount is at least `min_amount`. An
//! order is `map`'s layout, `amount: u64 LE | id: u64 LE | user`: the amount is its first 8 bytes.

use serde::Deserialize;
use weir_guest_sdk::prelude::*;

#[derive(Deserialize)]
struct Settings {
    min_amount: u64,
}

pub struct Filter {
    min: u64,
}

impl Operator for Filter {
    fn open(_ctx: &mut Context, config: Config) -> Result<Self, Error> {
        Ok(Filter {
            min: config.parse::<Settings>()?.min_amount,
        })
    }

    #[inline]
    fn process(&mut self, ctx: &mut Context, record: Record<'_>) -> Result<(), Error> {
        let amount = record
            .value
            .first_chunk::<8>()
            .ok_or_else(|| Error::msg("an order starts with its 8-byte amount"))?;
        if u64::from_le_bytes(*amount) >= self.min {
            ctx.emit_record(record);
        }
        Ok(())
    }
}

export_operator!(Filter);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_guest_sdk::testing::Harness;

    #[test]
    fn keeps_amounts_at_or_above_the_minimum() {
        let mut h = Harness::<Filter>::open(r#"{"min_amount": 2500}"#).unwrap();
        let orders: Vec<Vec<u8>> = [2499u64, 2500, 9999]
            .iter()
            .map(|&a| [&a.to_le_bytes()[..], &1u64.to_le_bytes(), b"u"].concat())
            .collect();
        let records: Vec<Record<'_>> = orders.iter().map(|v| Record::new("u", v)).collect();
        h.process(&records).unwrap();
        let kept: Vec<u64> = h
            .take_output()
            .iter()
            .map(|e| u64::from_le_bytes(e.value[..8].try_into().unwrap()))
            .collect();
        assert_eq!(kept, [2500, 9999]);
        assert!(h.process(&[Record::new("u", "short")]).is_err());
    }
}
