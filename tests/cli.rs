//! The CLI as a user meets it: the example manifest, `--set`, `validate`, `inspect`, progress.

mod common;

use common::*;

#[test]
fn the_example_manifest_runs_and_set_points_it_at_another_file() {
    let manifest = root().join("examples/wordcount/wordcount.toml");
    components();
    let dir = scratch();
    let input = dir.path().join("other.txt");
    std::fs::write(&input, "Hello hello HELLO, world!\n").unwrap();
    let out_dir = dir.path().join("out");
    let out = run_ok(&[
        "run",
        manifest.to_str().unwrap(),
        "--set",
        &format!("sources.lines.path={}", input.display()),
        "--set",
        &format!("sinks.out.path={}", out_dir.display()),
    ]);
    let mut lines = sink_lines(&out_dir);
    lines.sort();
    assert_eq!(lines, ["hello 1", "hello 2", "hello 3", "world 1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("job `wordcount` finished"),
        "a summary closes the run: {stderr}"
    );
    assert!(stderr.contains("1 records in, 4 records out"), "{stderr}");
}

#[test]
fn validate_accepts_the_example_and_describes_its_tasks() {
    components();
    let manifest = root().join("examples/wordcount/wordcount.toml");
    let out = run_ok(&["validate", manifest.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ok; job `wordcount`, 4 tasks: [lines -> split] x2, [count -> out] x2"),
        "{stdout}"
    );
    let out = run_ok(&[
        "validate",
        manifest.to_str().unwrap(),
        "--set",
        "job.chaining=false",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("8 tasks"), "{stdout}");
}

#[test]
fn inspect_reports_worlds_imports_and_exports() {
    let out = run_ok(&["inspect", &component("wordcount_count")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("weir worlds: weir:operator/operator@0.1.0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("weir:operator/state@0.1.0 (interface)"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "value-get: func(name: string, key: list<u8>) -> result<option<list<u8>>, variant>"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("weir:operator/handler@0.1.0 (interface)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("process: func(batch: list<u8>) -> result<_, string>"),
        "{stdout}"
    );

    let out = run_ok(&["inspect", &component("faulty_wrong_world")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("weir worlds: none"), "{stdout}");
    assert!(
        stdout.contains("process: func(line: string) -> string"),
        "{stdout}"
    );

    let stderr = run_err(&["inspect", root().join("Cargo.toml").to_str().unwrap()]);
    assert!(
        stderr.contains("is not a valid WebAssembly component"),
        "{stderr}"
    );
}

#[test]
fn progress_is_logged_at_intervals_without_a_terminal() {
    // An unbounded paced source runs long enough for a progress line, then stops on SIGINT.
    components();
    let dir = scratch();
    let manifest = paced_job(dir.path(), "progress", "rate = 2000.0");
    let mut cmd = weir();
    cmd.env("WEIR_LOG", "info")
        .env("WEIR_PROGRESS_MS", "300")
        .args(["run", manifest.to_str().unwrap()]);
    let child = spawn(cmd);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    interrupt(&child);
    let out = wait_bounded(child, std::time::Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("records/s"), "{stderr}");
    assert!(
        stderr.matches(" in ").count() >= 2,
        "progress lines and a summary: {stderr}"
    );
}

#[test]
fn progress_is_a_live_line_on_a_terminal() {
    // `script` runs weir on a pseudo-terminal, as a user's shell would.
    components();
    let dir = scratch();
    let manifest = paced_job(dir.path(), "live", "count = 3000\nrate = 3000.0");
    let weir_cmd = format!(
        "WEIR_CACHE_DIR={} {} run {}",
        root().join("target/test-component-cache").display(),
        env!("CARGO_BIN_EXE_weir"),
        manifest.display()
    );
    let mut cmd = std::process::Command::new("script");
    cmd.args(["-qefc", &weir_cmd, "/dev/null"]);
    let out = run_bounded(cmd, std::time::Duration::from_secs(60));
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{tty}");
    // The status line is redrawn in place (carriage return + erase line) several times.
    assert!(tty.matches("\r\x1b[2K").count() >= 3, "{tty:?}");
    assert!(tty.contains(" records/s)  out "), "{tty:?}");
    assert!(tty.contains("job `live` finished"), "{tty:?}");
    assert!(
        tty.contains("3000 records in, 24000 records out"),
        "{tty:?}"
    );
}

/// A job `name`: a paced datagen source (`source` holds its settings) -> split -> a file sink.
fn paced_job(dir: &std::path::Path, name: &str, source: &str) -> std::path::PathBuf {
    write_manifest(
        dir,
        &format!(
            r#"edges = ["gen -> split", "split -> out"]
[job]
name = "{name}"
[sources.gen]
kind = "datagen"
{source}
[operators.split]
component = "{split}"
[sinks.out]
kind = "file"
path = "{out}"
"#,
            split = component("wordcount_split"),
            out = dir.join("out").display()
        ),
    )
}
