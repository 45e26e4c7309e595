//! `weir run --build`: a manifest's `component` may name a project directory, built before the
//! job runs. Builds are cached by content: the project's sources (every file but what builds
//! and runs write) and this weir's version name a component in `<cache>/builds/`, so an
//! unchanged project is not built again.

use super::{Project, cache_dir};
use crate::manifest::{ComponentFiles, Components};
use anyhow::{Context as _, Result};
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::Xxh3;

/// Folders a project's content leaves out: what builds, runs and tools write.
const NOT_SOURCES: &[&str] = &[
    "target",
    "build",
    "out",
    "node_modules",
    "__pycache__",
    ".weir",
    ".git",
];

/// Resolves components as files do, and builds the ones that name a project directory.
#[derive(Default)]
pub struct BuildingComponents {
    /// Directories already built in this run, and their components.
    built: RefCell<HashMap<PathBuf, PathBuf>>,
}

impl Components for BuildingComponents {
    fn resolve(&self, base: &Path, name: &str) -> Result<PathBuf, String> {
        let path = base.join(name);
        if !path.is_dir() {
            return ComponentFiles.resolve(base, name);
        }
        let key = path.canonicalize().unwrap_or_else(|_| path.clone());
        if let Some(done) = self.built.borrow().get(&key) {
            return Ok(done.clone());
        }
        let component = cached_build(&key)
            .map_err(|e| format!("cannot build the project {}: {e:#}", key.display()))?;
        self.built.borrow_mut().insert(key, component.clone());
        Ok(component)
    }
}

/// The project's component: from the cache when a build of the same sources is there, else
/// built ([`fresh_build`]).
pub fn cached_build(dir: &Path) -> Result<PathBuf> {
    let project = Project::open(dir)?;
    let cached = cached_path(&project, content_digest(&project.dir)?)?;
    if cached.is_file() {
        eprintln!(
            "==> {}: unchanged since its last build ({})",
            dir.display(),
            cached.display()
        );
        return Ok(cached);
    }
    eprintln!("==> building {} ({})", dir.display(), project.lang.name());
    fresh_build(&project)?;
    Ok(cached)
}

/// Builds the project and keeps the component in the cache, under its sources' digest. Returns
/// the component the build wrote in the project.
pub fn fresh_build(project: &Project) -> Result<PathBuf> {
    let before = content_digest(&project.dir)?;
    let built = super::build(project)?;
    keep(&built, &cached_path(project, before)?)?;
    // A build may write sources of its own (cargo's Cargo.lock): kept under what the sources
    // are now as well, so the next run finds it.
    let after = content_digest(&project.dir)?;
    if after != before {
        keep(&built, &cached_path(project, after)?)?;
    }
    Ok(built)
}

/// Where the cache keeps the component of `project`'s sources with `digest`.
fn cached_path(project: &Project, digest: u128) -> Result<PathBuf> {
    let builds = cache_dir()?.join("builds");
    std::fs::create_dir_all(&builds).with_context(|| format!("creating {}", builds.display()))?;
    Ok(builds.join(format!("{}-{digest:032x}.wasm", project.lang.key())))
}

/// Copies `built` to `to`, beside it first and renamed into place: a concurrent run sees all
/// of it or none.
fn keep(built: &Path, to: &Path) -> Result<()> {
    let dir = to.parent().unwrap_or(Path::new("."));
    let partial = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    std::fs::copy(built, partial.path()).with_context(|| format!("copying {}", built.display()))?;
    partial
        .persist(to)
        .with_context(|| format!("writing {}", to.display()))?;
    Ok(())
}

/// A digest of the project's sources: every file's path and bytes, in order, but for
/// [`NOT_SOURCES`]; and this weir's version, whose SDK the build uses.
pub fn content_digest(dir: &Path) -> Result<u128> {
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    files.sort();
    let mut hasher = Xxh3::new();
    hasher.update(super::sdk_stamp(false).as_bytes());
    for (name, path) in files {
        hasher.update(name.as_bytes());
        hasher.update(&[0]);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        hasher.update(&(bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    Ok(hasher.digest128())
}

fn walk(dir: &Path, base: &Path, into: &mut Vec<(String, PathBuf)>) -> Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let path = entry.path();
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            let name = entry.file_name();
            if NOT_SOURCES.iter().any(|n| name == *n) {
                continue;
            }
            walk(&path, base, into)?;
        } else if file_type.is_file() {
            let name = path
                .strip_prefix(base)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            into.push((name, path));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_follows_sources_not_outputs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("op.py"), "a").unwrap();
        std::fs::create_dir(dir.path().join("out")).unwrap();
        let first = content_digest(dir.path()).unwrap();
        std::fs::write(dir.path().join("out/part-0"), "written by a run").unwrap();
        assert_eq!(content_digest(dir.path()).unwrap(), first);
        std::fs::write(dir.path().join("op.py"), "b").unwrap();
        assert_ne!(content_digest(dir.path()).unwrap(), first);
    }
}
