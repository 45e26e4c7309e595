//! The generated parts of the C guest SDK (`guest-sdk/c/`).
//!
//! `weir-c-gen WIT_DIR OUT_DIR` (the binary) and `weir build` (through [`generate`]) write:
//!
//! - `stateful_operator.h`, `stateful_operator.c` and `stateful_operator_component_type.o`: the
//!   bindings of the `stateful-operator` world in the WIT folder (the operator world and its checkpoint
//!   hooks, which the SDK exports for every C operator), by wit-bindgen's C generator (the release the Rust guests use), so that C
//!   needs no wit-bindgen CLI (a 10-minute `cargo install`).
//! - `weir_unicode.c`: Rust's Unicode rules as C tables (alphanumerics, lower-casing and the
//!   final-sigma context), read off this compiler's `std`, so a C operator splits and lower-cases
//!   text exactly as a Rust one does (see `unicode`).
//! - `wasi_snapshot_preview1.reactor.wasm`: the WASI adapter of the host's wasmtime release, for
//!   `wasm-tools component new --adapt`: wasi-libc's stdio (`snprintf` included) imports WASI
//!   preview 1, which a component imports as WASI 0.2 through it.

mod unicode;

use anyhow::{Context, Result};
use std::path::Path;
use wit_bindgen_core::Files;
use wit_bindgen_core::wit_parser::Resolve;

/// Writes the generated parts of the C SDK for the WIT package in `wit` into `out`.
pub fn generate(wit: &Path, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for (name, contents) in bindings(wit, "stateful-operator")? {
        write(&out.join(name), &contents)?;
    }
    // Each window world's bindings, in a folder of its own, named as the operator world's
    // (files and type prefix), so that one weir.c builds against any of them.
    for world in ["window-aggregate", "window-reduce", "window-process"] {
        let dir = out.join(world);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let prefix = world.replace('-', "_");
        for (name, contents) in bindings(wit, world)? {
            let renamed = name.replace(&prefix, "stateful_operator");
            let contents = if name.ends_with(".o") {
                contents
            } else {
                as_operator_world(&contents, &prefix)?
            };
            write(&dir.join(renamed), &contents)?;
        }
    }
    write(&out.join("weir_unicode.c"), unicode::tables().as_bytes())?;
    write(
        &out.join("wasi_snapshot_preview1.reactor.wasm"),
        wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
    )
}

/// wit-bindgen's C files for `world` of the WIT package in `wit`.
fn bindings(wit: &Path, world: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let mut resolve = Resolve::default();
    let (package, _) = resolve
        .push_path(wit)
        .with_context(|| format!("reading the WIT in {}", wit.display()))?;
    let world = resolve.select_world(&[package], Some(world))?;
    let mut files = Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)?;
    Ok(files
        .iter()
        .map(|(name, contents)| (name.to_string(), contents.to_vec()))
        .collect())
}

/// Generated C source of the world whose names start with `prefix`, its names as the operator
/// world's: types and helpers (`window_aggregate_string_t` -> `stateful_operator_string_t`) and
/// the header's name. The symbol that links the world's component type object keeps its own.
fn as_operator_world(contents: &[u8], prefix: &str) -> Result<Vec<u8>> {
    let text = std::str::from_utf8(contents).context("wit-bindgen wrote C that is not UTF-8")?;
    let force_link = format!("force_link_{prefix}");
    Ok(text
        .replace(&format!("{prefix}.h"), "stateful_operator.h")
        .replace(&format!("{prefix}_"), "stateful_operator_")
        .replace("force_link_stateful_operator", &force_link)
        .into_bytes())
}

/// Writes `contents` unless the file already holds them, so builds that depend on it stay fresh.
fn write(path: &Path, contents: &[u8]) -> Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == contents) {
        return Ok(());
    }
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}
