//! `weir new NAME --lang L --template T`: a project directory from the embedded templates.
//!
//! A project is made of four layers of the templates (`host/templates/`): `common/all/` (the
//! README and .gitignore), `common/<template>/` (the job manifest and the test case with its
//! input and expected output, the same in every language, since every language's template
//! does the same thing), `<lang>/all/` (the build file) and `<lang>/<template>/` (the code). `{{name}}`,
//! `{{ident}}`, `{{Type}}`, `{{Language}}` and `{{template}}` in paths and contents are
//! replaced.

use super::embedded::TEMPLATES;
use super::{Lang, ident, type_name, write_sdk};
use anyhow::{Context as _, Result, bail};
use std::path::Path;

/// The templates, each with what it makes.
const KINDS: &[(&str, &str)] = &[
    (
        "map",
        "a stateless operator: each input line in upper case, with a suffix from its config",
    ),
    (
        "keyed",
        "a keyed operator: a running count per user, in keyed state, at parallelism 2",
    ),
    (
        "source",
        "a source component: generates records, its position checkpointed",
    ),
];

/// The languages that have template `kind`.
fn languages(kind: &str) -> Vec<Lang> {
    Lang::ALL
        .into_iter()
        .filter(|l| {
            let prefix = format!("{}/{kind}/", l.key());
            TEMPLATES.iter().any(|(n, _)| n.starts_with(&prefix))
        })
        .collect()
}

/// What `weir new --list` prints.
pub fn list() -> String {
    let mut out = String::from("templates (weir new NAME --lang LANG --template TEMPLATE):\n");
    for (kind, what) in KINDS {
        let langs: Vec<&str> = languages(kind).iter().map(|l| l.key()).collect();
        out.push_str(&format!(
            "  {kind:<8} {what}\n           languages: {}\n",
            langs.join(", ")
        ));
    }
    out
}

/// Creates the project `path` (a directory that must not exist) in `lang` from `template`.
pub fn create(path: &Path, lang: Lang, template: &str) -> Result<()> {
    if !KINDS.iter().any(|(k, _)| *k == template) {
        bail!(
            "unknown template `{template}`: weir new knows {} (weir new --list)",
            KINDS.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
        );
    }
    if !languages(template).contains(&lang) {
        bail!(
            "the {template} template is not available in {}: it is in {} (the {} SDK has no \
             {template} world yet)",
            lang.name(),
            languages(template)
                .iter()
                .map(|l| l.name())
                .collect::<Vec<_>>()
                .join(", "),
            lang.name()
        );
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let valid = name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        bail!(
            "`{name}` cannot name a project: start with a letter, then letters, digits, `-` or \
             `_` (it names the package, the operator and the job)"
        );
    }
    if path.exists() || path.is_symlink() {
        bail!(
            "{} already exists: weir new makes a new directory (choose another name, or remove it)",
            path.display()
        );
    }
    let vars = [
        ("{{name}}", name.clone()),
        ("{{ident}}", ident(&name)),
        ("{{Type}}", type_name(&name)),
        ("{{Language}}", lang.name().to_string()),
        ("{{template}}", template.to_string()),
    ];
    let render = |text: &str| {
        vars.iter()
            .fold(text.to_string(), |t, (from, to)| t.replace(from, to))
    };
    let layers = [
        "common/all/".to_string(),
        format!("common/{template}/"),
        format!("{}/all/", lang.key()),
        format!("{}/{template}/", lang.key()),
    ];
    std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    let made = (|| -> Result<()> {
        for layer in &layers {
            for (file, bytes) in TEMPLATES {
                let Some(rest) = file.strip_prefix(layer.as_str()) else {
                    continue;
                };
                let target = path.join(render(rest));
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("creating {}", parent.display()))?;
                }
                let text = std::str::from_utf8(bytes).context("a template is not UTF-8")?;
                std::fs::write(&target, render(text))
                    .with_context(|| format!("writing {}", target.display()))?;
            }
        }
        write_sdk(path, lang == Lang::C)?;
        Ok(())
    })();
    if let Err(e) = made {
        // Nothing half made is left behind.
        let _ = std::fs::remove_dir_all(path);
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_has_map_and_keyed_and_all_but_c_a_source() {
        assert_eq!(languages("map"), Lang::ALL);
        assert_eq!(languages("keyed"), Lang::ALL);
        assert_eq!(languages("source"), [Lang::Rust, Lang::Python, Lang::Js]);
    }

    #[test]
    fn a_project_is_made_whole_and_never_over_an_existing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("page-views");
        create(&path, Lang::Python, "keyed").unwrap();
        for file in [
            "job.toml",
            "pyproject.toml",
            "page_views.py",
            "tests/basic/input.txt",
            "tests/basic/expected.txt",
            ".gitignore",
            "README.md",
            ".weir/sdk/python/weir.py",
            ".weir/sdk/wit/operator.wit",
        ] {
            assert!(path.join(file).is_file(), "{file} missing");
        }
        let job = std::fs::read_to_string(path.join("job.toml")).unwrap();
        assert!(job.contains("[operators.page_views]"), "{job}");
        assert!(!job.contains("{{"), "{job}");
        let code = std::fs::read_to_string(path.join("page_views.py")).unwrap();
        assert!(code.contains("class PageViews(weir.Operator)"), "{code}");

        let again = create(&path, Lang::Python, "keyed")
            .unwrap_err()
            .to_string();
        assert!(again.contains("already exists"), "{again}");
        let bad = create(&dir.path().join("x"), Lang::Rust, "nope")
            .unwrap_err()
            .to_string();
        assert!(bad.contains("unknown template `nope`"), "{bad}");
        assert!(!dir.path().join("x").exists());
        let name = create(&dir.path().join("9x"), Lang::C, "map")
            .unwrap_err()
            .to_string();
        assert!(name.contains("cannot name a project"), "{name}");
    }
}
