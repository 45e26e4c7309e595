//! Operator projects as a user makes them, outside the repository: `weir new` in a temporary
//! directory, then `weir build`, `weir test` and `weir run job.toml --build`, for every template
//! in every language, from a clean cache (the toolchains come from the ones `scripts/build.sh`
//! installed, `WEIR_TOOLS`); and each kind of bad input with its message.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

/// A workspace outside the repository, its cache empty; Rust projects share one target dir
/// so that the SDK's dependencies are compiled once for all of them.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("weir-projects-")
            .tempdir_in(std::env::temp_dir())
            .unwrap();
        assert!(
            !dir.path().starts_with(root()),
            "the projects live outside the repository"
        );
        Sandbox { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// weir in `cwd`, with this sandbox's cache, the suite's toolchains and a shared cargo
    /// target dir for Rust.
    fn weir(&self, cwd: &Path, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
        cmd.current_dir(cwd)
            .args(args)
            .env("WEIR_CACHE_DIR", self.path("cache"))
            .env("WEIR_TOOLS", root().join("target/guest-tools"))
            .env("CARGO_TARGET_DIR", rust_target())
            .env("WEIR_LOG", "warn");
        run_bounded(cmd, Duration::from_secs(600))
    }

    fn ok(&self, cwd: &Path, args: &[&str]) -> (String, String) {
        let out = self.weir(cwd, args);
        let (stdout, stderr) = texts(&out);
        assert!(
            out.status.success(),
            "weir {args:?} in {} failed:\n{stdout}\n{stderr}",
            cwd.display()
        );
        (stdout, stderr)
    }

    fn fails(&self, cwd: &Path, args: &[&str]) -> (String, String) {
        let out = self.weir(cwd, args);
        let (stdout, stderr) = texts(&out);
        assert!(
            !out.status.success(),
            "weir {args:?} should have failed:\n{stdout}\n{stderr}"
        );
        (stdout, stderr)
    }
}

fn texts(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The cargo target dir the Rust projects share (inside the repository's target/, which CI
/// builds anyway; the projects themselves are outside).
fn rust_target() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| root().join("target/test-projects"))
        .clone()
}

/// What the job's file sink wrote, sorted.
fn output(project: &Path) -> Vec<String> {
    let mut lines = sink_lines(&project.join("out"));
    lines.sort();
    lines
}

fn expected(project: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(project.join("tests/basic/expected.txt")).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// new, build, test, run --build (twice: the second from the cache), and a broken expected
/// file that makes `weir test` fail with a diff.
fn lifecycle(lang: &str, template: &str, world: &str) {
    let sandbox = Sandbox::new();
    let name = format!("my-{template}-{lang}");
    let project = sandbox.path(&name);
    let (stdout, _) = sandbox.ok(
        sandbox.dir.path(),
        &["new", &name, "--lang", lang, "--template", template],
    );
    assert!(
        stdout.contains(&format!("created {name}: the {template} template")),
        "{stdout}"
    );

    let (stdout, _) = sandbox.ok(&project, &["build"]);
    let first = stdout.lines().next().unwrap_or_default();
    assert!(
        first.ends_with(".wasm") && Path::new(first).is_file(),
        "build prints the component's path first: {stdout}"
    );
    assert!(stdout.contains(world), "the world it implements: {stdout}");
    assert!(stdout.contains("imports"), "{stdout}");

    let (stdout, stderr) = sandbox.ok(&project, &["test"]);
    assert!(stdout.contains("test basic ... ok"), "{stdout}\n{stderr}");
    assert!(stdout.contains("0 failed"), "{stdout}");
    if lang == "rust" {
        assert!(
            stdout.contains("test native (cargo test) ... ok"),
            "{stdout}"
        );
    }
    assert!(
        stderr.contains("unchanged since its last build"),
        "weir test reuses weir build's component: {stderr}"
    );

    let (_, stderr) = sandbox.ok(&project, &["run", "job.toml", "--build"]);
    assert!(stderr.contains("finished"), "{stderr}");
    assert_eq!(output(&project), expected(&project));

    // A broken expectation: `weir test` fails and shows the difference.
    let file = project.join("tests/basic/expected.txt");
    let text = std::fs::read_to_string(&file).unwrap();
    let first_line = text.lines().next().unwrap().to_string();
    std::fs::write(&file, text.replacen(&first_line, "something else", 1)).unwrap();
    let (stdout, _) = sandbox.fails(&project, &["test"]);
    assert!(stdout.contains("test basic ... FAILED"), "{stdout}");
    assert!(stdout.contains("-something else"), "the diff: {stdout}");
    assert!(
        stdout.contains(&format!("+{first_line}")),
        "the diff: {stdout}"
    );
    assert!(stdout.contains("1 failed"), "{stdout}");

    // --update takes the current output; then the test passes again.
    sandbox.ok(&project, &["test", "--update"]);
    let (stdout, _) = sandbox.ok(&project, &["test"]);
    assert!(stdout.contains("test basic ... ok"), "{stdout}");
}

const OPERATOR: &str = "weir:operator/operator@0.1.0";

#[test]
fn rust_map() {
    lifecycle("rust", "map", OPERATOR);
}

#[test]
fn rust_keyed() {
    lifecycle("rust", "keyed", OPERATOR);
}

#[test]
fn rust_source() {
    lifecycle("rust", "source", "weir:operator/source@0.1.0");
}

#[test]
fn python_source() {
    lifecycle("python", "source", "weir:operator/source@0.1.0");
}

#[test]
fn js_source() {
    lifecycle("js", "source", "weir:operator/source@0.1.0");
}

#[test]
fn python_map() {
    lifecycle("python", "map", OPERATOR);
}

#[test]
fn python_keyed() {
    lifecycle("python", "keyed", OPERATOR);
}

#[test]
fn js_map() {
    lifecycle("js", "map", OPERATOR);
}

#[test]
fn js_keyed() {
    lifecycle("js", "keyed", OPERATOR);
}

#[test]
fn c_map() {
    lifecycle("c", "map", OPERATOR);
}

#[test]
fn c_keyed() {
    lifecycle("c", "keyed", OPERATOR);
}

#[test]
fn new_lists_its_templates_and_refuses_what_it_cannot_make() {
    let sandbox = Sandbox::new();
    let here = sandbox.dir.path();
    let (stdout, _) = sandbox.ok(here, &["new", "--list"]);
    for want in ["map", "keyed", "source", "rust, python, js, c"] {
        assert!(stdout.contains(want), "{stdout}");
    }
    let (_, stderr) = sandbox.fails(here, &["new", "x", "--lang", "cobol"]);
    assert!(stderr.contains("unknown language `cobol`"), "{stderr}");
    let (_, stderr) = sandbox.fails(here, &["new", "x", "--lang", "rust", "--template", "join"]);
    assert!(stderr.contains("unknown template `join`"), "{stderr}");
    let (_, stderr) = sandbox.fails(here, &["new", "x", "--lang", "c", "--template", "source"]);
    assert!(
        stderr.contains("the source template is not available in C"),
        "{stderr}"
    );
    std::fs::create_dir(sandbox.path("taken")).unwrap();
    let (_, stderr) = sandbox.fails(here, &["new", "taken", "--lang", "python"]);
    assert!(stderr.contains("already exists"), "{stderr}");
    assert!(
        !sandbox.path("x").exists(),
        "nothing is left of a refused project"
    );
}

#[test]
fn a_failing_build_shows_the_compilers_message() {
    let sandbox = Sandbox::new();
    sandbox.ok(sandbox.dir.path(), &["new", "broken", "--lang", "c"]);
    let project = sandbox.path("broken");
    let code = project.join("broken.c");
    let text = std::fs::read_to_string(&code).unwrap();
    std::fs::write(
        &code,
        text.replace("weir_buf_clear(&line);", "weir_buf_clear(&lines);"),
    )
    .unwrap();
    let (_, stderr) = sandbox.fails(&project, &["build"]);
    assert!(stderr.contains("lines"), "clang's message: {stderr}");
    assert!(stderr.contains("error"), "{stderr}");
    assert!(stderr.contains("make failed"), "{stderr}");

    sandbox.ok(sandbox.dir.path(), &["new", "snake", "--lang", "python"]);
    let project = sandbox.path("snake");
    std::fs::write(project.join("snake.py"), "import weir\ndef broken(:\n").unwrap();
    let (_, stderr) = sandbox.fails(&project, &["build"]);
    assert!(
        stderr.contains("SyntaxError"),
        "componentize-py's message: {stderr}"
    );
}

#[test]
fn a_test_without_expected_output_and_a_directory_without_build_are_explained() {
    let sandbox = Sandbox::new();
    sandbox.ok(sandbox.dir.path(), &["new", "lonely", "--lang", "c"]);
    let project = sandbox.path("lonely");
    // The case's input stands for the job's own, even when that file does not exist.
    let job = project.join("job.toml");
    let text = std::fs::read_to_string(&job).unwrap();
    std::fs::write(
        &job,
        text.replace(
            "path = \"tests/basic/input.txt\"",
            "path = \"elsewhere.txt\"",
        ),
    )
    .unwrap();
    let (stdout, _) = sandbox.ok(&project, &["test"]);
    assert!(stdout.contains("test basic ... ok"), "{stdout}");
    std::fs::write(&job, text).unwrap();

    std::fs::remove_file(project.join("tests/basic/expected.txt")).unwrap();
    let (stdout, _) = sandbox.fails(&project, &["test"]);
    assert!(stdout.contains("no expected output"), "{stdout}");
    assert!(stdout.contains("expected.txt is missing"), "{stdout}");
    assert!(stdout.contains("weir test --update"), "{stdout}");

    let (_, stderr) = sandbox.fails(&project, &["run", "job.toml"]);
    assert!(stderr.contains("is a directory"), "{stderr}");
    assert!(stderr.contains("--build"), "{stderr}");

    let (_, stderr) = sandbox.fails(sandbox.dir.path(), &["build", "nowhere"]);
    assert!(stderr.contains("no such directory"), "{stderr}");
    std::fs::create_dir(sandbox.path("empty")).unwrap();
    let (_, stderr) = sandbox.fails(&sandbox.path("empty"), &["build"]);
    assert!(stderr.contains("is not a weir project"), "{stderr}");
}

#[test]
fn a_toolchain_that_cannot_be_installed_says_what_to_install() {
    let sandbox = Sandbox::new();
    sandbox.ok(sandbox.dir.path(), &["new", "nojs", "--lang", "js"]);
    sandbox.ok(sandbox.dir.path(), &["new", "nopy", "--lang", "python"]);
    // No tools installed yet, and a PATH with neither npm nor python3 on it.
    let bare = sandbox.path("bare-path");
    std::fs::create_dir(&bare).unwrap();
    for (project, want) in [("nojs", "this machine has no npm"), ("nopy", "no python3")] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
        cmd.current_dir(sandbox.path(project))
            .arg("build")
            .env("WEIR_CACHE_DIR", sandbox.path("cache"))
            .env("WEIR_TOOLS", sandbox.path("no-tools"))
            .env("PATH", &bare);
        let out = run_bounded(cmd, Duration::from_secs(60));
        let (_, stderr) = texts(&out);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains(want), "{stderr}");
        assert!(
            stderr.contains("apt-get install"),
            "how to get it: {stderr}"
        );
    }
}

#[test]
fn a_manifest_builds_the_projects_it_names_by_directory() {
    let sandbox = Sandbox::new();
    let here = sandbox.dir.path();
    sandbox.ok(here, &["new", "upper", "--lang", "c", "--template", "map"]);
    sandbox.ok(
        here,
        &["new", "tally", "--lang", "js", "--template", "keyed"],
    );
    let jobs = sandbox.path("jobs");
    std::fs::create_dir(&jobs).unwrap();
    std::fs::write(
        jobs.join("views.txt"),
        "{\"user\": \"ana\"}\n{\"user\": \"bo\"}\n{\"user\": \"ana\"}\n",
    )
    .unwrap();
    std::fs::write(
        jobs.join("pipeline.toml"),
        r#"edges = ["views -> upper", "upper -> tally", "tally -> out"]

[job]
name = "pipeline"
parallelism = 2

[sources.views]
kind = "file"
path = "views.txt"
format = "json"
key_field = "user"

[operators.upper]
component = "../upper"

[operators.tally]
component = "../tally"
partition = "hash"

[sinks.out]
kind = "file"
path = "out"
"#,
    )
    .unwrap();
    let (_, stderr) = sandbox.ok(&jobs, &["validate", "pipeline.toml", "--build"]);
    assert!(stderr.contains("==> building"), "{stderr}");
    // Built by validate, so the run finds both unchanged.
    let (_, stderr) = sandbox.ok(&jobs, &["run", "pipeline.toml", "--build"]);
    assert_eq!(
        stderr.matches("unchanged since its last build").count(),
        2,
        "{stderr}"
    );
    let mut lines = sink_lines(&jobs.join("out"));
    lines.sort();
    assert_eq!(lines, ["ana 1", "ana 2", "bo 1"]);

    // A change to a project's source is built again; the other one is not.
    let code = sandbox.path("upper/upper.c");
    let text = std::fs::read_to_string(&code).unwrap();
    std::fs::write(&code, format!("{text}\n// changed\n")).unwrap();
    let (_, stderr) = sandbox.ok(&jobs, &["run", "pipeline.toml", "--build"]);
    assert_eq!(
        stderr.matches("unchanged since its last build").count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("upper (C)"), "{stderr}");
}
