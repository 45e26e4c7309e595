//! Bad manifests and bad components: every mistake gets a message naming the field (with line
//! and column) and what is wrong, from both `validate` and `run`, with a non-zero exit and before
//! anything runs.

mod common;

use common::*;

/// A valid word-count manifest; tests break one thing in it.
fn manifest() -> String {
    format!(
        r#"edges = ["lines -> split", "split -> count", "count -> out"]

[job]
max_parallelism = 4

[sources.lines]
kind = "file"
path = "input.txt"

[operators.split]
component = "{split}"
parallelism = 2

[operators.count]
component = "{count}"
partition = "hash"

[sinks.out]
kind = "file"
path = "out"
"#,
        split = component("wordcount_split"),
        count = component("wordcount_count"),
    )
}

/// Writes `text` as a manifest, runs `validate` and `run` on it, checks both fail with the same
/// error and that nothing ran; returns the message.
fn refused(text: &str, sets: &[&str]) -> String {
    let dir = scratch();
    std::fs::write(dir.path().join("input.txt"), "some words\n").unwrap();
    let path = dir.path().join("job.toml");
    std::fs::write(&path, text).unwrap();
    let mut args = vec![path.to_str().unwrap()];
    for s in sets {
        args.extend(["--set", s]);
    }
    let validate = run_err(&[&["validate"], args.as_slice()].concat());
    let run = run_err(&[&["run"], args.as_slice()].concat());
    assert_eq!(validate, run, "validate and run report the same error");
    assert!(
        !dir.path().join("out").exists(),
        "nothing ran: the sink directory was not created"
    );
    validate
}

#[test]
fn the_base_manifest_is_valid() {
    let dir = scratch();
    std::fs::write(dir.path().join("input.txt"), "a b a\n").unwrap();
    let path = dir.path().join("job.toml");
    std::fs::write(&path, manifest()).unwrap();
    run_ok(&["validate", path.to_str().unwrap()]);
    run_ok(&["run", path.to_str().unwrap()]);
    assert_eq!(sink_lines(&dir.path().join("out")).len(), 3);
}

#[test]
fn unknown_operator_in_an_edge() {
    let e = refused(
        &manifest().replace("\"split -> count\"", "\"split -> cuont\""),
        &[],
    );
    assert!(
        e.contains("job.toml:1:28: edges: unknown operator `cuont` in edge `split -> cuont`"),
        "{e}"
    );
    assert!(e.contains("known: count, lines, out, split"), "{e}");
}

#[test]
fn cycle() {
    let text = manifest().replace(r#""count -> out"]"#, r#""count -> out", "count -> split"]"#);
    let e = refused(&text, &[]);
    assert!(
        e.contains("edges: the edges form a cycle through count, split"),
        "{e}"
    );
    assert!(e.contains("job.toml:1:"), "{e}");
}

#[test]
fn parallelism_above_max_parallelism() {
    let e = refused(&manifest(), &["operators.count.parallelism=8"]);
    assert!(
        e.contains("operators.count.parallelism: parallelism 8 exceeds job.max_parallelism 4"),
        "{e}"
    );
    let e = refused(
        &manifest().replace("parallelism = 2", "parallelism = 5"),
        &[],
    );
    assert!(
        e.contains("job.toml:12:15: operators.split.parallelism: parallelism 5 exceeds"),
        "{e}"
    );
    let e = refused(
        &manifest().replace("parallelism = 2", "parallelism = 0"),
        &[],
    );
    assert!(
        e.contains("operators.split.parallelism: parallelism must be at least 1"),
        "{e}"
    );
}

#[test]
fn missing_component_file() {
    let e = refused(
        &manifest().replace("wordcount_count.wasm", "nope.wasm"),
        &[],
    );
    assert!(
        e.contains("job.toml:15:13: operators.count.component: component file"),
        "{e}"
    );
    assert!(e.contains("nope.wasm does not exist"), "{e}");
}

#[test]
fn component_of_the_wrong_world() {
    let e = refused(
        &manifest().replace("wordcount_count.wasm", "faulty_wrong_world.wasm"),
        &[],
    );
    assert!(e.contains("operator `count`"), "{e}");
    assert!(
        e.contains("does not implement the weir:operator/operator@0.1.0 world"),
        "{e}"
    );
}

#[test]
fn a_file_that_is_not_a_component() {
    let dir = scratch();
    let fake = dir.path().join("fake.wasm");
    std::fs::write(&fake, b"\0asm\x01\0\0\0").unwrap();
    let e = refused(
        &manifest().replace(&component("wordcount_count"), fake.to_str().unwrap()),
        &[],
    );
    assert!(
        e.contains("operator `count`") && e.contains("is not a valid WebAssembly component"),
        "{e}"
    );
    assert!(e.contains("not a component (a core module"), "{e}");
}

#[test]
fn misspelled_and_misplaced_fields() {
    let e = refused(
        &manifest().replace("partition = \"hash\"", "partitoin = \"hash\""),
        &[],
    );
    assert!(
        e.contains("job.toml:16:1: unknown field `partitoin`"),
        "{e}"
    );
    let e = refused(
        &manifest().replace("partition = \"hash\"", "partition = \"hashed\""),
        &[],
    );
    assert!(
        e.contains("job.toml:16:13: operators.count.partition: unknown partitioning `hashed`"),
        "{e}"
    );
    let e = refused(&manifest(), &["sources.lines.seed=4"]);
    assert!(
        e.contains("sources.lines.seed: does not apply to a `file` connector"),
        "{e}"
    );
    let e = refused(
        &manifest().replace("kind = \"file\"\npath = \"out\"", "kind = \"kafka\""),
        &[],
    );
    assert!(
        e.contains("sinks.out.kind: unknown sink kind `kafka`; use file, stdout or latency"),
        "{e}"
    );
}

#[test]
fn forward_between_different_parallelism() {
    let e = refused(&manifest(), &["operators.split.partition=forward"]);
    assert!(e.contains("operators.split.partition: forward needs equal parallelism, but `lines` has 1 and `split` has 2"), "{e}");
}

#[test]
fn edges_that_cannot_be() {
    let e = refused(
        &manifest().replace("\"count -> out\"", "\"count -> out\", \"out -> split\""),
        &[],
    );
    assert!(
        e.contains("edges: `out` is a sink and has no output"),
        "{e}"
    );
    let e = refused(
        &manifest().replace("\"count -> out\"", "\"count -> out\", \"count -> lines\""),
        &[],
    );
    assert!(
        e.contains("edges: `lines` is a source and takes no input"),
        "{e}"
    );
    let e = refused(&manifest().replace("\"split -> count\", ", ""), &[]);
    assert!(e.contains("`count` has no input"), "{e}");
    let e = refused(
        &manifest().replace("\"lines -> split\"", "\"lines split\""),
        &[],
    );
    assert!(e.contains("is not of the form \"from -> to\""), "{e}");
}

#[test]
fn toml_syntax_errors_and_bad_overrides() {
    let e = refused(
        &manifest().replace("max_parallelism = 4", "max_parallelism = "),
        &[],
    );
    assert!(e.contains("job.toml:4:"), "{e}");
    let e = refused(&manifest(), &["job.max_parallelism.x=1"]);
    assert!(
        e.contains("--set job.max_parallelism.x: `job.max_parallelism` is not a table"),
        "{e}"
    );
    let e = refused(&manifest(), &["job.max_parallelism=40000"]);
    assert!(
        e.contains("job.max_parallelism: must be between 1 and 32768"),
        "{e}"
    );
}

#[test]
fn missing_input_file_and_manifest() {
    let e = refused(&manifest().replace("input.txt", "missing.txt"), &[]);
    assert!(
        e.contains("job.toml:8:8: sources.lines.path: input file")
            && e.contains("missing.txt does not exist"),
        "{e}"
    );
    let e = run_err(&["run", "/nonexistent/job.toml"]);
    assert!(
        e.contains("/nonexistent/job.toml: cannot read the manifest"),
        "{e}"
    );
}

#[test]
fn numbers_past_what_the_engine_can_do_are_refused_where_they_are() {
    for (set, message) in [
        (
            "job.flush_ms=600001",
            "job.flush_ms: 600001 is out of range: must be between 0 and 600000 ms",
        ),
        (
            "limits.call_timeout_ms=3600001",
            "limits.call_timeout_ms: 3600001 is out of range: must be between 1 and 3600000 ms",
        ),
        (
            "limits.state_mib=0",
            "limits.state_mib: 0 is out of range: must be between 1 and 1048576",
        ),
        (
            "limits.log_lines_per_s=0",
            "limits.log_lines_per_s: 0 is out of range",
        ),
        (
            "limits.component_mib=5000",
            "limits.component_mib: 5000 is out of range: must be between 1 and 4096",
        ),
        (
            "sinks.out.delay_us=9223372036854775807",
            "sinks.out.delay_us: 9223372036854775807 is out of range: must be between 0 and 1000000 us per record",
        ),
        (
            "job.network_mib=1",
            "the job's channels may hold up to 1 MiB of buffers (36 of job.buffer_bytes = 32768), over job.network_mib = 1 MiB",
        ),
    ] {
        let e = refused(&manifest(), &[set]);
        assert!(e.contains(message), "--set {set}: {e}");
    }
    // The position is the field's own.
    let e = refused(
        &manifest().replace(
            "kind = \"file\"\npath = \"input.txt\"",
            "kind = \"datagen\"\nwords_per_line = 4294967295",
        ),
        &[],
    );
    assert!(
        e.contains("job.toml:8:18: sources.lines.words_per_line: 4294967295 is out of range: must be between 1 and 10000"),
        "{e}"
    );
    let e = refused(
        &manifest().replace(
            "kind = \"file\"\npath = \"input.txt\"",
            "kind = \"datagen\"\nrate = 1e10",
        ),
        &[],
    );
    assert!(
        e.contains("sources.lines.rate: rate must be between 0.001 and 1e9 records per second"),
        "{e}"
    );
    // Every subtask is a thread: a job of more than 4096 is refused.
    let e = refused(
        &manifest().replace(
            "max_parallelism = 4",
            "max_parallelism = 4096\nparallelism = 4096",
        ),
        &[],
    );
    assert!(
        e.contains("job.parallelism: the job has 12290 subtasks (every node's parallelism added up); one process runs at most 4096"),
        "{e}"
    );
}

#[test]
fn uids_and_side_output_names_are_bounded() {
    let long = "o".repeat(129);
    let e = refused(
        &manifest()
            .replace("[operators.split]", &format!("[operators.{long}]"))
            .replace(
                "\"lines -> split\", \"split -> count\"",
                &format!("\"lines -> {long}\", \"{long} -> count\""),
            ),
        &[],
    );
    assert!(
        e.contains(&format!(
            "operators.{long}: a uid is 1 to 128 letters, digits, `_` or `-`"
        )),
        "{e}"
    );
    let e = refused(
        &manifest().replace("\"count -> out\"", "\"count -> out\", \"count.x/y -> out\""),
        &[],
    );
    assert!(
        e.contains("edges: side output `x/y` in edge `count.x/y -> out`: a side-output name is 1 to 128 letters, digits, `_` or `-`"),
        "{e}"
    );
}

#[test]
fn checkpoint_and_restart_settings_are_checked() {
    for (extra, message) in [
        (
            "[checkpoint]\ninterval = \"fast\"",
            "checkpoint.interval: `fast` is not a duration such as \"500ms\", \"1s\" or \"2m\"",
        ),
        (
            "[checkpoint]\ninterval = \"5ms\"",
            "checkpoint.interval: `5ms` is out of range: must be between 10ms and 86400s",
        ),
        (
            "[checkpoint]\nmode = \"twice\"",
            "checkpoint.mode: unknown value `twice`; use exactly_once or at_least_once",
        ),
        (
            "[checkpoint]\nbackend = \"rocksdb\"",
            "checkpoint.backend: unknown value `rocksdb`; use memory or redb",
        ),
        (
            "[checkpoint]\nincremental = 1",
            "invalid type: integer `1`, expected a boolean",
        ),
        (
            "[restart]\nstrategy = \"sometimes\"",
            "restart.strategy: unknown strategy `sometimes`; use fixed_delay, exponential_delay or none",
        ),
        (
            "[restart]\nstrategy = \"fixed_delay\"\nmultiplier = 2.0",
            "restart.multiplier: does not apply to a `fixed_delay` strategy",
        ),
        (
            "[restart]\nstrategy = \"exponential_delay\"\nmultiplier = 0.5",
            "restart.multiplier: must be between 1 and 100",
        ),
    ] {
        let e = refused(&format!("{}\n{extra}\n", manifest()), &[]);
        assert!(e.contains(message), "{extra}: {e}");
    }
}
