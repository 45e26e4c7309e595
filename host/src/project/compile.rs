//! `weir build`: a project's component, built with its language's toolchain against the SDK in
//! its `.weir/sdk`.
//!
//! - Rust: `cargo build --release --target wasm32-wasip2`; the component is the `cdylib`
//!   artifact cargo reports.
//! - Python: componentize-py on `[tool.weir] module` of pyproject.toml, into `build/`.
//! - JavaScript: componentize-qjs on package.json's `main`, into `build/`.
//! - C: `make` (the project's Makefile) builds `build/$(NAME).core.wasm`; weir makes it a
//!   component with the WASI adapter, as `build/$(NAME).wasm`.
//!
//! The world a Python or JavaScript module implements is told by how it exports its handler
//! (`export_stateful(`, `exportAggregate(`, ...), as the repository's build scripts tell it.
//! Components built by componentize-py, componentize-qjs and weir record their language and
//! tool in their producers section, which `weir inspect` reports.

use super::toolchain::{self, run_shown};
use super::{Lang, Project};
use crate::wasm::{self, Runtime};
use anyhow::{Context as _, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Builds the project's component; returns its path. The toolchain's output goes to stderr.
pub fn build(project: &Project) -> Result<PathBuf> {
    let sdk = project.sdk()?;
    let dir = &project.dir;
    match project.lang {
        Lang::Rust => rust(dir),
        Lang::Python => python(dir, &sdk),
        Lang::Js => js(dir, &sdk),
        Lang::C => c(dir, &sdk),
    }
}

/// What `weir build` prints: the component's path and what `weir inspect` says of it.
pub fn report(component: &Path) -> Result<String> {
    let runtime = Runtime::new().map_err(anyhow::Error::msg)?;
    let inspection = wasm::inspect(&runtime, component, u64::MAX)?;
    Ok(format!("{}\n{inspection}", component.display()))
}

fn rust(dir: &Path) -> Result<PathBuf> {
    toolchain::rust()?;
    let output = Command::new("cargo")
        .current_dir(dir)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--message-format",
            "json-render-diagnostics",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo")?;
    if !output.status.success() {
        bail!(
            "cargo build failed ({}): see its messages above",
            output.status
        );
    }
    // The cdylib artifact of the project's own package (cargo's JSON messages, one per line).
    let mut found = None;
    for line in output.stdout.split(|&b| b == b'\n') {
        let Ok(message) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact"
            || !message["target"]["crate_types"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t == "cdylib"))
        {
            continue;
        }
        if let Some(files) = message["filenames"].as_array() {
            found = files
                .iter()
                .filter_map(|f| f.as_str())
                .find(|f| f.ends_with(".wasm"))
                .map(PathBuf::from)
                .or(found);
        }
    }
    found.ok_or_else(|| {
        anyhow::anyhow!(
            "cargo built no .wasm: the package needs `crate-type = [\"cdylib\", \"rlib\"]` in \
             [lib] of {}",
            dir.join("Cargo.toml").display()
        )
    })
}

/// The world a module exports, by the SDK call that exports its handler.
fn world(source: &str, markers: &[(&str, &'static str)]) -> &'static str {
    markers
        .iter()
        .rev()
        .find(|(marker, _)| source.contains(marker))
        .map_or("operator", |(_, world)| world)
}

fn python(dir: &Path, sdk: &Path) -> Result<PathBuf> {
    let pyproject = dir.join("pyproject.toml");
    let text = std::fs::read_to_string(&pyproject)
        .with_context(|| format!("reading {}", pyproject.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", pyproject.display()))?;
    let module = table
        .get("tool")
        .and_then(|t| t.get("weir"))
        .and_then(|w| w.get("module"))
        .and_then(|m| m.as_str())
        .map(str::to_string)
        .or_else(|| {
            let name = table.get("project")?.get("name")?.as_str()?;
            Some(super::ident(name))
        })
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{}: no `[tool.weir] module`: name the module that exports the handler",
                pyproject.display()
            )
        })?;
    let file = dir.join(format!("{module}.py"));
    let source =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let world = world(
        &source,
        &[
            ("export_stateful(", "stateful-operator"),
            ("export_migrating(", "migrating-operator"),
            ("export_aggregate(", "window-aggregate"),
            ("export_reduce(", "window-reduce"),
            ("export_process_window(", "window-process"),
            ("export_source(", "source"),
        ],
    );
    let componentize = toolchain::python()?;
    let out = build_dir(dir)?.join(format!("{module}.wasm"));
    run_shown(
        Command::new(componentize)
            .current_dir(dir)
            .arg("-d")
            .arg(sdk.join("wit"))
            .args(["-w", world, "componentize", "-p"])
            .arg(sdk.join("python"))
            .args(["-p", "."])
            .arg(&module)
            .arg("-o")
            .arg(&out),
        "componentize-py",
    )?;
    stamp(
        &out,
        "Python",
        &format!("componentize-py={}", toolchain::COMPONENTIZE_PY),
    )?;
    Ok(out)
}

fn js(dir: &Path, sdk: &Path) -> Result<PathBuf> {
    let package = dir.join("package.json");
    let text = std::fs::read_to_string(&package)
        .with_context(|| format!("reading {}", package.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", package.display()))?;
    let Some(main) = json["main"].as_str() else {
        bail!(
            "{}: no \"main\": name the module that exports the handler",
            package.display()
        );
    };
    let file = dir.join(main);
    let source =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let world = world(
        &source,
        &[
            ("exportStateful(", "stateful-operator"),
            ("exportAggregate(", "window-aggregate"),
            ("exportReduce(", "window-reduce"),
            ("exportProcessWindow(", "window-process"),
            ("exportSource(", "source"),
        ],
    );
    let componentize = toolchain::js()?;
    let stem = Path::new(main)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "operator".into());
    let out = build_dir(dir)?.join(format!("{stem}.wasm"));
    run_shown(
        Command::new(componentize)
            .current_dir(dir)
            .arg("--wit")
            .arg(sdk.join("wit"))
            .args([
                "--world",
                world,
                "--js",
                main,
                "--module-root",
                ".",
                "--sync",
                "-o",
            ])
            .arg(&out),
        "componentize-qjs",
    )?;
    stamp(
        &out,
        "JavaScript",
        &format!("componentize-qjs={}", toolchain::COMPONENTIZE_QJS),
    )?;
    Ok(out)
}

fn c(dir: &Path, sdk: &Path) -> Result<PathBuf> {
    toolchain::c()?;
    let makefile = dir.join("Makefile");
    let text = std::fs::read_to_string(&makefile)
        .with_context(|| format!("reading {}", makefile.display()))?;
    let name = text
        .lines()
        .find_map(|line| {
            let (var, value) = line.split_once('=')?;
            (var.trim_end_matches([':', '?']).trim() == "NAME").then(|| value.trim().to_string())
        })
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "{}: no `NAME = ...`: weir builds build/$(NAME).core.wasm with it",
                makefile.display()
            )
        })?;
    run_shown(
        Command::new("make")
            .current_dir(dir)
            .arg(format!("WEIR_SDK={}", sdk.display())),
        "make",
    )?;
    let core = dir.join("build").join(format!("{name}.core.wasm"));
    let module = std::fs::read(&core).with_context(|| {
        format!(
            "make built no {} (the Makefile's default target must)",
            core.display()
        )
    })?;
    let adapter = std::fs::read(sdk.join("c-gen/wasi_snapshot_preview1.reactor.wasm"))
        .context("reading the WASI adapter")?;
    let component = wit_component::ComponentEncoder::default()
        .module(&module)
        .and_then(|e| e.adapter("wasi_snapshot_preview1", &adapter))
        .and_then(|e| e.validate(true).encode())
        .with_context(|| format!("making a component of {}", core.display()))?;
    let out = dir.join("build").join(format!("{name}.wasm"));
    std::fs::write(&out, component).with_context(|| format!("writing {}", out.display()))?;
    stamp(&out, "C", "")?;
    Ok(out)
}

/// `build/` in the project, created.
fn build_dir(dir: &Path) -> Result<PathBuf> {
    let out = dir.join("build");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    Ok(out)
}

/// Records the language (and the tool, `name=version`) in the component's producers section.
fn stamp(path: &Path, language: &str, tool: &str) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut producers = wasm_metadata::Producers::empty();
    producers.add("language", language, "");
    if let Some((name, version)) = tool.split_once('=') {
        producers.add("processed-by", name, version);
    }
    let stamped = producers
        .add_to_wasm(&bytes)
        .with_context(|| format!("recording the producers of {}", path.display()))?;
    std::fs::write(path, stamped).with_context(|| format!("writing {}", path.display()))
}
