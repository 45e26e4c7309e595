//! The guest toolchains: found, or installed the first time into [`super::tools_dir`] (pinned
//! versions, the ones the repository's own build scripts use), or a clear message saying what is
//! missing and how to get it.

use super::tools_dir;
use anyhow::{Context as _, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// componentize-py, which bundles CPython with the operator's modules (PyPI).
pub const COMPONENTIZE_PY: &str = "0.25.1";
/// componentize-qjs, which embeds QuickJS and snapshots the operator's module (npm).
pub const COMPONENTIZE_QJS: &str = "0.4.5";
/// Debian's C toolchain for wasm32-wasi.
const C_PACKAGES: &str = "clang lld wasi-libc libclang-rt-dev-wasm32 make";
const WASI_LIBC: &str = "/usr/lib/wasm32-wasi/libc.a";

/// Whether `program` runs (found on PATH).
fn found(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok()
}

/// Runs `cmd` with its output shown (on stderr, so that a build's stdout stays the report);
/// fails with `what` and the exit status.
pub fn run_shown(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd
        .stdout(std::io::stderr())
        .status()
        .with_context(|| format!("{what}: cannot start {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Rust: cargo and the `wasm32-wasip2` target, which rustup adds when it is missing.
pub fn rust() -> Result<()> {
    if !found("cargo") {
        bail!("Rust operators need cargo: install Rust with rustup, then build again");
    }
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .context("cannot run rustc")?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if sysroot.join("lib/rustlib/wasm32-wasip2").is_dir() {
        return Ok(());
    }
    if !found("rustup") {
        bail!(
            "Rust operators need the wasm32-wasip2 target, which this Rust ({}) lacks; \
             install Rust with rustup (which adds targets), or add the target to it",
            sysroot.display()
        );
    }
    eprintln!("==> installing the wasm32-wasip2 target (rustup target add wasm32-wasip2)");
    run_shown(
        Command::new("rustup").args(["target", "add", "wasm32-wasip2"]),
        "rustup target add wasm32-wasip2",
    )
}

/// Python: componentize-py in a virtual environment of its own, installed from PyPI the first
/// time. Returns its path.
pub fn python() -> Result<PathBuf> {
    let venv = tools_dir()?.join("python");
    let bin = venv.join("bin/componentize-py");
    if version_of(&bin).is_some_and(|v| v.contains(COMPONENTIZE_PY)) {
        return Ok(bin);
    }
    let usable = Command::new("python3")
        .args(["-c", "import ensurepip, venv"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !usable {
        bail!(
            "Python operators are built with componentize-py {COMPONENTIZE_PY}, which weir \
             installs with python3 and its venv module; this machine has {}. Install them \
             (Debian: apt-get install python3 python3-venv), then build again",
            if found("python3") {
                "python3 without venv"
            } else {
                "no python3"
            }
        );
    }
    eprintln!(
        "==> installing componentize-py {COMPONENTIZE_PY} into {} (first build only)",
        venv.display()
    );
    run_shown(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        "python3 -m venv",
    )?;
    run_shown(
        Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "--progress-bar",
                "on",
                "--disable-pip-version-check",
            ])
            .arg(format!("componentize-py=={COMPONENTIZE_PY}")),
        "pip install componentize-py",
    )?;
    Ok(bin)
}

/// JavaScript: componentize-qjs, installed from npm the first time. Returns its path.
pub fn js() -> Result<PathBuf> {
    let dir = tools_dir()?.join("js");
    let bin = dir.join("node_modules/.bin/componentize-qjs");
    let package = dir.join("node_modules/componentize-qjs/package.json");
    let installed = std::fs::read_to_string(&package).ok().and_then(|text| {
        serde_json::from_str::<serde_json::Value>(&text)
            .ok()?
            .get("version")?
            .as_str()
            .map(str::to_string)
    });
    if bin.exists() && installed.as_deref() == Some(COMPONENTIZE_QJS) {
        return Ok(bin);
    }
    if !found("npm") {
        bail!(
            "JavaScript operators are built with componentize-qjs {COMPONENTIZE_QJS}, which weir \
             installs with npm; this machine has no npm. Install Node.js with npm (Debian: \
             apt-get install npm), then build again"
        );
    }
    eprintln!(
        "==> installing componentize-qjs {COMPONENTIZE_QJS} into {} (first build only)",
        dir.display()
    );
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let manifest = dir.join("package.json");
    if !manifest.exists() {
        std::fs::write(&manifest, "{ \"private\": true }\n")
            .with_context(|| format!("writing {}", manifest.display()))?;
    }
    run_shown(
        Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .arg(format!("componentize-qjs@{COMPONENTIZE_QJS}")),
        "npm install componentize-qjs",
    )?;
    Ok(bin)
}

/// C: clang, wasm-ld, wasi-libc and make; installed with apt-get when missing and this process
/// may (root, on Debian), else a message naming the packages.
pub fn c() -> Result<()> {
    let missing = || {
        let mut m = Vec::new();
        for tool in ["clang", "wasm-ld", "make"] {
            if !found(tool) {
                m.push(tool);
            }
        }
        if !Path::new(WASI_LIBC).exists() {
            m.push("wasi-libc");
        }
        m
    };
    let lacking = missing();
    if lacking.is_empty() {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root || !found("apt-get") {
        bail!(
            "C operators need clang, wasm-ld, wasi-libc and make; this machine lacks {}. As \
             root on Debian or Ubuntu: apt-get install {C_PACKAGES}; then build again",
            lacking.join(", ")
        );
    }
    eprintln!(
        "==> installing {C_PACKAGES} (apt-get), for {}",
        lacking.join(", ")
    );
    run_shown(
        Command::new("apt-get").args(["update", "-qq"]),
        "apt-get update",
    )?;
    let mut install = Command::new("apt-get");
    install
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(C_PACKAGES.split(' '));
    run_shown(&mut install, "apt-get install")?;
    let still = missing();
    if !still.is_empty() {
        bail!("after apt-get install, still missing: {}", still.join(", "));
    }
    Ok(())
}

/// What `program --version` prints, when it runs.
fn version_of(program: &Path) -> Option<String> {
    let out = Command::new(program).arg("--version").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}
