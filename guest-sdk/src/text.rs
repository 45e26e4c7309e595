//! Decimal numbers and delimiters in byte strings, without a loop per byte.
//!
//! Inside a component every loop iteration pays the runtime's interruption check besides its own
//! work, so the byte-at-a-time loops of `str::parse`, `itoa` or `iter().position` cost several
//! times what they cost natively. These helpers read and write eight bytes at a time in one
//! 64-bit word (SWAR), which is what a WASM guest does fastest. They are plain Rust and give the
//! same answers natively, where the tests check them against the standard library.

/// Each byte of a word set to `b` (the other building block for working on 8 bytes at once).
///
/// ```
/// assert_eq!(weir_guest_sdk::text::splat(0x80), 0x8080_8080_8080_8080);
/// ```
pub const fn splat(b: u8) -> u64 {
    0x0101_0101_0101_0101 * b as u64
}

/// The first `min(8, bytes.len())` bytes as a little-endian word (byte 0 lowest), with the
/// missing high bytes set to `fill`: the building block for classifying eight bytes at a time.
/// Fixed-size loads only: no copy call, no loop.
///
/// ```
/// use weir_guest_sdk::text::load;
/// assert_eq!(load(b"ab", b' '), u64::from_le_bytes(*b"ab      "));
/// ```
#[inline(always)]
pub fn load(bytes: &[u8], fill: u8) -> u64 {
    let n = bytes.len();
    if n >= 8 {
        return u64::from_le_bytes(bytes[..8].try_into().unwrap());
    }
    let word = if n >= 4 {
        let lo = u64::from(u32::from_le_bytes(bytes[..4].try_into().unwrap()));
        let hi = u64::from(u32::from_le_bytes(bytes[n - 4..n].try_into().unwrap()));
        // The two loads overlap when n < 8; overlapping bytes are equal, so OR keeps them.
        lo | hi << (8 * (n - 4))
    } else if n > 0 {
        u64::from(bytes[0])
            | u64::from(bytes[n / 2]) << (8 * (n / 2))
            | u64::from(bytes[n - 1]) << (8 * (n - 1))
    } else {
        0
    };
    // n < 8 here, so the shift is less than 64.
    word | (splat(fill) << (8 * n))
}

/// A word with the high bit of each byte set where `word ^ 0x30..` is not a digit 0-9 (so
/// where the byte is not an ASCII digit), with no carry between bytes.
#[inline(always)]
fn non_digits(word: u64) -> u64 {
    let t = word ^ splat(b'0');
    (((t & splat(0x7F)) + splat(0x76)) | t) & splat(0x80)
}

/// The value of eight digits (byte values 0-9, most significant in byte 0).
#[inline(always)]
fn eight_digits(t: u64) -> u64 {
    // Each step merges neighbouring lanes (a * 10^k + b); the products' overflow past bit 63
    // only ever holds lanes that are masked off or shifted out.
    let t = t.wrapping_mul(10 << 8 | 1) >> 8;
    let t = (t & 0x00FF_00FF_00FF_00FF).wrapping_mul(100 << 16 | 1) >> 16;
    (t & 0x0000_FFFF_0000_FFFF).wrapping_mul(10_000 << 32 | 1) >> 32
}

const POW10: [u64; 9] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
];

/// The decimal number at the start of `text` and what follows it, like
/// `str::parse::<u64>` on the leading digits: `None` when `text` does not start with a digit or
/// the number does not fit in a `u64`. No sign and no leading `+` are accepted.
///
/// ```
/// use weir_guest_sdk::text::parse_u64;
/// assert_eq!(parse_u64(b"42,user7"), Some((42, &b",user7"[..])));
/// assert_eq!(parse_u64(b"x"), None);
/// ```
#[inline(always)]
pub fn parse_u64(text: &[u8]) -> Option<(u64, &[u8])> {
    // Numbers of up to 7 digits, the usual case, take one word and no loop.
    let (value, k) = leading_digits(text);
    match k {
        0 => None,
        8 => parse_long(text),
        _ => Some((value, &text[k..])),
    }
}

/// The value and count (up to 8) of the digits at the start of `text`.
#[inline(always)]
fn leading_digits(text: &[u8]) -> (u64, usize) {
    let word = load(text, 0xFF);
    let mask = non_digits(word);
    let k = if mask == 0 {
        8
    } else {
        mask.trailing_zeros() as usize / 8
    };
    if k == 0 {
        return (0, 0);
    }
    // The k digits moved to the top bytes (what followed them shifted out): the zero bytes
    // below are leading zeros.
    (eight_digits((word ^ splat(b'0')) << (8 * (8 - k))), k)
}

/// [`parse_u64`] for numbers of 8 digits or more.
#[inline(never)]
fn parse_long(text: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    let mut digits = 0usize;
    let mut rest = text;
    // At most three rounds: a u64 has at most 20 digits.
    loop {
        let (chunk, k) = leading_digits(rest);
        digits += k;
        value = if digits <= 19 {
            value * POW10[k] + chunk
        } else {
            // Without `checked_mul`, which is a 128-bit multiply call in WASM.
            if value > (u64::MAX - chunk) / POW10[k] {
                return None;
            }
            value * POW10[k] + chunk
        };
        rest = &rest[k..];
        if k < 8 {
            return Some((value, rest));
        }
    }
}

/// The index of the first `byte` in `bytes`, like `iter().position(|&b| b == byte)`.
///
/// ```
/// use weir_guest_sdk::text::find_byte;
/// assert_eq!(find_byte(b"user813,323", b','), Some(7));
/// assert_eq!(find_byte(b"abc", b','), None);
/// ```
#[inline(always)]
pub fn find_byte(bytes: &[u8], byte: u8) -> Option<usize> {
    // The first word outside the loop: delimiters are usually near.
    match first_match(bytes, byte) {
        Some(i) => Some(i),
        None if bytes.len() <= 8 => None,
        None => find_byte_after_8(bytes, byte),
    }
}

/// Where `byte` is in the first 8 bytes of `bytes`, if it is.
#[inline(always)]
fn first_match(bytes: &[u8], byte: u8) -> Option<usize> {
    // The bytes past the end are filled with another byte, so they never match.
    let x = load(bytes, !byte) ^ splat(byte);
    // The classic zero-byte test: exact for the lowest zero byte, which is all we read.
    let zero = x.wrapping_sub(splat(1)) & !x & splat(0x80);
    (zero != 0).then(|| zero.trailing_zeros() as usize / 8)
}

#[inline(never)]
fn find_byte_after_8(bytes: &[u8], byte: u8) -> Option<usize> {
    let mut at = 8;
    while at < bytes.len() {
        if let Some(i) = first_match(&bytes[at..], byte) {
            return Some(at + i);
        }
        at += 8;
    }
    None
}

/// The index of the last `byte` in `bytes`, like `iter().rposition(|&b| b == byte)`.
///
/// ```
/// use weir_guest_sdk::text::rfind_byte;
/// assert_eq!(rfind_byte(b"w1 w2 17", b' '), Some(5));
/// assert_eq!(rfind_byte(b"17", b' '), None);
/// ```
#[inline(always)]
pub fn rfind_byte(bytes: &[u8], byte: u8) -> Option<usize> {
    // The last word outside the loop: the delimiter is usually near the end.
    let n = bytes.len();
    let tail = n.saturating_sub(8);
    match last_match(&bytes[tail..], byte) {
        Some(i) => Some(tail + i),
        None if tail == 0 => None,
        None => rfind_byte_before(&bytes[..tail], byte),
    }
}

/// Where `byte` last is in `bytes` (at most 8 of them), if it is.
#[inline(always)]
fn last_match(bytes: &[u8], byte: u8) -> Option<usize> {
    let x = load(bytes, !byte) ^ splat(byte);
    // Exact per byte (no borrow between bytes, unlike the test in `first_match`): the high
    // bit of each byte of x that is zero.
    let zero = !((((x & splat(0x7F)) + splat(0x7F)) | x) & splat(0x80)) & splat(0x80);
    (zero != 0).then(|| 7 - zero.leading_zeros() as usize / 8)
}

#[inline(never)]
fn rfind_byte_before(bytes: &[u8], byte: u8) -> Option<usize> {
    let mut end = bytes.len();
    while end > 0 {
        let start = end.saturating_sub(8);
        if let Some(i) = last_match(&bytes[start..end], byte) {
            return Some(start + i);
        }
        end = start;
    }
    None
}

/// `bytes` as text: ASCII is checked eight bytes at a time, anything else by `str::from_utf8`.
///
/// ```
/// use weir_guest_sdk::text::as_str;
/// assert_eq!(as_str(b"user813"), Some("user813"));
/// assert_eq!(as_str("é".as_bytes()), Some("é"));
/// assert_eq!(as_str(&[0xFF]), None);
/// ```
#[inline(always)]
pub fn as_str(bytes: &[u8]) -> Option<&str> {
    let ascii = if bytes.len() <= 8 {
        load(bytes, 0) & splat(0x80) == 0
    } else {
        is_ascii_long(bytes)
    };
    if ascii {
        // SAFETY: every byte is below 0x80, and ASCII is UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        std::str::from_utf8(bytes).ok()
    }
}

#[inline(never)]
fn is_ascii_long(bytes: &[u8]) -> bool {
    let mut at = 0;
    while at < bytes.len() {
        if load(&bytes[at..], 0) & splat(0x80) != 0 {
            return false;
        }
        at += 8;
    }
    true
}

/// Eight ASCII digits of `n < 100_000_000`, zero-padded, most significant in byte 0.
#[inline(always)]
fn eight_ascii(n: u32) -> u64 {
    // Two 32-bit lanes hold n / 10^4 and n % 10^4; each lane is split by 100, then each 16-bit
    // lane by 10, with multiply-shifts that are exact in these ranges.
    let merged = u64::from(n / 10_000) | u64::from(n % 10_000) << 32;
    let hundreds = ((merged * 10_486) >> 20) & (0x7F << 32 | 0x7F);
    let pairs = ((merged - 100 * hundreds) << 16) + hundreds;
    let tens = ((pairs * 103) >> 10) & (0xF << 48 | 0xF << 32 | 0xF << 16 | 0xF);
    tens + ((pairs - 10 * tens) << 8)
}

/// Appends `n` in decimal, as `buf.extend_from_slice(n.to_string().as_bytes())` would.
///
/// ```
/// let mut line = b"user".to_vec();
/// weir_guest_sdk::text::push_u64(&mut line, 813);
/// assert_eq!(line, b"user813");
/// ```
#[inline(always)]
pub fn push_u64(buf: &mut Vec<u8>, n: u64) {
    if n < 100_000_000 {
        push_up_to_8(buf, n as u32);
    } else if n < 10_000_000_000_000_000 {
        push_up_to_8(buf, (n / 100_000_000) as u32);
        push_8(buf, (n % 100_000_000) as u32);
    } else {
        push_up_to_8(buf, (n / 10_000_000_000_000_000) as u32);
        push_8(buf, ((n / 100_000_000) % 100_000_000) as u32);
        push_8(buf, (n % 100_000_000) as u32);
    }
}

/// Writes the eight bytes of `word` at the end of `buf` and keeps the first `len` of them.
#[inline(always)]
fn write_word(buf: &mut Vec<u8>, word: u64, len: usize) {
    let start = buf.len();
    buf.reserve(8);
    // SAFETY: `reserve` made room for 8 bytes past `start`; `len <= 8` of them become the
    // vector's, all written.
    unsafe {
        buf.as_mut_ptr()
            .add(start)
            .cast::<[u8; 8]>()
            .write_unaligned(word.to_le_bytes());
        buf.set_len(start + len);
    }
}

/// `n < 10^8` without leading zeros (`0` for zero).
#[inline(always)]
fn push_up_to_8(buf: &mut Vec<u8>, n: u32) {
    let digits = eight_ascii(n);
    // Leading zero digits are zero bytes before the ASCII offset is added; keep one for n = 0.
    let zeros = (digits.trailing_zeros() as usize / 8).min(7);
    write_word(buf, (digits + splat(b'0')) >> (8 * zeros), 8 - zeros);
}

/// `n < 10^8` as exactly eight digits.
#[inline(always)]
fn push_8(buf: &mut Vec<u8>, n: u32) {
    write_word(buf, eight_ascii(n) + splat(b'0'), 8);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic spread of u64s of every length (SplitMix64).
    fn numbers() -> impl Iterator<Item = u64> {
        let mut z = 7u64;
        (0..20_000).map(move |i| {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut x = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^= x >> 31;
            x >> (i % 64)
        })
    }

    #[test]
    fn push_u64_writes_what_to_string_writes() {
        let edges = (0..=19).flat_map(|p| {
            let t = 10u64.pow(p);
            [t - 1, t, t + 1]
        });
        for n in numbers()
            .chain(edges)
            .chain([0, u64::MAX])
            .chain(0..100_000)
        {
            let mut buf = b"x".to_vec();
            push_u64(&mut buf, n);
            assert_eq!(buf, format!("x{n}").as_bytes(), "{n}");
        }
    }

    #[test]
    fn parse_u64_agrees_with_str_parse() {
        let mut texts: Vec<String> = numbers()
            .flat_map(|n| [n.to_string(), format!("{n},x"), format!("{n} 1234567890")])
            .collect();
        texts.extend(
            [
                "",
                "x",
                ",1",
                "-1",
                "+1",
                "0",
                "00000000000000000000000001",
                "18446744073709551615",
                "18446744073709551616",
                "99999999999999999999",
                "184467440737095516150",
                "12345678",
                "123456789",
                "1234567a",
                "12345678a",
                "9\u{e9}",
                "007,",
                "1 ",
            ]
            .map(String::from),
        );
        for text in &texts {
            let digits = text.bytes().take_while(u8::is_ascii_digit).count();
            let expected = text[..digits]
                .parse::<u64>()
                .ok()
                .map(|n| (n, &text.as_bytes()[digits..]));
            assert_eq!(parse_u64(text.as_bytes()), expected, "{text:?}");
        }
    }

    #[test]
    fn find_byte_rfind_byte_and_as_str_agree_with_std() {
        let texts = [
            &b""[..],
            b",",
            b"a,",
            b"abcdefg,",
            b"abcdefgh,",
            b"abcdefghijklmnopq,rs",
            b"no delimiter at all here",
            b"\xff\xff,\xff",
            "h\u{e9}llo w\u{f6}rld, \u{1F600}".as_bytes(),
            b"abc\xffdefghij",
            b",abcdefghijklmnopqrstuvwxyz",
            b"a,b,c,d,e,f,g,h,i,j,k",
            b"\0a\0\0bcdefghij\0klm",
        ];
        for t in texts {
            for b in [b',', 0xFF, b'a', 0] {
                assert_eq!(find_byte(t, b), t.iter().position(|&x| x == b), "{t:?} {b}");
                for end in 0..=t.len() {
                    let t = &t[..end];
                    assert_eq!(
                        rfind_byte(t, b),
                        t.iter().rposition(|&x| x == b),
                        "{t:?} {b}"
                    );
                }
            }
            for end in 0..=t.len() {
                assert_eq!(as_str(&t[..end]), std::str::from_utf8(&t[..end]).ok());
            }
        }
    }
}
