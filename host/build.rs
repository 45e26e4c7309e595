//! Embeds what `weir new` and `weir build` give a project outside this repository: the WIT, the
//! guest SDKs (Rust, Python, JavaScript, C) and the project templates, so that the installed
//! binary carries them, pinned to its own version.
//!
//! The Rust SDK's manifests inherit from this workspace; they are written out with the
//! inherited fields filled in (`resolved_manifest`), as a crate on its own.

use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

fn main() {
    let host = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = host.parent().unwrap().to_path_buf();
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());

    // (path in the SDK folder, file on disk)
    let mut sdk: Vec<(String, PathBuf)> = Vec::new();
    for dir in ["wit", "guest-sdk/src", "guest-sdk/batch/src"] {
        files(&root.join(dir), &root, &mut sdk);
    }
    for file in [
        "guest-sdk/python/weir.py",
        "guest-sdk/js/weir.js",
        "guest-sdk/js/weir_core.js",
        "guest-sdk/c/weir.c",
        "guest-sdk/c/weir.h",
        "guest-sdk/c/weir_glue.h",
        "guest-sdk/c/weir_window.c",
    ] {
        sdk.push((file.to_string(), root.join(file)));
    }
    let workspace = read_toml(&root.join("Cargo.toml"));
    for (crate_dir, batch_path) in [("guest-sdk", Some("batch")), ("guest-sdk/batch", None)] {
        let text = resolved_manifest(
            &root.join(crate_dir).join("Cargo.toml"),
            &workspace,
            batch_path,
        );
        let written = out.join(format!("{}-Cargo.toml", crate_dir.replace('/', "-")));
        std::fs::write(&written, text).unwrap();
        sdk.push((format!("{crate_dir}/Cargo.toml"), written));
    }
    // Laid out as the project's `.weir/sdk`: `wit/`, and a folder per language (the Rust crate
    // beside `wit/`, as its bindings expect).
    for (name, _) in &mut sdk {
        if let Some(rest) = name.strip_prefix("guest-sdk/") {
            *name = match rest.split_once('/') {
                Some(("python" | "js" | "c", _)) => rest.to_string(),
                _ => format!("rust/{rest}"),
            };
        }
    }
    sdk.sort();

    let mut templates = Vec::new();
    files(
        &host.join("templates"),
        &host.join("templates"),
        &mut templates,
    );
    templates.sort();

    let mut hasher = std::hash::DefaultHasher::new();
    for (name, path) in &sdk {
        name.hash(&mut hasher);
        std::fs::read(path).unwrap().hash(&mut hasher);
    }
    let mut code = String::new();
    writeln!(
        code,
        "/// A digest of the embedded SDK: a project's copy is rewritten when it differs."
    )
    .unwrap();
    writeln!(
        code,
        "pub const SDK_DIGEST: &str = \"{:016x}\";",
        hasher.finish()
    )
    .unwrap();
    for (name, list) in [("SDK", &sdk), ("TEMPLATES", &templates)] {
        writeln!(code, "pub static {name}: &[(&str, &[u8])] = &[").unwrap();
        for (path, file) in list {
            writeln!(
                code,
                "    ({path:?}, include_bytes!({:?})),",
                file.display().to_string()
            )
            .unwrap();
        }
        writeln!(code, "];").unwrap();
    }
    std::fs::write(out.join("embedded.rs"), code).unwrap();

    for dir in ["wit", "guest-sdk", "host/templates", "Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
}

/// Every file under `dir` (recursively), named relative to `base` with `/`.
fn files(dir: &Path, base: &Path, into: &mut Vec<(String, PathBuf)>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, base, into);
        } else {
            let name = path
                .strip_prefix(base)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            into.push((name, path));
        }
    }
}

fn read_toml(path: &Path) -> toml::Table {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The crate manifest at `path` as a crate of its own: `x.workspace = true` replaced by the
/// workspace's value, `weir-batch` by a path dependency on `batch_path`, no dev-dependencies.
fn resolved_manifest(path: &Path, workspace: &toml::Table, batch_path: Option<&str>) -> String {
    let mut manifest = read_toml(path);
    let ws = workspace["workspace"].as_table().unwrap();
    manifest.remove("dev-dependencies");
    let package = manifest.get_mut("package").unwrap().as_table_mut().unwrap();
    for (key, value) in package.iter_mut() {
        if is_inherited(value) {
            *value = ws["package"][key.as_str()].clone();
        }
    }
    package.insert("publish".into(), false.into());
    if let Some(deps) = manifest
        .get_mut("dependencies")
        .and_then(|d| d.as_table_mut())
    {
        for (key, value) in deps.iter_mut() {
            if key == "weir-batch" {
                let mut table = toml::Table::new();
                table.insert("path".into(), batch_path.unwrap().into());
                *value = table.into();
            } else if is_inherited(value) {
                *value = ws["dependencies"][key.as_str()].clone();
            }
        }
    }
    format!(
        "# Written by weir: the SDK of the weir that wrote it (`weir build` rewrites it for another).\n{}",
        toml::to_string(&manifest).unwrap()
    )
}

fn is_inherited(value: &toml::Value) -> bool {
    value.get("workspace").and_then(|w| w.as_bool()) == Some(true)
}
