//! A manifest made to mean the same elsewhere: what `weir submit` sends to the API. Its
//! overrides are applied, each relative path (file sources and sinks, the checkpoint directory)
//! is made absolute as [`super::load`] would resolve it, and each component is replaced by what
//! `component` returns for its file (its artifact's hash, once uploaded).

use super::Override;
use std::path::{Path, PathBuf};
use toml_edit::{DocumentMut, Item, Value};

/// The manifest at `path` with `overrides` applied, its paths absolute and its components
/// replaced by `component(file)`. The manifest is expected to have been checked
/// ([`super::load`]) first: fields of the wrong type are left alone.
pub fn portable(
    path: &Path,
    overrides: &[Override],
    mut component: impl FnMut(&Path) -> Result<String, String>,
) -> Result<String, String> {
    let bytes = crate::files::read_limited(path, super::MAX_MANIFEST_BYTES, None)
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8(bytes).map_err(|_| "the manifest is not UTF-8 text")?;
    let (text, overridden) = super::overrides::apply(&text, overrides)?;
    let mut doc: DocumentMut = text.parse().map_err(|e| format!("{e}"))?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let cwd = std::env::current_dir().map_err(|e| e.to_string())?;
    // As `load`: a path set with --set is relative to the current directory.
    let resolve = |field: &str, value: &str| -> PathBuf {
        let from = if overridden.contains(field) {
            &cwd
        } else {
            &base
        };
        std::path::absolute(from.join(value)).unwrap_or_else(|_| from.join(value))
    };
    for section in ["sources", "operators", "sinks"] {
        let Some(table) = doc.get_mut(section).and_then(Item::as_table_like_mut) else {
            continue;
        };
        for (uid, node) in table.iter_mut() {
            let Some(node) = node.as_table_like_mut() else {
                continue;
            };
            for key in ["path", "component"] {
                let field = format!("{section}.{uid}.{key}");
                let Some(value) = node.get(key).and_then(Item::as_str).map(str::to_string) else {
                    continue;
                };
                let file = resolve(&field, &value);
                let new = if key == "component" {
                    component(&file).map_err(|e| format!("{field}: {e}"))?
                } else {
                    file.display().to_string()
                };
                node.insert(key, Item::Value(Value::from(new)));
            }
        }
    }
    if let Some(checkpoint) = doc.get_mut("checkpoint").and_then(Item::as_table_like_mut) {
        let dir = checkpoint
            .get("dir")
            .and_then(Item::as_str)
            .unwrap_or("checkpoints")
            .to_string();
        let dir = resolve("checkpoint.dir", &dir);
        checkpoint.insert("dir", Item::Value(Value::from(dir.display().to_string())));
    }
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_absolute_and_components_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("job.toml");
        std::fs::write(
            &manifest,
            "edges = [\"in -> op\", \"op -> out\"]\n[sources.in]\nkind = \"file\"\npath = \"in.txt\"\n[operators.op]\ncomponent = \"op.wasm\"\n[sinks.out]\nkind = \"file\"\npath = \"/abs/out\"\n[checkpoint]\ninterval = \"1s\"\n",
        )
        .unwrap();
        let mut seen = Vec::new();
        let text = portable(&manifest, &["sinks.out.path=rel".parse().unwrap()], |f| {
            seen.push(f.to_path_buf());
            Ok("sha256:abc".into())
        })
        .unwrap();
        let doc: toml::Table = toml::from_str(&text).unwrap();
        let abs = |p: &Path| std::path::absolute(p).unwrap().display().to_string();
        assert_eq!(
            doc["sources"]["in"]["path"].as_str().unwrap(),
            abs(&dir.path().join("in.txt"))
        );
        assert_eq!(
            doc["operators"]["op"]["component"].as_str().unwrap(),
            "sha256:abc"
        );
        assert_eq!(
            seen,
            vec![std::path::absolute(dir.path().join("op.wasm")).unwrap()]
        );
        // Set on the command line: relative to the current directory.
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            doc["sinks"]["out"]["path"].as_str().unwrap(),
            abs(&cwd.join("rel"))
        );
        // The default checkpoint directory is the manifest's.
        assert_eq!(
            doc["checkpoint"]["dir"].as_str().unwrap(),
            abs(&dir.path().join("checkpoints"))
        );
    }
}
