//! `map` (stateless workload): parses `"id,user,amount"` into `(id, user, amount)`, emitted in
//! the compact binary encoding and keyed by user.

use weir_guest_sdk::prelude::*;

/// The parsed record, borrowing the user from the line.
pub type Order<'a> = (u64, &'a str, u64);

pub struct Map;

pub fn parse(line: &str) -> Result<Order<'_>, Error> {
    let mut parts = line.split(',');
    let mut next = || {
        parts
            .next()
            .ok_or_else(|| Error::msg(format!("`{line}` is not id,user,amount")))
    };
    let id = next()?.parse()?;
    let user = next()?;
    let amount = next()?.parse()?;
    Ok((id, user, amount))
}

impl Operator for Map {
    fn open(_ctx: &mut Context, _config: Config) -> Result<Self, Error> {
        Ok(Map)
    }

    fn process(&mut self, ctx: &mut Context, record: Record<'_>) -> Result<(), Error> {
        let order = parse(record.value_str()?)?;
        ctx.emit_bin(order.1, &order)
    }
}

export_operator!(Map);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_guest_sdk::testing::Harness;

    #[test]
    fn parses_orders_and_refuses_malformed_lines() {
        let mut h = Harness::<Map>::open("{}").unwrap();
        h.process(&[Record::new("", "0,user813,323")]).unwrap();
        let out = h.take_output();
        assert_eq!(out[0].key, b"user813");
        assert_eq!(
            postcard::from_bytes::<Order>(&out[0].value).unwrap(),
            (0, "user813", 323)
        );
        assert!(
            h.process(&[Record::new("", "0,user813")])
                .unwrap_err()
                .message()
                .contains("not id,user,amount")
        );
        assert!(h.process(&[Record::new("", "x,user813,1")]).is_err());
    }
}
