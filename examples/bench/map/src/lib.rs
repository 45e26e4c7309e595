//! `map` (stateless workload): parses `"id,user,amount"` into `(id, user, amount)`, emitted in
//! the compact binary encoding and keyed by user.

use weir_guest_sdk::prelude::*;

/// The parsed record, borrowing the user from the line.
pub type Order<'a> = (u64, &'a str, u64);

pub struct Map;

/// Parses `id,user,amount`, byte by byte: the line is the whole record, so this is the
/// operator's cost (`str::split` and `str::parse` spend several times as much).
pub fn parse(line: &[u8]) -> Result<Order<'_>, Error> {
    let malformed = || {
        Error::msg(format!(
            "`{}` is not id,user,amount",
            String::from_utf8_lossy(line)
        ))
    };
    let (id, rest) = number(line).ok_or_else(malformed)?;
    let rest = rest.strip_prefix(b",").ok_or_else(malformed)?;
    let comma = rest.iter().position(|&b| b == b',').ok_or_else(malformed)?;
    let user = std::str::from_utf8(&rest[..comma]).map_err(|_| malformed())?;
    match number(&rest[comma + 1..]) {
        Some((amount, [])) => Ok((id, user, amount)),
        _ => Err(malformed()),
    }
}

/// The decimal u64 at the start of `text` (one pass: digits are read until the first
/// non-digit), and what follows it.
fn number(text: &[u8]) -> Option<(u64, &[u8])> {
    let mut n = 0u64;
    for (i, &b) in text.iter().enumerate() {
        let d = u64::from(b.wrapping_sub(b'0'));
        if d > 9 {
            return (i > 0).then_some((n, &text[i..]));
        }
        // 19 digits cannot overflow, the 20th can. (A checked multiply on every digit would
        // cost a 128-bit multiply call on wasm32.)
        n = if i < 19 {
            n * 10 + d
        } else {
            n.checked_mul(10)?.checked_add(d)?
        };
    }
    (!text.is_empty()).then_some((n, &[]))
}

impl Operator for Map {
    fn open(_ctx: &mut Context, _config: Config) -> Result<Self, Error> {
        Ok(Map)
    }

    fn process(&mut self, ctx: &mut Context, record: Record<'_>) -> Result<(), Error> {
        let order = parse(record.value)?;
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
