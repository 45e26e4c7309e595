//! `--set a.b.c=value`: override any manifest field before it is read, like Flink's `-D`.

use std::collections::BTreeSet;
use toml_edit::{DocumentMut, Item, Table, Value};

/// One `--set` argument, parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    /// The dotted path, e.g. `["operators", "count", "parallelism"]`.
    pub path: Vec<String>,
    /// The value as written after `=`.
    pub raw: String,
}

impl std::str::FromStr for Override {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (path, raw) = s
            .split_once('=')
            .ok_or_else(|| format!("`{s}` is not of the form key.path=value"))?;
        let path: Vec<String> = path
            .trim()
            .split('.')
            .map(|p| p.trim().to_string())
            .collect();
        if path.iter().any(String::is_empty) {
            return Err(format!("`{s}`: the key path has an empty part"));
        }
        Ok(Override {
            path,
            raw: raw.to_string(),
        })
    }
}

/// The value `raw` stands for: a TOML value if it parses as one (`4`, `true`, `"x"`, `[1, 2]`),
/// else the text itself as a string, so `--set sources.lines.path=data/in.txt` needs no quotes.
fn value_of(raw: &str) -> Value {
    raw.trim()
        .parse::<Value>()
        .unwrap_or_else(|_| Value::from(raw))
}

/// Applies `overrides` to the manifest text. Returns the new text and the dotted paths that were
/// set (paths given on the command line resolve against the current directory, not the manifest's).
pub fn apply(text: &str, overrides: &[Override]) -> Result<(String, BTreeSet<String>), String> {
    if overrides.is_empty() {
        return Ok((text.to_string(), BTreeSet::new()));
    }
    let mut doc: DocumentMut = text.parse().map_err(|e| format!("{e}"))?;
    let mut set = BTreeSet::new();
    for o in overrides {
        let (last, parents) = o.path.split_last().expect("parsed paths are never empty");
        let mut table: &mut Table = doc.as_table_mut();
        for (i, part) in parents.iter().enumerate() {
            let item = table.entry(part).or_insert_with(|| {
                let mut t = Table::new();
                t.set_implicit(true);
                Item::Table(t)
            });
            if let Some(inline) = item.as_inline_table_mut() {
                let t = std::mem::take(inline).into_table();
                *item = Item::Table(t);
            }
            table = item.as_table_mut().ok_or_else(|| {
                format!(
                    "--set {}: `{}` is not a table",
                    o.path.join("."),
                    o.path[..=i].join(".")
                )
            })?;
        }
        table.insert(last, Item::Value(value_of(&o.raw)));
        set.insert(o.path.join("."));
    }
    Ok((doc.to_string(), set))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ov(s: &str) -> Override {
        s.parse().unwrap()
    }

    #[test]
    fn sets_existing_and_new_fields_keeping_the_rest() {
        let text = "edges = []\n\n[job]\nname = \"x\"\n\n[operators.count]\ncomponent = \"c.wasm\"\nconfig = { a = 1 }\n";
        let (out, set) = apply(
            text,
            &[
                ov("job.name=y"),
                ov("operators.count.parallelism=4"),
                ov("operators.count.config.b=two"),
                ov("job.chaining=false"),
            ],
        )
        .unwrap();
        let v: toml::Table = toml::from_str(&out).unwrap();
        assert_eq!(v["job"]["name"].as_str(), Some("y"));
        assert_eq!(v["job"]["chaining"].as_bool(), Some(false));
        assert_eq!(v["operators"]["count"]["parallelism"].as_integer(), Some(4));
        assert_eq!(v["operators"]["count"]["config"]["a"].as_integer(), Some(1));
        assert_eq!(v["operators"]["count"]["config"]["b"].as_str(), Some("two"));
        assert!(set.contains("operators.count.parallelism"));
        // Lines that were not overridden stay where they were, so error locations still match.
        assert!(out.starts_with("edges = []\n\n[job]\n"));
    }

    #[test]
    fn refuses_malformed_and_non_table_paths() {
        assert!("novalue".parse::<Override>().is_err());
        assert!("a..b=1".parse::<Override>().is_err());
        let err = apply("[job]\nname = \"x\"\n", &[ov("job.name.inner=1")]).unwrap_err();
        assert!(err.contains("`job.name` is not a table"), "{err}");
    }
}
