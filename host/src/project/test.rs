//! `weir test [DIR]`: builds the project, runs its job (`job.toml`) in the real host once per
//! test case, and compares what the sinks wrote with the expected files. Rust projects also run
//! their native tests (`cargo test`, the SDK's harness).
//!
//! A case is a folder `tests/<case>/` holding:
//! - the input of the job's file source: `input.txt` (one file source) or `input-<source>.txt`;
//!   a file source without one reads the manifest's own path;
//! - what each file sink must write: `expected.txt` (one file sink) or `expected-<sink>.txt`,
//!   compared line by line with the sink's part files in subtask order, or sorted when the sink
//!   has more than one subtask (the order across subtasks is not defined).
//!
//! `--update` writes the current output as the expected one.

use super::cache::BuildingComponents;
use super::{Lang, Project};
use crate::manifest::{self, Components, Override};
use crate::plan::JobGraph;
use crate::wasm::Runtime;
use crate::worker::{self, JobControl, JobMetrics, RunOptions};
use anyhow::{Context as _, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

#[derive(Clone, Copy, Debug, Default)]
pub struct TestOptions {
    /// Write the current output as the expected one instead of comparing.
    pub update: bool,
}

/// The project's own directory resolves to the component just built; other directories are
/// built (cached) as `weir run --build` does.
struct ProjectComponents {
    dir: PathBuf,
    component: PathBuf,
    others: BuildingComponents,
}

impl Components for ProjectComponents {
    fn resolve(&self, base: &Path, name: &str) -> Result<PathBuf, String> {
        let path = base.join(name);
        if path.canonicalize().is_ok_and(|p| p == self.dir) {
            return Ok(self.component.clone());
        }
        self.others.resolve(base, name)
    }
}

/// Runs the project's tests; prints each outcome. Ok(false) when a test failed.
pub fn test(dir: &Path, options: TestOptions) -> Result<bool> {
    let project = Project::open(dir)?;
    let manifest = project.dir.join("job.toml");
    if !manifest.is_file() {
        bail!(
            "{}: no job.toml: weir test runs the job it describes on the cases in tests/",
            dir.display()
        );
    }
    let cases = cases(&project.dir)?;
    let component = super::cached_build(&project.dir)?;
    let mut passed = 0;
    let mut failed = Vec::new();
    if project.lang == Lang::Rust {
        eprintln!("==> native tests (cargo test)");
        let status = Command::new("cargo")
            .current_dir(&project.dir)
            .arg("test")
            .stdout(std::io::stderr())
            .status()
            .context("cannot run cargo test")?;
        if status.success() {
            passed += 1;
            println!("test native (cargo test) ... ok");
        } else {
            println!("test native (cargo test) ... FAILED ({status}; its output is above)");
            failed.push("native".to_string());
        }
    }
    let components = ProjectComponents {
        dir: project.dir.clone(),
        component,
        others: BuildingComponents::default(),
    };
    let files = FileConnectors::of(&manifest)?;
    for case in &cases {
        let name = case
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match run_case(&manifest, &files, case, &components, options) {
            Ok(None) => {
                passed += 1;
                println!("test {name} ... ok");
            }
            Ok(Some(why)) => {
                println!("test {name} ... FAILED\n{why}");
                failed.push(name);
            }
            Err(e) => {
                println!("test {name} ... FAILED\n{e:#}");
                failed.push(name);
            }
        }
    }
    println!(
        "\nweir test: {passed} passed, {} failed{}",
        failed.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(" ({})", failed.join(", "))
        }
    );
    Ok(failed.is_empty())
}

/// The case folders under `tests/`, in name order.
fn cases(dir: &Path) -> Result<Vec<PathBuf>> {
    let tests = dir.join("tests");
    let mut cases: Vec<PathBuf> = match std::fs::read_dir(&tests) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", tests.display())),
    };
    cases.sort();
    if cases.is_empty() {
        bail!(
            "{}: no test cases: a case is a folder tests/<case>/ with the input (input.txt) \
             and the expected output (expected.txt)",
            dir.display()
        );
    }
    Ok(cases)
}

/// The file sources and file sinks a manifest declares, by name: read from its text, since the
/// job can only be loaded once their paths are set (a case's input may stand for a file the
/// manifest names but that does not exist).
struct FileConnectors {
    sources: Vec<String>,
    sinks: Vec<String>,
}

impl FileConnectors {
    fn of(manifest: &Path) -> Result<FileConnectors> {
        let text = std::fs::read_to_string(manifest)
            .with_context(|| format!("reading {}", manifest.display()))?;
        // Malformed text is reported by the manifest's own checks when the job is loaded.
        let table: toml::Table = text.parse().unwrap_or_default();
        let files = |section: &str| -> Vec<String> {
            let Some(entries) = table.get(section).and_then(|s| s.as_table()) else {
                return Vec::new();
            };
            entries
                .iter()
                .filter(|(_, t)| t.get("kind").and_then(|k| k.as_str()) == Some("file"))
                .map(|(name, _)| name.clone())
                .collect()
        };
        let found = FileConnectors {
            sources: files("sources"),
            sinks: files("sinks"),
        };
        if found.sinks.is_empty() {
            bail!(
                "{} has no file sink: weir test compares what file sinks write",
                manifest.display()
            );
        }
        Ok(found)
    }
}

/// The parallelism of node `uid` in `job`.
fn parallelism(job: &JobGraph, uid: &str) -> u32 {
    job.nodes
        .iter()
        .find(|n| n.uid == uid)
        .map_or(1, |n| n.parallelism)
}

/// `uid`'s file in `case`: `<prefix>.txt` when it is the only one of its kind, else
/// `<prefix>-<uid>.txt`.
fn case_file(case: &Path, prefix: &str, uid: &str, only: bool) -> PathBuf {
    if only {
        case.join(format!("{prefix}.txt"))
    } else {
        case.join(format!("{prefix}-{uid}.txt"))
    }
}

fn set(key: String, path: &Path) -> Result<Override> {
    let value = toml::Value::String(path.to_string_lossy().into_owned());
    format!("{key}={value}")
        .parse()
        .map_err(|e: String| anyhow::anyhow!(e))
}

/// Runs one case; `Some(why)` when the output differs from the expected one.
fn run_case(
    manifest: &Path,
    files: &FileConnectors,
    case: &Path,
    components: &dyn Components,
    options: TestOptions,
) -> Result<Option<String>> {
    let (sources, sinks) = (&files.sources, &files.sinks);
    let out = tempfile::tempdir().context("creating a folder for the output")?;
    let mut overrides = Vec::new();
    for uid in sources {
        let input = case_file(case, "input", uid, sources.len() == 1);
        if input.is_file() {
            overrides.push(set(format!("sources.{uid}.path"), &input)?);
        }
    }
    for uid in sinks {
        overrides.push(set(format!("sinks.{uid}.path"), &out.path().join(uid))?);
    }
    let expected: Vec<(PathBuf, Option<String>)> = sinks
        .iter()
        .map(|uid| {
            let path = case_file(case, "expected", uid, sinks.len() == 1);
            let text = std::fs::read_to_string(&path).ok();
            (path, text)
        })
        .collect();
    if !options.update
        && let Some((missing, _)) = expected.iter().find(|(_, text)| text.is_none())
    {
        bail!(
            "no expected output: {} is missing (write what the sink must write there, or run \
             `weir test --update` to take the current output)",
            missing.display()
        );
    }

    let job = manifest::load_with(manifest, &overrides, components)?;
    worker::check(&job)?;
    let runtime = Runtime::new().map_err(anyhow::Error::msg)?;
    let loaded = worker::load_components(&runtime, &job)?;
    worker::run(
        &job,
        &loaded,
        &JobControl::new(),
        &JobMetrics::new(Instant::now()),
        &RunOptions::default(),
    )
    .context("the job failed")?;

    let mut differences = String::new();
    for (uid, (path, want)) in sinks.iter().zip(&expected) {
        let parallelism = parallelism(&job, uid);
        let got = read_parts(&out.path().join(uid))?;
        if options.update {
            std::fs::write(path, &got).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("==> wrote {}", path.display());
            continue;
        }
        let want = want.as_deref().unwrap_or_default();
        let (want, got) = if parallelism > 1 {
            (sorted(want), sorted(&got))
        } else {
            (want.to_string(), got)
        };
        if want != got {
            let diff = similar::TextDiff::from_lines(&want, &got);
            differences.push_str(&format!(
                "sink `{uid}` wrote other lines than {}{}:\n{}",
                path.display(),
                if parallelism > 1 {
                    " (both sorted: the sink has more than one subtask)"
                } else {
                    ""
                },
                diff.unified_diff()
                    .context_radius(3)
                    .header("expected", "actual")
            ));
        }
    }
    Ok((!differences.is_empty()).then_some(differences))
}

/// What a file sink wrote: its part files, in subtask order.
fn read_parts(dir: &Path) -> Result<String> {
    let mut parts: Vec<(u32, PathBuf)> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter_map(|p| {
                let name = p.file_name()?.to_str()?.to_string();
                let subtask = name
                    .strip_prefix("part-")?
                    .split('-')
                    .next()?
                    .parse()
                    .ok()?;
                Some((subtask, p))
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    parts.sort();
    let mut text = String::new();
    for (_, part) in parts {
        text.push_str(
            &std::fs::read_to_string(&part)
                .with_context(|| format!("reading {}", part.display()))?,
        );
    }
    Ok(text)
}

fn sorted(text: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    lines.iter().map(|l| format!("{l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_read_in_subtask_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("part-10"), "c\n").unwrap();
        std::fs::write(dir.path().join("part-2"), "b\n").unwrap();
        std::fs::write(dir.path().join("part-0"), "a\n").unwrap();
        std::fs::write(dir.path().join(".part-0-1-0.inprogress"), "x\n").unwrap();
        assert_eq!(read_parts(dir.path()).unwrap(), "a\nb\nc\n");
        assert_eq!(sorted("b\na\n"), "a\nb\n");
    }
}
