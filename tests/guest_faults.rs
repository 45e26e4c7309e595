//! Guests that panic, loop forever or allocate without bound fail their job cleanly and quickly,
//! naming the operator, the subtask and the cause; the process exits non-zero and nothing hangs.

mod common;

use common::*;

fn faulty(component_name: &str, limits: &str) -> String {
    faulty_job(
        &component(component_name),
        r#"{ panic_on = "777" }"#,
        limits,
    )
}

#[test]
fn a_panicking_guest_fails_the_job_with_its_message() {
    let e = faulty("faulty_panic", "");
    // Record 777 goes to subtask 1 (odd indices) of the source, then forward to `bad` subtask 1.
    assert!(
        e.contains("operator `bad` (subtask 1 of 2) failed: the operator panicked in process"),
        "{e}"
    );
    assert!(e.contains("guest gave up on record \"777\""), "{e}");
}

#[test]
fn a_looping_guest_is_stopped_by_the_call_time_limit() {
    let e = faulty("faulty_spin", "[limits]\ncall_timeout_ms = 300");
    assert!(e.contains("operator `bad` (subtask "), "{e}");
    assert!(
        e.contains("a call to process ran past the limit of 300 ms (limits.call_timeout_ms)"),
        "{e}"
    );
}

#[test]
fn a_guest_allocating_without_bound_is_stopped_by_the_memory_limit() {
    let e = faulty("faulty_hog", "[limits]\nmemory_mib = 32");
    assert!(e.contains("operator `bad` (subtask "), "{e}");
    assert!(e.contains("out of memory in process"), "{e}");
    assert!(
        e.contains("past its limit of 32 MiB (limits.memory_mib)"),
        "{e}"
    );
}

#[test]
fn an_operator_returning_an_error_names_it() {
    // The panic guest refuses a config that does not parse into its settings.
    let dir = scratch();
    let manifest = write_manifest(
        dir.path(),
        &format!(
            r#"edges = ["gen -> bad", "bad -> out"]
[sources.gen]
kind = "datagen"
count = 10
[operators.bad]
component = "{component}"
config = {{ panic_on = 5 }}
[sinks.out]
kind = "stdout"
"#,
            component = component("faulty_panic"),
        ),
    );
    let e = run_err(&["run", manifest.to_str().unwrap()]);
    assert!(e.contains("operator `bad` (subtask 0 of 1) failed: the operator returned an error from open: invalid operator config"), "{e}");
}

#[test]
fn a_guest_sees_no_files_environment_wall_clock_or_network() {
    let dir = scratch();
    let manifest = write_manifest(
        dir.path(),
        &format!(
            r#"edges = ["gen -> snoop", "snoop -> out"]
[sources.gen]
kind = "datagen"
count = 1
[operators.snoop]
component = "{component}"
[sinks.out]
kind = "file"
path = "{out}"
"#,
            component = component("faulty_snoop"),
            out = dir.path().join("out").display(),
        ),
    );
    let mut cmd = weir();
    cmd.env("SECRET_TOKEN", "hunter2")
        .args(["run", manifest.to_str().unwrap()]);
    let out = run_bounded(cmd, std::time::Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut found = sink_lines(&dir.path().join("out"));
    found.sort();
    assert_eq!(found.len(), 5, "{found:?}");
    assert_eq!(found[0], "clock: 0 s since the epoch");
    assert_eq!(found[1], "env: 0 variables");
    assert!(found[2].starts_with("files: refused"), "{found:?}");
    assert!(found[3].starts_with("net: refused"), "{found:?}");
    assert!(found[4].starts_with("read: refused"), "{found:?}");
}
