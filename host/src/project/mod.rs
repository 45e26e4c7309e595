//! Operator projects outside this repository: `weir new` makes one from a template, `weir build`
//! builds its component in any of the four languages (installing the language's toolchain the
//! first time), `weir test` runs it in the real host on the inputs it holds, and
//! `weir run --build` builds the projects a manifest names by directory.
//!
//! Everything a project needs comes from this binary, pinned to its version: the WIT and the
//! guest SDKs are embedded (by `build.rs`) and written into the project's `.weir/sdk`, which
//! `weir build` rewrites when it was written by another weir; the toolchains are installed into
//! a cache directory the binary manages ([`tools_dir`]).
//!
//! A layer over [`crate::manifest`], [`crate::wasm`] and [`crate::worker`]; [`crate::cli`] drives it.

mod cache;
mod compile;
mod new;
mod test;
mod toolchain;

pub use cache::{BuildingComponents, cached_build, fresh_build};
pub use compile::{build, report};
pub use new::{create, list};
pub use test::{TestOptions, test};

use anyhow::{Context as _, Result, bail};
use std::path::{Path, PathBuf};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

/// The languages a project can be written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Rust,
    Python,
    Js,
    C,
}

impl Lang {
    pub const ALL: [Lang; 4] = [Lang::Rust, Lang::Python, Lang::Js, Lang::C];

    /// As written on the command line (`--lang`) and in the templates' folders.
    pub fn key(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
            Lang::C => "c",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Js => "JavaScript",
            Lang::C => "C",
        }
    }

    pub fn parse(text: &str) -> Result<Lang> {
        match text.to_ascii_lowercase().as_str() {
            "rust" | "rs" => Ok(Lang::Rust),
            "python" | "py" => Ok(Lang::Python),
            "js" | "javascript" => Ok(Lang::Js),
            "c" => Ok(Lang::C),
            _ => bail!("unknown language `{text}`: weir new knows rust, python, js and c"),
        }
    }

    /// The build file that marks a project of this language.
    fn marker(self) -> &'static str {
        match self {
            Lang::Rust => "Cargo.toml",
            Lang::Python => "pyproject.toml",
            Lang::Js => "package.json",
            Lang::C => "Makefile",
        }
    }
}

/// An operator project: a directory with one language's build file.
pub struct Project {
    pub dir: PathBuf,
    pub lang: Lang,
}

impl Project {
    /// The project in `dir`, its language told by its build file.
    pub fn open(dir: &Path) -> Result<Project> {
        if !dir.is_dir() {
            bail!("{}: no such directory", dir.display());
        }
        let found: Vec<Lang> = Lang::ALL
            .into_iter()
            .filter(|l| dir.join(l.marker()).is_file())
            .collect();
        match found.as_slice() {
            [lang] => Ok(Project {
                // Absolute: the toolchains run in it.
                dir: dir
                    .canonicalize()
                    .with_context(|| format!("{}: cannot resolve", dir.display()))?,
                lang: *lang,
            }),
            [] => bail!(
                "{} is not a weir project: it holds none of Cargo.toml (Rust), pyproject.toml \
                 (Python), package.json (JavaScript) or Makefile (C); `weir new` makes one",
                dir.display()
            ),
            several => bail!(
                "{}: cannot tell the project's language: it holds {}",
                dir.display(),
                several
                    .iter()
                    .map(|l| l.marker())
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
        }
    }

    /// The project's copy of the SDK (`.weir/sdk`), written from this binary when it is missing
    /// or came from another weir; for C with the bindings generated from the WIT.
    pub fn sdk(&self) -> Result<PathBuf> {
        write_sdk(&self.dir, self.lang == Lang::C)
    }
}

/// The version and digest a project's `.weir/sdk` is stamped with.
fn sdk_stamp(with_c: bool) -> String {
    format!(
        "weir {} sdk {}{}\n",
        env!("CARGO_PKG_VERSION"),
        embedded::SDK_DIGEST,
        if with_c { " c" } else { "" }
    )
}

fn write_sdk(project: &Path, with_c: bool) -> Result<PathBuf> {
    let dot = project.join(".weir");
    let sdk = dot.join("sdk");
    let stamp = sdk_stamp(with_c);
    if std::fs::read_to_string(sdk.join("STAMP")).is_ok_and(|s| s == stamp) {
        return Ok(sdk);
    }
    std::fs::create_dir_all(&dot).with_context(|| format!("creating {}", dot.display()))?;
    // Written beside and renamed into place, so an interrupted write leaves no half SDK.
    let fresh = tempfile::Builder::new()
        .prefix("sdk-")
        .tempdir_in(&dot)
        .with_context(|| format!("creating a folder in {}", dot.display()))?;
    for (name, bytes) in embedded::SDK {
        let path = fresh.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    if with_c {
        let wit = fresh.path().join("wit");
        weir_c_gen::generate(&wit, &fresh.path().join("c-gen"))
            .context("generating the C bindings of the WIT")?;
    }
    std::fs::write(fresh.path().join("STAMP"), &stamp)?;
    if sdk.exists() {
        std::fs::remove_dir_all(&sdk).with_context(|| format!("removing {}", sdk.display()))?;
    }
    let fresh = fresh.keep();
    std::fs::rename(&fresh, &sdk).with_context(|| format!("writing {}", sdk.display()))?;
    Ok(sdk)
}

/// Where weir keeps what it installs and builds for projects: `$WEIR_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/weir`, else `~/.cache/weir` (the root of the compiled-component cache too).
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("WEIR_CACHE_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("weir"));
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".cache").join("weir")),
        None => bail!(
            "no cache directory: set WEIR_CACHE_DIR (or HOME) to where weir may keep toolchains and builds"
        ),
    }
}

/// Where the guest toolchains go: `$WEIR_TOOLS`, else `tools` in the [`cache_dir`]. The layout
/// is the repository's `target/guest-tools` (`python/`, `js/`), so either can serve the other.
pub fn tools_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("WEIR_TOOLS").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    Ok(cache_dir()?.join("tools"))
}

/// `name` as an identifier: lower case, `_` for anything but letters and digits, not starting
/// with a digit.
fn ident(name: &str) -> String {
    let mut id: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if id.is_empty() || id.starts_with(|c: char| c.is_ascii_digit()) {
        id.insert(0, '_');
    }
    id
}

/// `name` as a type name: `page-views` -> `PageViews`.
fn type_name(name: &str) -> String {
    let mut out = String::new();
    for part in name.split(|c: char| !c.is_ascii_alphanumeric()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.push(first.to_ascii_uppercase());
            out.extend(chars);
        }
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "Op");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_identifiers_and_types() {
        assert_eq!(ident("page-views"), "page_views");
        assert_eq!(ident("9lives"), "_9lives");
        assert_eq!(type_name("page-views"), "PageViews");
        assert_eq!(type_name("9lives"), "Op9lives");
        assert_eq!(type_name("upper"), "Upper");
    }

    #[test]
    fn the_embedded_sdk_holds_every_language() {
        let names: Vec<&str> = embedded::SDK.iter().map(|(n, _)| *n).collect();
        for want in [
            "wit/operator.wit",
            "rust/Cargo.toml",
            "rust/src/lib.rs",
            "rust/batch/Cargo.toml",
            "python/weir.py",
            "js/weir.js",
            "js/weir_core.js",
            "c/weir.h",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        let manifest = embedded::SDK
            .iter()
            .find(|(n, _)| *n == "rust/Cargo.toml")
            .map(|(_, b)| std::str::from_utf8(b).unwrap())
            .unwrap();
        assert!(!manifest.contains("workspace"), "{manifest}");
        assert!(manifest.contains("path = \"batch\""), "{manifest}");
    }
}
