//! `split`: a line of text -> one record per word, keyed by the word.
//!
//! Words are the runs of alphanumeric characters (in the Unicode sense), lower-cased; every other
//! character separates words.

use weir_guest_sdk::bytes::extend;
use weir_guest_sdk::prelude::*;
use weir_guest_sdk::text::{self, splat};

pub struct Split;

impl Operator for Split {
    fn open(_ctx: &mut Context, _config: Config) -> Result<Self, Error> {
        Ok(Split)
    }

    fn process(&mut self, ctx: &mut Context, record: Record<'_>) -> Result<(), Error> {
        if record.value.is_ascii() {
            split_ascii(ctx, record.value);
            return Ok(());
        }
        let mut lower = String::new();
        for word in record
            .value_str()?
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            lower.clear();
            if word.is_ascii() {
                // Without allocating, as in `split_ascii`.
                lower.push_str(word);
                lower.make_ascii_lowercase();
            } else {
                // Full Unicode lower-casing (e.g. a final sigma) needs the whole word.
                lower.push_str(&word.to_lowercase());
            }
            ctx.emit(&lower, &lower);
        }
        Ok(())
    }
}

const HIGH: u64 = splat(0x80);

/// The first `min(8, bytes.len())` bytes as a little-endian word, the rest spaces (separators).
#[inline(always)]
fn load(bytes: &[u8]) -> u64 {
    text::load(bytes, b' ')
}

/// The high bit of each byte of `x` (all below 0x80) that lies in `lo..=hi`; no carry crosses
/// bytes.
#[inline(always)]
fn in_range(x: u64, lo: u8, hi: u8) -> u64 {
    (x + splat(0x80 - lo)) & !(x + splat(0x7F - hi)) & HIGH
}

/// Bytes of an ASCII word that are letters or digits.
#[inline(always)]
fn alphanumeric(x: u64) -> u64 {
    in_range(x, b'0', b'9') | in_range(x | splat(0x20), b'a', b'z')
}

/// The common case: on ASCII text, Unicode's alphanumerics are exactly the ASCII ones. Eight
/// bytes are classified at a time, and words without capitals are emitted straight from the
/// input.
fn split_ascii(ctx: &mut Context, text: &[u8]) {
    let mut lower = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let starts = alphanumeric(load(&text[i..]));
        if starts == 0 {
            i += 8;
            continue;
        }
        let start = i + starts.trailing_zeros() as usize / 8;
        // The word runs to the first separator; past the end, `load` reads spaces.
        let (mut end, mut capitals) = (start, 0);
        loop {
            let x = load(&text[end..]);
            let stop = !alphanumeric(x) & HIGH;
            let k = if stop == 0 {
                8
            } else {
                stop.trailing_zeros() as usize / 8
            };
            capitals |= in_range(x, b'A', b'Z') & (stop.wrapping_sub(1) | stop);
            end += k;
            if k < 8 {
                break;
            }
        }
        let word = &text[start..end];
        if capitals == 0 {
            ctx.emit(word, word);
        } else {
            lower.clear();
            extend(&mut lower, word);
            lower.make_ascii_lowercase();
            ctx.emit(&lower, &lower);
        }
        i = end;
    }
}

export_operator!(Split);

#[cfg(test)]
mod tests {
    use super::*;
    use weir_guest_sdk::testing::Harness;

    #[test]
    fn splits_on_non_alphanumerics_and_lower_cases() {
        let mut h = Harness::<Split>::open("{}").unwrap();
        h.process(&[
            Record::new("", "Hello, World! ÉTÉ déjà-vu x2"),
            Record::new("", "  "),
            Record::new("", "ASCII only:  MiXed,lower\tX9_end"),
        ])
        .unwrap();
        let out = h.take_output();
        let keys: Vec<_> = out
            .iter()
            .map(|e| String::from_utf8(e.key.clone()).unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "hello", "world", "été", "déjà", "vu", "x2", "ascii", "only", "mixed", "lower",
                "x9", "end"
            ]
        );
        assert!(out.iter().all(|e| e.key == e.value && e.output.is_none()));
    }

    #[test]
    fn the_ascii_path_splits_as_the_unicode_rules_do() {
        // Lines of every length around the 8-byte words, with words, capitals, digits and
        // separators at every position.
        let alphabet = b"aZ9 ,_-\tQx";
        let mut z = 1u64;
        let lines: Vec<String> = (0..2000)
            .map(|i| {
                (0..i % 37)
                    .map(|_| {
                        z = z
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        alphabet[(z >> 33) as usize % alphabet.len()] as char
                    })
                    .collect()
            })
            .collect();
        let mut h = Harness::<Split>::open("{}").unwrap();
        for line in &lines {
            h.process(&[Record::new("", line)]).unwrap();
            let got: Vec<String> = h
                .take_output()
                .iter()
                .map(|e| String::from_utf8(e.key.clone()).unwrap())
                .collect();
            let expected: Vec<String> = line
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase)
                .collect();
            assert_eq!(got, expected, "{line:?}");
        }
    }

    #[test]
    fn rejects_values_that_are_not_text() {
        let mut h = Harness::<Split>::open("{}").unwrap();
        let err = h
            .process(&[Record::new("", &[0xff, 0xfe][..])])
            .unwrap_err();
        assert!(err.message().contains("not UTF-8"), "{err}");
    }
}
