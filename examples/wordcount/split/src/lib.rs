//! `split`: a line of text -> one record per word, keyed by the word.
//!
//! Words are the runs of alphanumeric characters (in the Unicode sense), lower-cased; every other
//! character separates words.

use weir_guest_sdk::prelude::*;

pub struct Split;

impl Operator for Split {
    fn open(_ctx: &mut Context, _config: Config) -> Result<Self, Error> {
        Ok(Split)
    }

    fn process(&mut self, ctx: &mut Context, record: Record<'_>) -> Result<(), Error> {
        let mut lower = String::new();
        for word in record
            .value_str()?
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            lower.clear();
            if word.is_ascii() {
                // The common case, without allocating.
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
        ])
        .unwrap();
        let out = h.take_output();
        let keys: Vec<_> = out
            .iter()
            .map(|e| String::from_utf8(e.key.clone()).unwrap())
            .collect();
        assert_eq!(keys, ["hello", "world", "été", "déjà", "vu", "x2"]);
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
