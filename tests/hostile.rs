//! Guests that attack the host rather than their own sandbox (`examples/faulty/hostile`): each
//! tries to make the weir process grow without bound, hang, ignore cancellation or blame the
//! wrong cause, and each is stopped with an error naming the operator, the subtask and the bound.
//! Flood tests state the peak resident memory the weir process stays under.

mod common;

use common::*;
use std::path::Path;
use std::time::Duration;

/// The manifest (in `dir`) of `src -> bad -> out`: ten sequence records into the hostile
/// operator in `mode` (with `n` if given), `limits` as the body of `[limits]`.
fn hostile_job(dir: &Path, mode: &str, n: Option<u64>, limits: &str) -> std::path::PathBuf {
    let config = match n {
        Some(n) => format!(r#"{{ mode = "{mode}", n = {n} }}"#),
        None => format!(r#"{{ mode = "{mode}" }}"#),
    };
    one_operator_manifest(
        dir,
        &format!("parallelism = 1\n[limits]\n{limits}"),
        "kind = \"datagen\"\ncount = 10\nshape = \"sequence\"",
        "bad",
        &component("faulty_hostile"),
        &config,
        &dir.join("out"),
    )
}

/// Runs `weir run` on `manifest` (bounded by `limit`, with SIGINTs at `interrupts`).
fn run_job(manifest: &Path, limit: Duration, interrupts: &[Duration]) -> Measured {
    let mut cmd = weir();
    cmd.args(["run", manifest.to_str().unwrap()]);
    run_measured(cmd, limit, interrupts)
}

/// Runs the job, which must fail; returns its stderr and peak memory.
fn fails(manifest: &Path, limit: Duration) -> Measured {
    let m = run_job(manifest, limit, &[]);
    assert_eq!(m.code, Some(1), "stderr:\n{}", m.stderr);
    m
}

const FAILED: &str = "error: operator `bad` (subtask 0 of 1) failed: ";

#[test]
fn emitting_empty_batches_in_a_loop_stops_at_the_output_limit() {
    let dir = scratch();
    let m = fails(
        &hostile_job(dir.path(), "emit-empty", None, "memory_mib = 16"),
        Duration::from_secs(60),
    );
    assert!(
        m.stderr.contains(&format!(
            "{FAILED}in process: the operator emitted more than 16 MiB in one call (262145 emit calls"
        )),
        "{}",
        m.stderr
    );
    // The guest's 16 MiB, one call's 16 MiB of output and the process itself.
    assert!(m.peak_mib < 128, "peak {} MiB", m.peak_mib);
}

#[test]
fn a_megabyte_side_output_name_is_refused() {
    let dir = scratch();
    let m = fails(
        &hostile_job(dir.path(), "side-name", None, "memory_mib = 16"),
        Duration::from_secs(60),
    );
    assert!(
        m.stderr.contains(&format!(
            "{FAILED}in process: the operator emitted to a side output named `{}...` (1048576 bytes); side-output names are 1 to 128",
            "x".repeat(40)
        )),
        "{}",
        m.stderr
    );
    assert!(m.stderr.len() < 4096, "the name is not printed whole");
    assert!(m.peak_mib < 128, "peak {} MiB", m.peak_mib);
}

#[test]
fn emits_to_a_side_output_no_edge_consumes_count_against_the_limit() {
    // A valid name without an edge: each batch is dropped, but each call still counts.
    let dir = scratch();
    let m = fails(
        &hostile_job(dir.path(), "side-name", Some(10), "memory_mib = 16"),
        Duration::from_secs(60),
    );
    assert!(
        m.stderr.contains(&format!(
            "{FAILED}in process: the operator emitted more than 16 MiB in one call"
        )),
        "{}",
        m.stderr
    );
    assert!(m.peak_mib < 128, "peak {} MiB", m.peak_mib);
}

#[test]
fn a_guest_asleep_in_wasi_is_stopped_at_its_call_timeout() {
    // It asks for a 60 s sleep; the call may take 1 s.
    let dir = scratch();
    let m = fails(
        &hostile_job(dir.path(), "sleep", None, "call_timeout_ms = 1000"),
        Duration::from_secs(30),
    );
    assert!(
        m.stderr.contains(&format!(
            "{FAILED}a call to process ran past the limit of 1000 ms (limits.call_timeout_ms); the operator was blocked in a WASI call"
        )),
        "{}",
        m.stderr
    );
}

#[test]
fn a_blocking_read_of_stdin_ends_at_once() {
    // WASI offers a guest no file or socket; its stdin is empty and closed, never the host's.
    let dir = scratch();
    let manifest = hostile_job(dir.path(), "stdin", None, "call_timeout_ms = 600000");
    let mut cmd = weir();
    cmd.args(["run", manifest.to_str().unwrap()]);
    let m = run_measured(cmd, Duration::from_secs(30), &[]);
    assert_eq!(m.code, Some(0), "{}", m.stderr);
    let lines = sink_lines(&dir.path().join("out"));
    assert_eq!(lines.len(), 10, "{lines:?}");
    assert!(lines.iter().all(|l| l == "stdin: 0 bytes"), "{lines:?}");
}

/// Runs a job whose guest never returns on its own within the test, sends Ctrl-C twice, and
/// checks that the job ends as cancelled.
fn second_ctrl_c_ends(manifest: &Path) {
    let m = run_job(
        manifest,
        Duration::from_secs(30),
        &[Duration::from_millis(1500), Duration::from_millis(1800)],
    );
    assert_eq!(m.code, Some(1), "stderr:\n{}", m.stderr);
    assert!(
        m.stderr
            .contains("error: the job was cancelled: Ctrl-C was pressed twice"),
        "{}",
        m.stderr
    );
    assert!(
        !m.stderr.contains("abandoned"),
        "every task stopped by itself:\n{}",
        m.stderr
    );
}

#[test]
fn a_second_ctrl_c_stops_a_guest_spinning_under_a_long_call_timeout() {
    let dir = scratch();
    let manifest = one_operator_manifest(
        dir.path(),
        "parallelism = 2\n[limits]\ncall_timeout_ms = 600000",
        "kind = \"datagen\"\ncount = 100\nshape = \"sequence\"",
        "bad",
        &component("faulty_spin"),
        "{}",
        &dir.path().join("out"),
    );
    second_ctrl_c_ends(&manifest);
}

#[test]
fn a_second_ctrl_c_stops_a_guest_blocked_in_wasi() {
    let dir = scratch();
    second_ctrl_c_ends(&hostile_job(
        dir.path(),
        "sleep",
        Some(3600),
        "call_timeout_ms = 600000",
    ));
}

#[test]
fn a_failure_elsewhere_stops_a_guest_blocked_in_wasi() {
    // Two branches: `sleeper` sleeps for an hour per record, `bad` panics at record 10. At 20
    // records a second, the sleeper is asleep long before `bad` fails.
    let dir = scratch();
    let manifest = write_manifest(
        dir.path(),
        &format!(
            r#"edges = ["src -> sleeper", "src -> bad", "sleeper -> out", "bad -> out"]
[limits]
call_timeout_ms = 600000
[sources.src]
kind = "datagen"
count = 100
rate = 20
shape = "sequence"
[operators.sleeper]
component = "{hostile}"
config = {{ mode = "sleep", n = 3600 }}
[operators.bad]
component = "{panic}"
config = {{ panic_on = "10" }}
[sinks.out]
kind = "file"
path = "{out}"
"#,
            hostile = component("faulty_hostile"),
            panic = component("faulty_panic"),
            out = dir.path().join("out").display(),
        ),
    );
    let m = fails(&manifest, Duration::from_secs(30));
    assert!(
        m.stderr
            .contains(&format!("{FAILED}the operator panicked in process"))
            && m.stderr.contains("guest gave up on record \"10\""),
        "{}",
        m.stderr
    );
    assert!(!m.stderr.contains("abandoned"), "{}", m.stderr);
}

#[test]
fn keyed_state_stops_at_its_budget() {
    // 10 KB values for a million keys: 10 GB, against a 64 MiB budget.
    let dir = scratch();
    let m = fails(
        &hostile_job(
            dir.path(),
            "state-flood",
            None,
            "memory_mib = 16\nstate_mib = 64",
        ),
        Duration::from_secs(60),
    );
    assert!(
        m.stderr.contains(&format!(
            "{FAILED}in process: keyed state would grow past limits.state_mib = 64 MiB in this subtask (writing state \"flood\")"
        )),
        "{}",
        m.stderr
    );
    // The 64 MiB of state as the host stores it, the guest's 16 MiB and the process.
    assert!(m.peak_mib < 192, "peak {} MiB", m.peak_mib);
}

/// Runs the hostile operator in flooding `mode` with `n`, under `WEIR_LOG=log`: the job must
/// succeed; its stderr and peak memory.
fn flood(mode: &str, n: u64, log: &str) -> Measured {
    let dir = scratch();
    let mut cmd = weir();
    let manifest = hostile_job(dir.path(), mode, Some(n), "");
    cmd.env("WEIR_LOG", log)
        .args(["run", manifest.to_str().unwrap()]);
    let m = run_measured(cmd, Duration::from_secs(120), &[]);
    assert_eq!(
        m.code,
        Some(0),
        "{}",
        &m.stderr[m.stderr.len().saturating_sub(2000)..]
    );
    m
}

#[test]
fn a_log_flood_is_limited_per_subtask_and_what_was_dropped_is_said() {
    // Two million lines at info level, shown (WEIR_LOG=info), against 100 lines a second.
    let m = flood("log-flood", 200_000, "info");
    let shown = m.stderr.matches("flood line").count();
    assert!(
        (100..2_000).contains(&shown),
        "{shown} lines shown of 2,000,000"
    );
    assert!(
        m.stderr
            .contains("log lines of this subtask: over limits.log_lines_per_s = 100"),
        "{}",
        &m.stderr[m.stderr.len().saturating_sub(2000)..]
    );
    let dropped: u64 = m
        .stderr
        .lines()
        .filter_map(|l| {
            l.split_once("dropped ")?
                .1
                .split_once(' ')?
                .0
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert_eq!(
        dropped + shown as u64,
        2_000_000,
        "every line shown or counted"
    );
    assert!(m.peak_mib < 64, "peak {} MiB", m.peak_mib);
}

/// What a guest prints to stdout and stderr reaches the host's log line by line, tagged with
/// its operator and subtask, under the same per-subtask limit as its log calls.
#[test]
fn a_guests_stdout_and_stderr_are_logged_under_the_limit() {
    let m = flood("print", 20_000, "warn,weir=info");
    let out = m.stderr.lines().filter(|l| l.contains("out line")).count();
    let err = m.stderr.lines().filter(|l| l.contains("err line")).count();
    assert!(
        out > 0 && err > 0,
        "{}",
        &m.stderr[..m.stderr.len().min(3000)]
    );
    assert!(out + err < 2_000, "{out} + {err} lines shown of 400,000");
    let line = m.stderr.lines().find(|l| l.contains("out line 0")).unwrap();
    assert!(
        line.contains("operator=\"bad\"") || line.contains("operator=bad"),
        "{line}"
    );
    assert!(
        line.contains("subtask=0") && line.contains("stdout"),
        "{line}"
    );
    assert!(
        m.stderr
            .contains("log lines of this subtask: over limits.log_lines_per_s")
    );
    assert!(m.peak_mib < 64, "peak {} MiB", m.peak_mib);
}

#[test]
fn long_log_lines_are_cut_and_escape_codes_never_reach_the_terminal() {
    let dir = scratch();
    let mut cmd = weir();
    cmd.env("WEIR_LOG", "info").args([
        "run",
        hostile_job(dir.path(), "log-huge", None, "")
            .to_str()
            .unwrap(),
    ]);
    let m = run_measured(cmd, Duration::from_secs(60), &[]);
    assert_eq!(m.code, Some(0), "{}", m.stderr);
    // A 10 MB line per record, each cut at 4 KB.
    assert!(
        m.stderr.lines().all(|l| l.len() < 4096 + 256),
        "{} bytes of stderr",
        m.stderr.len()
    );
    assert!(
        m.stderr.contains("yyyy... (10485760 bytes in all)"),
        "{}",
        m.stderr
    );
    // The guest's escape codes are shown escaped, and weir's own log has no colours when
    // stderr is not a terminal.
    assert!(
        m.stderr
            .contains(r"colour \u{1b}[31mred\u{1b}[0m and a bell \u{7}"),
        "{}",
        m.stderr
    );
    assert!(!m.stderr.contains('\x1b'), "{:?}", m.stderr);
    // Each 10 MB line crosses into the host once, and is dropped once it is cut.
    assert!(m.peak_mib < 96, "peak {} MiB", m.peak_mib);
}

#[test]
fn a_panic_message_logged_in_an_earlier_call_is_not_blamed_for_a_trap() {
    // `open` logs what a panic would, without panicking; `process` then overflows its stack.
    let dir = scratch();
    let m = fails(
        &hostile_job(dir.path(), "stale-panic", None, ""),
        Duration::from_secs(60),
    );
    assert!(
        m.stderr
            .contains(&format!("{FAILED}the operator trapped in process")),
        "{}",
        m.stderr
    );
    assert!(
        !m.stderr.contains("stale message logged in open\nerror")
            && !m.stderr.contains("panicked in process"),
        "{}",
        m.stderr
    );
}

#[test]
fn a_component_file_is_checked_for_size_and_preamble_before_it_is_read() {
    let dir = scratch();
    let validate = |component: &Path| {
        let manifest = one_operator_manifest(
            dir.path(),
            "",
            "kind = \"datagen\"\ncount = 1",
            "op",
            component.to_str().unwrap(),
            "{}",
            &dir.path().join("out"),
        );
        let mut cmd = weir();
        cmd.args(["validate", manifest.to_str().unwrap()]);
        let m = run_measured(cmd, Duration::from_secs(60), &[]);
        assert_eq!(m.code, Some(1), "{}", m.stderr);
        assert!(m.peak_mib < 64, "peak {} MiB", m.peak_mib);
        m.stderr
    };
    // 6 GiB, sparse: nothing of it is ever read.
    let big = dir.path().join("big.wasm");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(6 << 30).unwrap();
    let e = validate(&big);
    assert!(
        e.contains("big.wasm is 6144 MiB, over the limit of 256 MiB (limits.component_mib)"),
        "{e}"
    );
    // 200 MiB that is not WebAssembly: refused from its first bytes.
    let junk = dir.path().join("junk.wasm");
    std::fs::File::create(&junk)
        .unwrap()
        .set_len(200 << 20)
        .unwrap();
    let e = validate(&junk);
    assert!(
        e.contains("junk.wasm is not a valid WebAssembly component: not a component"),
        "{e}"
    );
    // A FIFO is refused without waiting for a writer.
    let fifo = dir.path().join("fifo.wasm");
    mkfifo(&fifo);
    let e = validate(&fifo);
    assert!(
        e.contains("fifo.wasm is not a regular file (it is a FIFO)"),
        "{e}"
    );
}

/// Makes a FIFO at `path`.
fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(status.success());
}

/// The manifest of `src -> out`: a file source reading `input`, a file sink in `dir/out` with
/// `sink` in its table.
fn file_job(dir: &Path, input: &Path, sink: &str) -> std::path::PathBuf {
    write_manifest(
        dir,
        &format!(
            "edges = [\"src -> out\"]\n[sources.src]\nkind = \"file\"\npath = \"{}\"\n[sinks.out]\nkind = \"file\"\npath = \"{}\"\n{sink}\n",
            input.display(),
            dir.join("out").display()
        ),
    )
}

#[test]
fn a_file_source_refuses_what_is_not_a_regular_file() {
    let dir = scratch();
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    for (input, what) in [
        (fifo.as_path(), "is not a regular file (it is a FIFO)"),
        (
            Path::new("/dev/zero"),
            "is not a regular file (it is a character device)",
        ),
        (dir.path(), "is not a regular file (it is a directory)"),
        (
            Path::new("/proc/self/status"),
            "reports a size of 0 bytes but has content",
        ),
    ] {
        let e = run_err(&[
            "validate",
            file_job(dir.path(), input, "").to_str().unwrap(),
        ]);
        assert!(
            e.contains(&format!("sources.src.path: input file {}", input.display()))
                && e.contains(what),
            "{e}"
        );
    }
}

#[test]
fn a_file_that_shrinks_while_it_is_read_fails_the_job() {
    let dir = scratch();
    let input = dir.path().join("in.txt");
    let text: String = (0..1_000_000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&input, &text).unwrap();
    // A slow sink keeps the source reading for a while.
    let manifest = file_job(dir.path(), &input, "delay_us = 20");
    let mut cmd = weir();
    cmd.args(["run", manifest.to_str().unwrap()]);
    let child = spawn(cmd);
    // Once records reach the sink, the source has opened the file: cut it short.
    let part = dir.path().join("out/part-0");
    let start = std::time::Instant::now();
    while std::fs::metadata(&part).map_or(0, |m| m.len()) == 0 {
        assert!(start.elapsed() < Duration::from_secs(60), "no output");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(&input)
        .unwrap()
        .set_len(1000)
        .unwrap();
    let out = wait_bounded(child, Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: source `src` (subtask 0 of 1) failed: ")
            && stderr.contains(&format!(
                "the file ended here, but it had {} bytes when the job started: it shrank while being read",
                text.len()
            )),
        "{stderr}"
    );
}

#[test]
fn a_task_stuck_where_cancellation_cannot_reach_is_abandoned() {
    // A stdout sink writing into a pipe nobody reads blocks in write(2), which no cancellation
    // interrupts: after the second Ctrl-C the job ends anyway, naming the stuck task.
    let dir = scratch();
    let manifest = write_manifest(
        dir.path(),
        "edges = [\"src -> out\"]\n[sources.src]\nkind = \"datagen\"\n[sinks.out]\nkind = \"stdout\"\n",
    );
    let mut cmd = weir();
    cmd.args(["run", manifest.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // stdout is never read, so the pipe fills at once.
    let mut child = cmd.spawn().expect("weir starts");
    std::thread::sleep(Duration::from_millis(1000));
    interrupt(&child);
    std::thread::sleep(Duration::from_millis(300));
    interrupt(&child);
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait works") {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "weir did not exit after the second Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "error: the job was cancelled: Ctrl-C was pressed twice; src-0 did not stop within 2 s of the cancellation and was abandoned"
        ),
        "{stderr}"
    );
}
