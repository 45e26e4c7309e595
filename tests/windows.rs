//! Event time with the real binary and real components: sources stamp records and emit
//! watermarks (after every record, so rows depend only on the input), the host's window
//! operator runs the example window functions, and every assigner gives the rows Flink gives,
//! on time and late, at the edges the rules draw; the same rows at any parallelism and across
//! kills.

mod common;

use common::*;
use std::path::Path;

/// A JSON line of `user` at `ts` ms with `amount`.
fn event(user: &str, ts: i64, amount: u64) -> String {
    format!(r#"{{"user": "{user}", "ts": {ts}, "amount": {amount}}}"#)
}

/// Runs a job over `events` (JSON lines keyed by `user`, timestamps in `ts`, watermarks
/// `watermarks`, after every record unless they set an `interval`) through the window `window`
/// (a TOML table body) into `out`, late records into `late`; returns (out lines, late lines),
/// each in the order written.
fn windows(events: &[String], watermarks: &str, window: &str) -> (Vec<String>, Vec<String>) {
    let watermarks = if watermarks.contains("interval") {
        watermarks.to_string()
    } else {
        format!(r#"{watermarks}, interval = "0s""#)
    };
    let dir = scratch();
    let input = dir.path().join("events.jsonl");
    std::fs::write(&input, events.join("\n") + "\n").unwrap();
    let manifest = write_manifest(
        dir.path(),
        &format!(
            r#"edges = ["events -> w", "w -> out", "w.late -> late"]

[sources.events]
kind = "file"
path = "{input}"
format = "json"
key_field = "user"
timestamp = {{ field = "ts" }}
watermarks = {{ {watermarks} }}

[windows.w]
late_output = "late"
{window}

[sinks.out]
kind = "file"
path = "out"

[sinks.late]
kind = "file"
path = "late"
"#,
            input = input.display(),
        ),
    );
    run_ok(&["run", manifest.to_str().unwrap()]);
    let lines = |d: &str| sink_lines(&dir.path().join(d));
    (lines("out"), lines("late"))
}

fn sum_count() -> String {
    format!(
        r#"function = {{ kind = "aggregate", component = "{}", config = {{ field = "amount" }} }}"#,
        component("windows_sum_count")
    )
}

const MONOTONOUS: &str = r#"strategy = "monotonous""#;

#[test]
fn tumbling_windows_fire_on_their_last_millisecond_and_are_dropped_at_cleanup_time() {
    // Monotonous watermarks: each record's timestamp - 1. Tumbling 10 s, lateness 5 s: [0, 10 s)
    // fires at watermark 9999 and is dropped at 9999 + 5000 = 14999.
    let events = [
        event("a", 1000, 1),
        event("a", 9999, 2),   // watermark 9998: one before the last millisecond
        event("b", 10000, 4),  // watermark 9999: exactly on it, [0, 10 s) of a fires
        event("a", 5000, 8),   // late, within the lateness: fires again at once
        event("b", 14999, 16), // watermark 14998: one before the cleanup time
        event("a", 6000, 32),  // still accepted: fires again
        event("b", 15000, 64), // watermark 14999: exactly the cleanup time, dropped
        event("a", 7000, 128), // beyond the lateness: late output
    ];
    let (out, late) = windows(
        &events,
        MONOTONOUS,
        &format!(
            "assigner = {{ kind = \"tumbling\", size = \"10s\" }}\nallowed_lateness = \"5s\"\n{}",
            sum_count()
        ),
    );
    assert_eq!(
        out,
        [
            "a,0,10000,3,2",
            "a,0,10000,11,3",
            "a,0,10000,43,4",
            // The end of input fires what is left.
            "b,10000,20000,84,3",
        ]
    );
    assert_eq!(late, [events[7].clone()]);
}

#[test]
fn out_of_order_records_within_the_bound_are_on_time_and_the_example_gives_its_rows() {
    // The example: bounded out-of-orderness of 2 s, tumbling 10 s, lateness 5 s.
    let dir = root().join("examples/windows");
    let scratch = scratch();
    let out = scratch.path().join("out");
    let late = scratch.path().join("late");
    run_ok(&[
        "run",
        dir.join("windows.toml").to_str().unwrap(),
        "--set",
        &format!(
            "windows.spend.function.component={}",
            component("windows_sum_count")
        ),
        "--set",
        &format!("sinks.out.path={}", out.display()),
        "--set",
        &format!("sinks.late.path={}", late.display()),
    ]);
    assert_eq!(
        sink_lines(&out),
        [
            "ann,0,10000,7,2",
            "bob,0,10000,3,1",
            "ann,0,10000,17,3",
            "bob,10000,20000,4,1",
            "ann,20000,30000,3,2",
        ]
    );
    assert_eq!(
        sink_lines(&late),
        [r#"{"user": "bob", "ts": 3000, "amount": 7}"#]
    );
}

#[test]
fn sliding_windows_include_those_that_start_before_zero() {
    let events = [
        event("a", 1000, 1),
        event("a", 6000, 2),
        event("a", 12000, 4),
    ];
    let (out, late) = windows(
        &events,
        MONOTONOUS,
        &format!(
            "assigner = {{ kind = \"sliding\", size = \"10s\", slide = \"5s\" }}\n{}",
            sum_count()
        ),
    );
    assert_eq!(
        out,
        [
            "a,-5000,5000,1,1", // watermark 5999
            "a,0,10000,3,2",    // watermark 11999
            "a,5000,15000,6,2", // the end of input, in time order
            "a,10000,20000,4,1",
        ]
    );
    assert!(late.is_empty());
}

#[test]
fn sessions_merge_and_a_late_record_bridges_two_fired_sessions_into_one_that_fires_again() {
    let events = [
        event("a", 1000, 1),   // [1000, 4000)
        event("a", 2000, 2),   // merged: [1000, 5000)
        event("a", 9000, 4),   // watermark 8999: [1000, 5000) fires; [9000, 12000)
        event("a", 13000, 8),  // watermark 12999: [9000, 12000) fires; [13000, 16000)
        event("a", 20000, 32), // watermark 19999: [13000, 16000) fires; [20000, 23000)
        event("a", 11500, 16), // [11500, 14500) touches both fired sessions: one, fired again
        event("b", 100, 64),   // its session [100, 3100) was over long ago: late
    ];
    let (out, late) = windows(
        &events,
        MONOTONOUS,
        &format!(
            "assigner = {{ kind = \"session\", gap = \"3s\" }}\nallowed_lateness = \"10s\"\n{}",
            sum_count()
        ),
    );
    assert_eq!(
        out,
        [
            "a,1000,5000,3,2",
            "a,9000,12000,4,1",
            "a,13000,16000,8,1",
            "a,9000,16000,28,3",
            "a,20000,23000,32,1",
        ]
    );
    assert_eq!(late, [events[6].clone()]);
}

#[test]
fn a_reduce_window_emits_its_value_as_it_stands() {
    let events = [
        event("a", 1000, 5),
        event("a", 2000, 9),
        event("b", 2500, 1),
        event("a", 3000, 2),
    ];
    let (out, _) = windows(
        &events,
        r#"strategy = "bounded_out_of_orderness", max_delay = "1s""#,
        &format!(
            "assigner = {{ kind = \"tumbling\", size = \"10s\" }}\nfunction = {{ kind = \"reduce\", component = \"{}\", config = {{ field = \"amount\" }} }}",
            component("windows_max")
        ),
    );
    assert_eq!(out, [events[1].clone(), events[2].clone()]);
}

#[test]
fn lines_without_a_timestamp_go_to_the_side_output_or_fail_the_job_naming_the_field() {
    let dir = scratch();
    let input = dir.path().join("events.jsonl");
    std::fs::write(
        &input,
        format!(
            "{}\n{{\"user\": \"a\", \"amount\": 3}}\n{}\n",
            event("a", 1000, 1),
            event("a", 2000, 2)
        ),
    )
    .unwrap();
    let manifest = |invalid: &str| {
        format!(
            r#"edges = ["events -> w", "w -> out", "events.bad -> bad"]
[sources.events]
kind = "file"
path = "{input}"
format = "json"
key_field = "user"
timestamp = {{ field = "ts", invalid = "{invalid}" }}
watermarks = {{ strategy = "monotonous", interval = "0s" }}
[windows.w]
assigner = {{ kind = "tumbling", size = "10s" }}
{function}
[sinks.out]
kind = "file"
path = "out"
[sinks.bad]
kind = "file"
path = "bad"
"#,
            input = input.display(),
            function = sum_count()
        )
    };
    let path = write_manifest(dir.path(), &manifest("bad"));
    run_ok(&["run", path.to_str().unwrap()]);
    assert_eq!(sink_lines(&dir.path().join("out")), ["a,0,10000,3,2"]);
    assert_eq!(
        sink_lines(&dir.path().join("bad")),
        [r#"{"user": "a", "amount": 3}"#]
    );

    // `fail`: the job fails naming the field and where the line is; the edge from `bad` is
    // refused since the source has no such output then.
    let text = manifest("fail").replace(r#", "events.bad -> bad""#, "");
    let text = text.replace("[sinks.bad]\nkind = \"file\"\npath = \"bad\"\n", "");
    let path = write_manifest(dir.path(), &text);
    let e = run_err(&["run", path.to_str().unwrap()]);
    assert!(
        e.contains("events.jsonl at byte 39: timestamp field `ts` is missing"),
        "{e}"
    );
}

#[test]
fn bad_window_settings_are_refused_with_the_field_and_a_warning_names_an_unused_late_output() {
    let dir = scratch();
    let input = dir.path().join("events.jsonl");
    std::fs::write(&input, event("a", 1, 1) + "\n").unwrap();
    let job = |window: &str, edges: &str| {
        format!(
            r#"edges = ["events -> w", "w -> out"{edges}]
[sources.events]
kind = "file"
path = "{input}"
format = "json"
timestamp = {{ field = "ts" }}
watermarks = {{ strategy = "monotonous" }}
[windows.w]
{window}
{function}
[sinks.out]
kind = "file"
path = "out"
"#,
            input = input.display(),
            function = sum_count()
        )
    };
    for (window, wanted) in [
        (
            r#"assigner = { kind = "tumbling", size = "0s" }"#,
            "windows.w.assigner.size: `0s` is too short",
        ),
        (
            r#"assigner = { kind = "sliding", size = "5s", slide = "10s" }"#,
            "windows.w.assigner.slide: the slide is larger than the size",
        ),
        (
            "assigner = { kind = \"tumbling\", size = \"1s\" }\ntime = \"processing\"\nallowed_lateness = \"1s\"",
            "windows.w.allowed_lateness: processing-time windows have no late records",
        ),
        (
            r#"assigner = { kind = "session" }"#,
            "windows.w.assigner.gap: a session window needs `gap`",
        ),
        (
            r#"assigner = { kind = "hopping", size = "1s" }"#,
            "windows.w.assigner.kind: unknown assigner `hopping`",
        ),
        (
            r#"assigner = { kind = "global" }"#,
            "windows.w.trigger: a global window never ends",
        ),
        (
            r#"assigner = { kind = "count", size = 2, slide = 3 }"#,
            "windows.w.assigner.slide: the slide is larger than the size",
        ),
        (
            r#"assigner = { kind = "count", size = "2s" }"#,
            "windows.w.assigner.size: a count window's size and slide are numbers of records",
        ),
        (
            "assigner = { kind = \"count\", size = 2 }\ntrigger = { kind = \"count\", count = 5 }",
            "windows.w.trigger: count windows fire every `slide` records",
        ),
        (
            "assigner = { kind = \"tumbling\", size = \"1s\" }\ntrigger = { kind = \"purging\" }",
            "windows.w.trigger: unknown trigger `purging`",
        ),
        (
            "assigner = { kind = \"tumbling\", size = \"1s\" }\ntrigger = { kind = \"continuous\" }",
            "windows.w.trigger: a continuous trigger needs `interval`",
        ),
        (
            "assigner = { kind = \"tumbling\", size = \"1s\" }\ntrigger = \"processing-time\"",
            "windows.w.trigger: a `processing-time` trigger fires by the other clock",
        ),
    ] {
        let path = write_manifest(dir.path(), &job(window, ""));
        let e = run_err(&["validate", path.to_str().unwrap()]);
        assert!(e.contains(wanted), "{window}: {e}");
        assert!(e.contains("job.toml:"), "the line is named: {e}");
    }
    let path = write_manifest(
        dir.path(),
        &job(
            "assigner = { kind = \"tumbling\", size = \"1s\" }\nlate_output = \"late\"",
            "",
        ),
    );
    let out = run_ok(&["validate", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning:")
            && stderr.contains("windows.w.late_output: no edge takes `w.late`"),
        "{stderr}"
    );
    let path = write_manifest(
        dir.path(),
        &job(
            r#"assigner = { kind = "tumbling", size = "1s" }"#,
            r#", "w.late -> out""#,
        ),
    );
    let e = run_err(&["validate", path.to_str().unwrap()]);
    assert!(
        e.contains(
            "window `w`'s only side output is the one its `late_output` names (it sets none)"
        ),
        "{e}"
    );
}

/// The reference window workload over `n` records at `parallelism`, rows written by the sink
/// (transactional, with `extra` settings); the job's directory.
fn reference_job(dir: &Path, n: u64, size: &str, extra: &str) -> std::path::PathBuf {
    write_manifest(
        dir,
        &format!(
            r#"edges = ["gen -> sums", "sums -> out"]
[sources.gen]
kind = "wasm"
component = "{gen}"
config = {{ workload = "window", n = {n} }}
watermarks = {{ strategy = "bounded_out_of_orderness", max_delay = "2s", interval = "50ms" }}
[windows.sums]
assigner = {{ kind = "tumbling", size = "{size}" }}
function = {{ kind = "aggregate", component = "{sum_count}" }}
[sinks.out]
kind = "file"
path = "{out}"
{extra}
"#,
            gen = component("bench_gen"),
            sum_count = component("windows_sum_count"),
            out = dir.join("out").display(),
        ),
    )
}

fn sorted(mut lines: Vec<String>) -> Vec<String> {
    lines.sort();
    lines
}

#[test]
fn parallelism_one_and_four_give_the_same_rows() {
    let mut rows = Vec::new();
    for p in [1, 4] {
        let dir = scratch();
        let manifest = reference_job(dir.path(), 100_000, "1s", "");
        run_ok(&[
            "run",
            manifest.to_str().unwrap(),
            "--set",
            &format!("job.parallelism={p}"),
        ]);
        rows.push(sorted(sink_lines(&dir.path().join("out"))));
    }
    // Keys 0..999, 1 s windows over ~12 s of timestamps; every count adds up to n.
    let total: u64 = rows[0]
        .iter()
        .map(|r| r.rsplit(',').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 100_000);
    assert!(rows[0].len() > 10_000, "{}", rows[0].len());
    assert!(rows[0] == rows[1], "parallelism 1 and 4 differ");
}

#[test]
fn a_run_killed_and_resumed_from_checkpoints_gives_the_rows_of_an_unbroken_run() {
    // Small windows (many rows) and a slow sink, so that the job runs long enough to be killed
    // a few times; the sink publishes exactly what each checkpoint covers.
    let slow =
        "delay_us = 15\n[checkpoint]\ninterval = \"100ms\"\nretain = 2\ndir = \"checkpoints\"\n";
    let unbroken = scratch();
    let manifest = reference_job(unbroken.path(), 200_000, "10ms", "");
    run_ok(&["run", manifest.to_str().unwrap()]);
    let want = sorted(sink_lines(&unbroken.path().join("out")));
    assert!(want.len() > 100_000, "{}", want.len());

    let dir = scratch();
    let manifest = reference_job(dir.path(), 200_000, "10ms", slow);
    run_with_kills(&manifest, 3, |run| {
        vec![format!("job.parallelism={}", [2, 3, 1, 2][run as usize])]
    });
    let got = sorted(published(dir.path()));
    assert_eq!(got.len(), want.len(), "every row once");
    assert!(got == want, "the rows differ from the unbroken run's");
}

#[test]
fn an_operators_event_time_timers_fire_as_the_example_says() {
    let dir = root().join("examples/timers");
    let scratch = scratch();
    let out = scratch.path().join("out");
    run_ok(&[
        "run",
        dir.join("inactivity.toml").to_str().unwrap(),
        "--set",
        &format!(
            "operators.quiet.component={}",
            component("timers_inactivity")
        ),
        "--set",
        &format!("sinks.out.path={}", out.display()),
    ]);
    assert_eq!(
        sink_lines(&out),
        [
            "bob quiet since 2000 at 12000",
            "ann quiet since 5000 at 15000",
            "bob quiet since 16000 at 26000",
            "carl quiet since 30000 at 40000",
        ]
    );
}

#[test]
fn timers_are_keyed_state_restored_across_kills_at_another_parallelism() {
    // One source subtask, so that each key's records arrive in the same order in every run
    // (what `inactivity` reports depends on it); the operator's parallelism changes between
    // runs, so timers move between subtasks with their keys.
    let job = |dir: &Path, extra: &str| {
        write_manifest(
            dir,
            &format!(
                r#"edges = ["gen -> quiet", "quiet -> out"]
[sources.gen]
kind = "wasm"
parallelism = 1
component = "{gen}"
config = {{ workload = "window", n = 3000000 }}
watermarks = {{ strategy = "bounded_out_of_orderness", max_delay = "2s", interval = "20ms" }}
[operators.quiet]
component = "{quiet}"
partition = "hash"
config = {{ gap_ms = 150 }}
[sinks.out]
kind = "file"
path = "{out}"
{extra}
"#,
                gen = component("bench_gen"),
                quiet = component("timers_inactivity"),
                out = dir.join("out").display(),
            ),
        )
    };
    let unbroken = scratch();
    run_ok(&["run", job(unbroken.path(), "").to_str().unwrap()]);
    let want = sorted(sink_lines(&unbroken.path().join("out")));
    assert!(want.len() > 10_000, "{}", want.len());

    let dir = scratch();
    let manifest = job(
        dir.path(),
        "delay_us = 10\n[checkpoint]\ninterval = \"100ms\"\nretain = 2\ndir = \"checkpoints\"\n",
    );
    run_with_kills(&manifest, 3, |run| {
        vec![format!(
            "operators.quiet.parallelism={}",
            [2, 3, 1, 2][run as usize]
        )]
    });
    let got = sorted(published(dir.path()));
    assert_eq!(got.len(), want.len(), "every row once");
    assert!(got == want, "the rows differ from the unbroken run's");
}

#[test]
fn an_idle_source_stops_holding_back_the_windows_of_the_others() {
    // `ticks` sends its first record after a second; until then its watermark is the smallest.
    // Idle after 100 ms, it holds nothing back: `events`' windows fire long before the first
    // tick reaches the sink (without the idle timeout they would wait for that tick's
    // watermark).
    let dir = scratch();
    let input = dir.path().join("events.jsonl");
    std::fs::write(
        &input,
        [event("a", 1000, 1), event("a", 12000, 2)].join("\n") + "\n",
    )
    .unwrap();
    let job = |idle: &str| {
        format!(
            r#"edges = ["events -> w", "ticks -> w", "w -> out", "ticks -> out"]
[sources.events]
kind = "file"
path = "{input}"
format = "json"
key_field = "user"
timestamp = {{ field = "ts" }}
watermarks = {{ strategy = "monotonous", interval = "0s" }}
[sources.ticks]
kind = "datagen"
shape = "sequence"
count = 2
rate = 1.0
timestamp = "ingestion"
watermarks = {{ strategy = "monotonous", interval = "20ms"{idle} }}
[windows.w]
assigner = {{ kind = "tumbling", size = "10s" }}
{function}
[sinks.out]
kind = "file"
path = "out"
"#,
            input = input.display(),
            function = sum_count(),
        )
    };
    let path = write_manifest(dir.path(), &job(r#", idle_timeout = "100ms""#));
    run_ok(&["run", path.to_str().unwrap()]);
    // `events` ends at once: with `ticks` idle, nothing holds the window back any more and
    // both of a's windows fire. The ticks come later, their records late for a window
    // operator whose watermark is already the end of time (dropped: no late output).
    assert_eq!(
        sink_lines(&dir.path().join("out")),
        ["a,0,10000,1,1", "a,10000,20000,2,1", "0", "1"]
    );
}

/// The start and end a count or global window reports.
const GLOBAL: &str = "-9223372036854775808,9223372036854775807";

#[test]
fn count_windows_fire_every_slide_records_over_the_last_size_and_never_the_partial_last() {
    let events: Vec<String> = (1..=5).map(|i| event("a", i * 1000, i as u64)).collect();
    let events = [events, vec![event("b", 9000, 100)]].concat();
    // Tumbling: every 2 records of a key, then emptied; a's 5th and b's only one never fire.
    let (out, _) = windows(
        &events,
        MONOTONOUS,
        &format!(
            "assigner = {{ kind = \"count\", size = 2 }}\n{}",
            sum_count()
        ),
    );
    assert_eq!(out, [format!("a,{GLOBAL},3,2"), format!("a,{GLOBAL},7,2")]);
    // Sliding: every 2 records, over the last 3.
    let (out, _) = windows(
        &events,
        MONOTONOUS,
        &format!(
            "assigner = {{ kind = \"count\", size = 3, slide = 2 }}\n{}",
            sum_count()
        ),
    );
    assert_eq!(out, [format!("a,{GLOBAL},3,2"), format!("a,{GLOBAL},9,3")]);
}

#[test]
fn a_count_trigger_fires_a_global_window_as_it_grows_and_a_time_window_only_by_count() {
    let events: Vec<String> = (1..=4).map(|i| event("a", i * 1000, i as u64)).collect();
    let (out, _) = windows(
        &events,
        MONOTONOUS,
        &format!(
            "assigner = {{ kind = \"global\" }}\ntrigger = {{ kind = \"count\", count = 2 }}\n{}",
            sum_count()
        ),
    );
    assert_eq!(out, [format!("a,{GLOBAL},3,2"), format!("a,{GLOBAL},10,4")]);
    // On a time window the count trigger replaces the end: 3 records, one firing at 2; the
    // window is dropped at its cleanup without firing again.
    let (out, _) = windows(
        &events[..3],
        MONOTONOUS,
        &format!(
            "assigner = {{ kind = \"tumbling\", size = \"10s\" }}\ntrigger = {{ kind = \"count\", count = 2 }}\n{}",
            sum_count()
        ),
    );
    assert_eq!(out, ["a,0,10000,3,2"]);
}

#[test]
fn a_process_window_sees_all_its_records_and_emits_any_number() {
    let events = [
        event("a", 1000, 5),
        event("a", 2000, 9),
        event("b", 2500, 1),
        event("a", 3000, 2),
        event("a", 11000, 4),
    ];
    let (out, _) = windows(
        &events,
        MONOTONOUS,
        &format!(
            "assigner = {{ kind = \"tumbling\", size = \"10s\" }}\nfunction = {{ kind = \"process\", component = \"{}\", config = {{ n = 2, field = \"amount\" }} }}",
            component("windows_top")
        ),
    );
    assert_eq!(
        out,
        [
            "a,0,10000,1,9",
            "a,0,10000,2,5",
            "b,0,10000,1,1",
            "a,10000,20000,1,4"
        ]
    );
}

#[test]
fn processing_time_windows_follow_the_clock() {
    // Records' own timestamps do not matter: the windows are those of the wall clock when
    // the records came; the end of input fires them.
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let events = [event("a", 1, 1), event("a", 999_999_999, 2)];
    let (out, _) = windows(
        &events,
        MONOTONOUS,
        &format!(
            "time = \"processing\"\nassigner = {{ kind = \"tumbling\", size = \"1h\" }}\n{}",
            sum_count()
        ),
    );
    assert!(!out.is_empty() && out.len() <= 2, "{out:?}");
    let mut total = 0;
    for row in &out {
        let f: Vec<&str> = row.split(',').collect();
        let (start, end): (i64, i64) = (f[1].parse().unwrap(), f[2].parse().unwrap());
        assert_eq!(end - start, 3_600_000, "{row}");
        assert!(
            start <= before + 60_000 && end > before,
            "{row} around {before}"
        );
        total += f[3].parse::<u64>().unwrap();
    }
    assert_eq!(total, 3);
}

#[test]
fn window_functions_in_python_javascript_and_c_give_the_rust_rows() {
    // Every kind of window function, in each language, over the same events.
    let events = [
        event("a", 1000, 5),
        event("a", 2000, 9),
        event("b", 2500, 1),
        event("a", 3000, 2),
        event("a", 11000, 4),
    ];
    let sessions = "assigner = { kind = \"session\", gap = \"5s\" }";
    let tumbling = "assigner = { kind = \"tumbling\", size = \"10s\" }";
    let function = |kind: &str, component: &str, config: &str| {
        format!(
            "function = {{ kind = \"{kind}\", component = \"{component}\", config = {{ {config} }} }}"
        )
    };
    let rows = |assigner: &str, kind: &str, component: String, config: &str| {
        windows(
            &events,
            MONOTONOUS,
            &format!("{assigner}\n{}", function(kind, &component, config)),
        )
        .0
    };
    for (assigner, kind, name, config) in [
        (
            sessions,
            "aggregate",
            "windows_sum_count",
            r#"field = "amount""#,
        ),
        (tumbling, "reduce", "windows_max", r#"field = "amount""#),
        (
            tumbling,
            "process",
            "windows_top",
            r#"n = 2, field = "amount""#,
        ),
    ] {
        let rust = rows(assigner, kind, component(name), config);
        assert!(!rust.is_empty());
        for (lang, other) in [
            ("python", python_component(name)),
            ("javascript", js_component(name)),
            ("c", c_component(name)),
        ] {
            assert_eq!(rows(assigner, kind, other, config), rust, "{lang} {kind}");
        }
    }
}

#[test]
fn a_continuous_trigger_fires_every_interval_of_event_time_and_at_the_end() {
    // Tumbling 10 s, firing every 2 s of event time from each window's first record.
    let events = [
        event("a", 1000, 1),  // a's window fires from 2000 on, every 2 s
        event("a", 3500, 2),  // watermark 3499: the firing at 2000
        event("a", 6000, 4),  // watermark 5999: at 4000
        event("b", 12000, 8), // watermark 11999: at 6000 and 8000, then the end (9999)
    ];
    let (out, _) = windows(
        &events,
        MONOTONOUS,
        &format!(
            "assigner = {{ kind = \"tumbling\", size = \"10s\" }}\ntrigger = {{ kind = \"continuous\", interval = \"2s\" }}\n{}",
            sum_count()
        ),
    );
    let b = "b,10000,20000,8,1";
    assert_eq!(
        out,
        [
            "a,0,10000,3,2",
            "a,0,10000,7,3",
            "a,0,10000,7,3",
            "a,0,10000,7,3",
            "a,0,10000,7,3",
            // The end of input: b's firings at 14000, 16000 and 18000, then its end.
            b,
            b,
            b,
            b,
        ]
    );
}

#[test]
fn sessions_that_grow_and_bridge_within_one_batch_add_up_as_record_by_record() {
    // No watermark before the end (an hour's interval): the records come in one batch and
    // every merge happens within it, with records gathered for the sessions that merge (one
    // session, or two a record bridges); the end of input fires the sessions.
    let events = [
        event("a", 1000, 1),
        event("a", 1200, 2),   // [1000, 1700)
        event("a", 5000, 4),   // [5000, 5500)
        event("a", 5100, 8),   // [5000, 5600)
        event("a", 1300, 16),  // [1000, 1800)
        event("a", 3000, 32),  // [3000, 3500)
        event("a", 4600, 64),  // overlaps [5000, 5600): [4600, 5600)
        event("a", 1800, 128), // touches [1000, 1800): [1000, 2300)
        event("a", 2500, 256), // touches [3000, 3500): [2500, 3500)
        event("a", 2300, 512), // bridges [1000, 2300) and [2500, 3500)
    ];
    let (out, _) = windows(
        &events,
        r#"strategy = "monotonous", interval = "1h""#,
        &format!(
            "assigner = {{ kind = \"session\", gap = \"500ms\" }}\n{}",
            sum_count()
        ),
    );
    assert_eq!(out, ["a,1000,3500,947,7", "a,4600,5600,76,3"]);
}
