//! `filter` (stateless workload): keeps the orders whose amount is at least `min_amount`.

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

    fn process(&mut self, ctx: &mut Context, record: Record<'_>) -> Result<(), Error> {
        // The user decodes as bytes: a filter on the amount need not check that it is UTF-8.
        let (_, _, amount): (u64, &[u8], u64) = record.value_bin()?;
        if amount >= self.min {
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
            .map(|&a| postcard::to_allocvec(&(1u64, "u".to_string(), a)).unwrap())
            .collect();
        let records: Vec<Record<'_>> = orders.iter().map(|v| Record::new("u", v)).collect();
        h.process(&records).unwrap();
        let kept: Vec<u64> = h
            .take_output()
            .iter()
            .map(|e| {
                postcard::from_bytes::<(u64, String, u64)>(&e.value)
                    .unwrap()
                    .2
            })
            .collect();
        assert_eq!(kept, [2500, 9999]);
    }
}
