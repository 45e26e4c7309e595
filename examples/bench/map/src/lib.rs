//! `map` (stateless workload): parses `"id,user,amount"` into `(id, user, amount)`, keyed by
//! user, in a fixed binary layout that `filter` and `tally` read without a decoder:
//!
//! ```text
//! amount: u64 LE | id: u64 LE | user: the rest (UTF-8)
//! ```
//!
//! (Values encoded with `emit_bin` (postcard, through serde) cost several times as much per
//! field inside a component: a varint loop per number and a generic call per field, each way.)

use weir_guest_sdk::prelude::*;
use weir_guest_sdk::text;

/// The parsed record, borrowing the user from the line.
pub type Order<'a> = (u64, &'a str, u64);

pub struct Map;

/// Parses `id,user,amount` with the SDK's word-at-a-time helpers: the line is the whole record,
/// so this is the operator's cost (`str::split` and `str::parse` spend several times as much).
pub fn parse(line: &[u8]) -> Result<Order<'_>, Error> {
    parse_fields(line).ok_or_else(|| {
        Error::msg(format!(
            "`{}` is not id,user,amount",
            String::from_utf8_lossy(line)
        ))
    })
}

fn parse_fields(line: &[u8]) -> Option<Order<'_>> {
    let (id, rest) = text::parse_u64(line)?;
    let rest = rest.strip_prefix(b",")?;
    let comma = text::find_byte(rest, b',')?;
    let user = text::as_str(&rest[..comma])?;
    match text::parse_u64(&rest[comma + 1..])? {
        (amount, []) => Some((id, user, amount)),
        _ => None,
    }
}

impl Operator for Map {
    fn open(_ctx: &mut Context, _config: Config) -> Result<Self, Error> {
        Ok(Map)
    }

    #[inline]
    fn process(&mut self, ctx: &mut Context, record: Record<'_>) -> Result<(), Error> {
        let (id, user, amount) = parse(record.value)?;
        ctx.emit_with(user, None, |v| {
            v.extend(&amount.to_le_bytes());
            v.extend(&id.to_le_bytes());
            v.extend(user.as_bytes());
        });
        Ok(())
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
            out[0].value,
            [&323u64.to_le_bytes()[..], &0u64.to_le_bytes(), b"user813"].concat()
        );
        assert!(
            h.process(&[Record::new("", "0,user813")])
                .unwrap_err()
                .message()
                .contains("not id,user,amount")
        );
        for bad in [
            "x,user813,1",
            "1,user813,",
            ",u,1",
            "1,u,2x",
            "1,u,99999999999999999999",
        ] {
            assert!(h.process(&[Record::new("", bad)]).is_err(), "{bad}");
        }
        assert_eq!(
            parse(b"18446744073709551615,u,7").unwrap(),
            (u64::MAX, "u", 7)
        );
    }
}
