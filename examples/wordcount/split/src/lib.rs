//! `split`: a line of text -> one record per word, keyed by the word.
//!
//! Words are the runs of alphanumeric characters (in the Unicode sense), lower-cased; every other
//! character separates words.

use weir_guest_sdk::bytes::extend;
use weir_guest_sdk::prelude::*;

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

/// What an ASCII byte is to the splitter.
const SEPARATOR: u8 = 0;
const LOWER_OR_DIGIT: u8 = 1;
const UPPER: u8 = 2;

/// Each ASCII byte's class, so that a word's end and whether it needs lower-casing are found in
/// one pass with one lookup per byte.
const CLASS: [u8; 128] = {
    let mut class = [SEPARATOR; 128];
    let mut b = 0;
    while b < 128 {
        class[b] = match b as u8 {
            b'a'..=b'z' | b'0'..=b'9' => LOWER_OR_DIGIT,
            b'A'..=b'Z' => UPPER,
            _ => SEPARATOR,
        };
        b += 1;
    }
    class
};

/// The common case: on ASCII text, Unicode's alphanumerics are exactly the ASCII ones, and words
/// without capitals are emitted straight from the input.
fn split_ascii(ctx: &mut Context, text: &[u8]) {
    let mut lower = Vec::new();
    let mut i = 0;
    while i < text.len() {
        if CLASS[usize::from(text[i])] == SEPARATOR {
            i += 1;
            continue;
        }
        let start = i;
        let mut kinds = 0;
        while i < text.len() && CLASS[usize::from(text[i])] != SEPARATOR {
            kinds |= CLASS[usize::from(text[i])];
            i += 1;
        }
        let word = &text[start..i];
        if kinds & UPPER == 0 {
            ctx.emit(word, word);
        } else {
            lower.clear();
            extend(&mut lower, word);
            lower.make_ascii_lowercase();
            ctx.emit(&lower, &lower);
        }
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
    fn rejects_values_that_are_not_text() {
        let mut h = Harness::<Split>::open("{}").unwrap();
        let err = h
            .process(&[Record::new("", &[0xff, 0xfe][..])])
            .unwrap_err();
        assert!(err.message().contains("not UTF-8"), "{err}");
    }
}
