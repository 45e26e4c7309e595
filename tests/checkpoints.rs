//! Checkpoints with the real binary: the word count with a transactional file sink, killed with
//! SIGKILL at random moments and resumed with `--from` each time, must publish every running
//! count of every word exactly once; `--from` refuses what it cannot restore, by name.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A word-count job in `dir` over `input`, checkpointing every 100 ms in `mode`, its sink slowed
/// so that the job runs a few seconds.
fn job(dir: &Path, input: &Path, mode: &str) -> PathBuf {
    wordcount_manifest(
        dir,
        input,
        &format!(
            "delay_us = 10\n[checkpoint]\ninterval = \"100ms\"\nmode = \"{mode}\"\nretain = 2\ndir = \"{}\"\n",
            dir.join("checkpoints").display()
        ),
    )
}

fn input(dir: &Path) -> (PathBuf, String) {
    input_with_vocabulary(dir, 5000)
}

/// [`input`] with `vocabulary` synthetic words.
fn input_with_vocabulary(dir: &Path, vocabulary: u64) -> (PathBuf, String) {
    let text = text_with_vocabulary(3 << 20, 11, vocabulary);
    let path = dir.join("input.txt");
    std::fs::write(&path, &text).unwrap();
    (path, text)
}

#[test]
fn exactly_once_output_under_repeated_kill_9() {
    let dir = scratch();
    let (path, text) = input(dir.path());
    let manifest = job(dir.path(), &path, "exactly_once");
    run_with_kills(&manifest, 5, |_| vec!["job.parallelism=2".into()]);
    assert_running_counts(&published(dir.path()), &count_words(&text), 1);
}

#[test]
fn exactly_once_across_kills_that_change_the_parallelism() {
    // Every node goes 2, 3, 1, 4, 2, 3: keyed state moves between subtasks by key group, the
    // file source's byte ranges by split.
    exactly_once_under_kills(&[], [2, 3, 1, 4, 2, 3]);
}

/// The word count, exactly once through 5 kills with `settings`, every node's parallelism
/// going through `parallelism` (a run each); returns the scratch directory.
fn exactly_once_under_kills(settings: &[&str], parallelism: [u32; 6]) -> tempfile::TempDir {
    exactly_once_under_kills_with(5000, settings, parallelism)
}

/// [`exactly_once_under_kills`] over an input of `vocabulary` synthetic words.
fn exactly_once_under_kills_with(
    vocabulary: u64,
    settings: &[&str],
    parallelism: [u32; 6],
) -> tempfile::TempDir {
    let dir = scratch();
    let (path, text) = input_with_vocabulary(dir.path(), vocabulary);
    let manifest = job(dir.path(), &path, "exactly_once");
    run_with_kills(&manifest, 5, |run| {
        let mut set: Vec<String> = settings.iter().map(|s| s.to_string()).collect();
        set.push(format!("job.parallelism={}", parallelism[run as usize]));
        set
    });
    assert_running_counts(&published(dir.path()), &count_words(&text), 1);
    dir
}

#[test]
fn a_source_component_changes_parallelism_across_kills() {
    // The reference generator (a WASM source) into a transactional sink: each subtask's
    // instance is a split; a restore at another parallelism deals the splits out again.
    let dir = scratch();
    let manifest = write_manifest(
        dir.path(),
        &format!(
            r#"edges = ["gen -> out"]
[sources.gen]
kind = "wasm"
component = "{}"
config = {{ workload = "stateless", n = 1000000 }}
[sinks.out]
kind = "file"
path = "{}"
delay_us = 20
[checkpoint]
interval = "100ms"
"#,
            component("bench_gen"),
            dir.path().join("out").display()
        ),
    );
    run_with_kills(&manifest, 5, |run| {
        vec![format!(
            "job.parallelism={}",
            [3, 1, 2, 4, 2, 3][run as usize]
        )]
    });
    let mut ids: Vec<u64> = published(dir.path())
        .iter()
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids.len(), 1_000_000, "every record once");
    assert!(ids.iter().enumerate().all(|(i, &id)| i as u64 == id));
}

#[test]
fn at_least_once_loses_nothing_under_kill_9() {
    let dir = scratch();
    let (path, text) = input(dir.path());
    let manifest = job(dir.path(), &path, "at_least_once");
    run_with_kills(&manifest, 5, |_| vec!["job.parallelism=2".into()]);
    // A record replayed after a restore may be counted twice, so counts may run past n; but
    // every running count up to n is there.
    let got = emitted_counts(&published(dir.path()));
    let mut extra = 0;
    for (word, n) in count_words(&text) {
        let counts = &got[&word];
        assert!(
            (1..=n).all(|c| counts.binary_search(&c).is_ok()),
            "word {word:?}: a running count up to {n} is missing from {counts:?}"
        );
        extra += counts.len() as u64 - n;
    }
    eprintln!("at-least-once: {extra} records reflected more than once after 5 kills");
}

#[test]
fn restore_falls_back_past_a_damaged_checkpoint_and_names_the_file() {
    let dir = scratch();
    let (path, text) = input(dir.path());
    let manifest = job(dir.path(), &path, "exactly_once");
    let checkpoints = dir.path().join("checkpoints");
    // Run until two checkpoints are complete, then kill.
    let mut cmd = weir();
    cmd.args(["run", manifest.to_str().unwrap()]);
    let mut child = spawn(cmd);
    let start = Instant::now();
    let complete = || -> Vec<PathBuf> {
        let mut c: Vec<PathBuf> = std::fs::read_dir(&checkpoints)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("_metadata").exists())
            .collect();
        c.sort_by_key(|p| {
            p.file_name().unwrap().to_string_lossy()[4..]
                .parse::<u64>()
                .unwrap()
        });
        c
    };
    while complete().len() < 2 {
        assert!(start.elapsed() < Duration::from_secs(60), "no checkpoints");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the job ended too soon"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Truncate a file of the newest complete checkpoint.
    let newest = complete().pop().unwrap();
    let file = std::fs::read_dir(&newest)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "redb"))
        .unwrap();
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    let mut cmd = weir();
    cmd.args(["run", manifest.to_str().unwrap(), "--from"])
        .arg(&checkpoints);
    let out = run_bounded(cmd, Duration::from_secs(180));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("skipped a checkpoint that does not read back whole")
            && stderr.contains(&file.file_name().unwrap().to_string_lossy().to_string())
            && stderr.contains("(truncated?)"),
        "{stderr}"
    );
    assert_running_counts(&published(dir.path()), &count_words(&text), 1);
}

#[test]
fn from_refuses_what_it_cannot_restore() {
    let dir = scratch();
    let (path, _) = input(dir.path());
    let manifest = job(dir.path(), &path, "exactly_once");
    let from = |target: &Path, extra: &[&str]| {
        let mut args = vec![
            "run",
            manifest.to_str().unwrap(),
            "--from",
            target.to_str().unwrap(),
        ];
        args.extend(extra);
        run_err(&args)
    };
    // Nothing there.
    let e = from(&dir.path().join("nowhere"), &[]);
    assert!(e.contains("no complete checkpoint to restore from"), "{e}");
    // A checkpoint of this job, then the same job renamed and rekeyed.
    let mut cmd = weir();
    cmd.args([
        "run",
        manifest.to_str().unwrap(),
        "--set",
        "sinks.out.delay_us=1",
    ]);
    let out = run_bounded(cmd, Duration::from_secs(120));
    assert!(out.status.success());
    let checkpoints = dir.path().join("checkpoints");
    assert!(
        has_checkpoint(&checkpoints),
        "the run completed a checkpoint"
    );
    let e = from(&checkpoints, &["--set", "job.max_parallelism=64"]);
    assert!(
        e.contains("it has 128 key groups (job.max_parallelism), the job 64"),
        "{e}"
    );
    let renamed = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("[operators.count]", "[operators.tally]")
        .replace("split -> count", "split -> tally")
        .replace("count -> out", "tally -> out");
    std::fs::write(&manifest, renamed).unwrap();
    let e = from(&checkpoints, &[]);
    assert!(
        e.contains("holds state of a node that this job does not have (operator uids: count); pass --allow-non-restored-state"),
        "{e}"
    );
    let mut cmd = weir();
    cmd.args([
        "run",
        manifest.to_str().unwrap(),
        "--allow-non-restored-state",
        "--from",
    ])
    .arg(&checkpoints);
    let out = run_bounded(cmd, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn weir_checkpoints_lists_what_a_directory_holds() {
    let dir = scratch();
    let (path, _) = input(dir.path());
    let manifest = job(dir.path(), &path, "exactly_once");
    let out = run_ok(&[
        "run",
        manifest.to_str().unwrap(),
        "--set",
        "sinks.out.delay_us=1",
    ]);
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(summary.contains("; checkpoint "), "{summary}");
    let list = || {
        let listing = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["checkpoints"])
            .arg(dir.path().join("checkpoints"))
            .output()
            .unwrap();
        assert!(listing.status.success());
        let text = String::from_utf8_lossy(&listing.stdout).into_owned();
        assert!(text.starts_with("    id  status"), "{text}");
        text
    };
    let status = |row: &str| row.split_whitespace().nth(1).unwrap().to_string();
    let text = list();
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert!(
        !rows.is_empty() && rows.len() <= 2 && rows.iter().all(|r| status(r) == "complete"),
        "retain = 2:\n{text}"
    );
    // Incremental, keeping one: the files it builds on show as bases; a directory without
    // metadata as incomplete.
    let out = run_ok(&[
        "run",
        manifest.to_str().unwrap(),
        "--set",
        "sinks.out.delay_us=1",
        "--set",
        "checkpoint.incremental=true",
        "--set",
        "checkpoint.retain=1",
    ]);
    assert!(out.status.success());
    std::fs::create_dir(dir.path().join("checkpoints/chk-0")).unwrap();
    let text = list();
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(status(rows[0]), "incomplete", "{text}");
    assert_eq!(status(rows.last().unwrap()), "complete", "{text}");
    assert!(
        rows[1..rows.len() - 1].iter().all(|r| status(r) == "base"),
        "{text}"
    );
}

/// A job of sequence records through `faulty_panic`, which fails at record 30000 on every
/// attempt, checkpointing every 50 ms, restarting twice.
fn failing_job(dir: &Path, retain_on_cancel: bool) -> PathBuf {
    write_manifest(
        dir,
        &format!(
            r#"edges = ["src -> bad", "bad -> out"]
[checkpoint]
interval = "50ms"
retain_on_cancel = {retain_on_cancel}
[restart]
strategy = "fixed_delay"
attempts = 2
delay = "100ms"
[sources.src]
kind = "datagen"
count = 100000
rate = 50000
shape = "sequence"
[operators.bad]
component = "{}"
config = {{ panic_on = "30000" }}
[sinks.out]
kind = "file"
path = "{}"
"#,
            component("faulty_panic"),
            dir.join("out").display()
        ),
    )
}

#[test]
fn a_failing_job_restarts_from_its_checkpoints_and_fails_with_every_cause() {
    let dir = scratch();
    let e = run_err(&["run", failing_job(dir.path(), false).to_str().unwrap()]);
    assert!(
        e.contains("error: the job failed 3 times and has no restart attempt left (restart.attempts): attempt 1: operator `bad` (subtask 0 of 1) failed: the operator panicked in process")
            && e.contains("; attempt 3: operator `bad`"),
        "{e}"
    );
    assert_eq!(
        e.matches("restarting in 100ms from checkpoint").count(),
        2,
        "each restart resumed from a checkpoint:\n{e}"
    );
    assert!(
        !has_checkpoint(&dir.path().join("checkpoints")),
        "a job that failed for good removes its checkpoints"
    );
    let kept = scratch();
    run_err(&["run", failing_job(kept.path(), true).to_str().unwrap()]);
    assert!(
        has_checkpoint(&kept.path().join("checkpoints")),
        "retain_on_cancel keeps them"
    );
}

#[test]
fn an_operator_failing_on_its_first_attempt_restarts_with_its_private_state_exactly_once() {
    // `flaky` (in each language) fails at its 40,000th record on attempt 0 only (some 2 s in,
    // after a checkpoint even when guests are slow to start under load); its private
    // count of records seen survives the restart through checkpoints, as keyed state would.
    for flaky in [
        component("faulty_flaky"),
        python_component("faulty_flaky"),
        js_component("faulty_flaky"),
        c_component("faulty_flaky"),
    ] {
        flaky_restarts_exactly_once(&flaky);
    }
}

fn flaky_restarts_exactly_once(flaky: &str) {
    let dir = scratch();
    let manifest = write_manifest(
        dir.path(),
        &format!(
            r#"edges = ["src -> flaky", "flaky -> out", "flaky.seen -> summary"]
[job]
parallelism = 2
[checkpoint]
interval = "50ms"
[restart]
strategy = "fixed_delay"
attempts = 1
delay = "10ms"
[sources.src]
kind = "datagen"
count = 100000
rate = 40000
shape = "sequence"
[operators.flaky]
component = "{flaky}"
config = {{ fail_at = 40000 }}
[sinks.out]
kind = "file"
path = "{}"
[sinks.summary]
kind = "file"
path = "{}"
parallelism = 1
partition = "rebalance"
"#,
            dir.path().join("out").display(),
            dir.path().join("summary").display()
        ),
    );
    let out = run_ok(&["run", manifest.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("failing on purpose at record 40000 of attempt 0")
            && stderr.contains("restarting in 10ms from checkpoint"),
        "{flaky}: {stderr}"
    );
    let mut ids: Vec<u64> = sink_lines(&dir.path().join("out"))
        .iter()
        .map(|l| l.parse().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(
        ids,
        (0..100_000).collect::<Vec<_>>(),
        "{flaky}: every record once"
    );
    let seen: u64 = sink_lines(&dir.path().join("summary"))
        .iter()
        .map(|l| l.strip_prefix("seen ").unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(
        seen, 100_000,
        "{flaky}: the private counts add up to the input"
    );
}

#[test]
fn a_full_disk_fails_checkpoints_while_the_job_goes_on() {
    // The checkpoint directory on a 256 KiB tmpfs, mounted in a mount namespace of the weir
    // process alone: checkpoints that do not fit fail with ENOSPC, the job finishes, exact.
    let dir = scratch();
    let (path, text) = input(dir.path());
    let manifest = job(dir.path(), &path, "exactly_once");
    let checkpoints = dir.path().join("checkpoints");
    std::fs::create_dir_all(&checkpoints).unwrap();
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs -o size=256k tmpfs '{}' && exec '{}' run '{}' --set sinks.out.delay_us=2",
            checkpoints.display(),
            env!("CARGO_BIN_EXE_weir"),
            manifest.display()
        ))
        .env("WEIR_CACHE_DIR", root().join("target/test-component-cache"))
        .env("WEIR_LOG", "warn");
    let out = run_bounded(cmd, Duration::from_secs(180));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("checkpoint aborted") && stderr.contains("No space left on device"),
        "{stderr}"
    );
    assert_running_counts(&published(dir.path()), &count_words(&text), 1);
}

#[test]
fn aligned_checkpoints_reflect_exactly_the_records_before_their_barriers() {
    // A fast file source (lines "a") and a slow branch (a datagen into an operator that sleeps
    // a second per record, emitting nothing) meet at `split`; `count` counts the words. Barrier n
    // reaches `split` from the fast side long before the slow side's: in every checkpoint, the
    // count of "a" must be exactly the number of lines the fast source had read at its barrier
    // (its position), though the fast side's later lines wait at `split` meanwhile.
    let dir = scratch();
    let fast = dir.path().join("a.txt");
    std::fs::write(&fast, "a\n".repeat(3_000_000)).unwrap();
    let manifest = write_manifest(
        dir.path(),
        &format!(
            r#"edges = ["fast -> split", "slow -> sleeper", "sleeper -> split", "split -> count", "count -> out"]
[checkpoint]
interval = "100ms"
retain = 1000
[sources.fast]
kind = "file"
path = "{}"
[sources.slow]
kind = "datagen"
count = 3
shape = "sequence"
[operators.sleeper]
component = "{}"
config = {{ mode = "sleep", n = 1 }}
[operators.split]
component = "{}"
[operators.count]
component = "{}"
partition = "hash"
[sinks.out]
kind = "file"
path = "{}"
"#,
            fast.display(),
            component("faulty_hostile"),
            component("wordcount_split"),
            component("wordcount_count"),
            dir.path().join("out").display()
        ),
    );
    run_ok(&["run", manifest.to_str().unwrap()]);
    let checkpoints = weir::state::checkpoints::CheckpointDir::new(dir.path().join("checkpoints"));
    let (done, bad) = checkpoints.completed();
    assert!(bad.is_empty());
    let mut held_back = 0;
    for meta in &done {
        let mut fast_lines = None;
        let mut count_a = 0;
        for t in &meta.tasks {
            let path = checkpoints.root().join(&t.file);
            let task = weir::state::snapshot::read(&path, &t.operators).unwrap();
            for (uid, position) in &task.sources {
                // A file source's splits: (next line's offset, end); its lines take 2 bytes.
                if uid == "fast" {
                    let p: serde_json::Value = serde_json::from_slice(position).unwrap();
                    fast_lines = Some(p["splits"][0][0].as_u64().unwrap_or(6_000_000) / 2);
                }
            }
            for (_, state) in &task.operators {
                for (_, _, key, value) in &state.values {
                    if key == b"a" {
                        count_a = varint(value);
                    }
                }
            }
        }
        assert_eq!(
            count_a,
            fast_lines.unwrap(),
            "checkpoint {}: the count of the fast input's lines",
            meta.id
        );
        let split = meta.tasks.iter().find(|t| t.task == "split-0").unwrap();
        if split.align_ms >= 100 && count_a < 3_000_000 {
            held_back += 1;
        }
    }
    assert!(
        held_back > 0,
        "in some checkpoint the fast input waited at split, still running: {:?}",
        done.iter()
            .map(|m| m.tasks.iter().map(|t| t.align_ms).max())
            .collect::<Vec<_>>()
    );
}

/// Runs the word count with `checkpoint` as the body of its `[checkpoint]` table and its sink
/// slowed by `delay_us`; returns the completed checkpoints' (trigger ms, duration ms), in order,
/// and the run's stderr.
fn history(checkpoint: &str, delay_us: u32) -> (Vec<(u64, u64)>, String) {
    let dir = scratch();
    let (path, _) = input(dir.path());
    let manifest = wordcount_manifest(
        dir.path(),
        &path,
        &format!("delay_us = {delay_us}\n[checkpoint]\nretain = 1000\n{checkpoint}\n"),
    );
    let out = run_ok(&[
        "run",
        manifest.to_str().unwrap(),
        "--set",
        "job.parallelism=2",
    ]);
    let (done, _) =
        weir::state::checkpoints::CheckpointDir::new(dir.path().join("checkpoints")).completed();
    (
        done.iter()
            .map(|m| (m.triggered_unix_ms, m.duration_ms))
            .collect(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn timeout_min_pause_and_max_concurrent_show_in_the_history() {
    // min_pause: 300 ms from the end of one checkpoint to the next, whatever the interval.
    let (h, _) = history("interval = \"10ms\"\nmin_pause = \"300ms\"", 10);
    assert!(h.len() >= 3, "{h:?}");
    for w in h.windows(2) {
        let (end, next) = (w[0].0 + w[0].1, w[1].0);
        assert!(next + 5 >= end + 300, "{h:?}");
    }
    // max_concurrent = 1 (the default): no two checkpoints overlap.
    let (h, _) = history("interval = \"10ms\"", 4);
    assert!(h.len() >= 3, "{h:?}");
    for w in h.windows(2) {
        assert!(w[1].0 >= w[0].0 + w[0].1, "{h:?}");
    }
    // A timeout shorter than a checkpoint takes under backpressure: those are aborted, and
    // none that completes took longer.
    let (h, stderr) = history("interval = \"100ms\"\ntimeout = \"10ms\"", 10);
    assert!(h.iter().all(|&(_, ms)| ms <= 10), "{h:?}");
    assert!(
        stderr.contains("checkpoint aborted: not complete within checkpoint.timeout = 10ms"),
        "{stderr}"
    );
}

#[test]
fn exactly_once_with_the_redb_backend_under_kill_9() {
    // Keyed state in redb databases on disk instead of hash maps; the parallelism changes too.
    let dir = exactly_once_under_kills(&["checkpoint.backend=redb"], [2, 1, 3, 2, 4, 2]);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("checkpoints"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("work-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "the working state of killed runs is removed by the next: {leftovers:?}"
    );
}

#[test]
fn exactly_once_with_incremental_checkpoints_under_kill_9() {
    // Deltas since the last completed checkpoint, in memory and in redb.
    // 100,000 words: once the state has filled, 100 ms of input changes a few percent of it,
    // and most checkpoints are deltas.
    for backend in ["checkpoint.backend=memory", "checkpoint.backend=redb"] {
        exactly_once_under_kills_with(
            100_000,
            &["checkpoint.incremental=true", backend],
            [2, 3, 2, 1, 2, 2],
        );
    }
}

#[test]
fn a_restore_from_an_incremental_checkpoint_is_exact() {
    // Killed once a delta is complete, then resumed from that delta (through its chain) at
    // another parallelism, in each backend.
    for backend in ["checkpoint.backend=memory", "checkpoint.backend=redb"] {
        let dir = scratch();
        let (path, text) = input_with_vocabulary(dir.path(), 100_000);
        let manifest = job(dir.path(), &path, "exactly_once");
        let checkpoints = dir.path().join("checkpoints");
        let settings = [
            "checkpoint.incremental=true",
            "checkpoint.retain=1000",
            backend,
        ];
        let mut cmd = weir();
        cmd.args(["run", manifest.to_str().unwrap()]);
        for s in settings {
            cmd.args(["--set", s]);
        }
        let mut child = spawn(cmd);
        let start = Instant::now();
        let delta = loop {
            let (done, _) = weir::state::checkpoints::CheckpointDir::new(&checkpoints).completed();
            if let Some(m) = done
                .iter()
                .find(|m| m.tasks.iter().any(|t| t.base.len() >= 2))
            {
                break m.id;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "no delta");
            assert!(
                child.try_wait().unwrap().is_none(),
                "{backend}: the job ended before a checkpoint was a delta on a delta"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        child.kill().unwrap();
        child.wait().unwrap();
        let mut cmd = weir();
        cmd.args(["run", manifest.to_str().unwrap(), "--from"])
            .arg(checkpoints.join(format!("chk-{delta}")))
            .env("WEIR_LOG", "warn,weir=info");
        for s in settings.iter().chain(&["job.parallelism=3"]) {
            cmd.args(["--set", s]);
        }
        let out = run_bounded(cmd, Duration::from_secs(120));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(
            stderr.contains(&format!("restoring checkpoint {delta} from")),
            "restored from {delta}: {stderr}"
        );
        assert_running_counts(&published(dir.path()), &count_words(&text), 1);
    }
}

#[test]
fn an_incremental_checkpoint_writes_only_what_changed() {
    // A million keys loaded at once, then about 10,000 changed between checkpoints: a delta is
    // under a tenth of a full checkpoint, and retention leaves no file no checkpoint uses.
    let dir = scratch();
    let manifest = write_manifest(
        dir.path(),
        &format!(
            r#"edges = ["bulk -> split", "trickle -> split", "split -> count", "count -> out"]
[job]
parallelism = 2
[checkpoint]
interval = "500ms"
incremental = true
retain = 3
[sources.bulk]
kind = "datagen"
count = 1000000
shape = "sequence"
parallelism = 1
[sources.trickle]
kind = "datagen"
count = 120000
rate = 20000
vocabulary = 1000000
words_per_line = 1
parallelism = 1
[operators.split]
component = "{}"
partition = "rebalance"
[operators.count]
component = "{}"
partition = "hash"
[sinks.out]
kind = "file"
path = "{}"
"#,
            component("wordcount_split"),
            component("wordcount_count"),
            dir.path().join("out").display()
        ),
    );
    let mut cmd = weir();
    cmd.args([
        "run",
        manifest.to_str().unwrap(),
        "--set",
        "checkpoint.retain=1000",
    ]);
    let out = run_bounded(cmd, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let checkpoints = dir.path().join("checkpoints");
    let (done, _) = weir::state::checkpoints::CheckpointDir::new(&checkpoints).completed();
    let own = |m: &weir::state::checkpoints::Metadata, delta: bool| -> Option<u64> {
        let tasks: Vec<_> = m
            .tasks
            .iter()
            .filter(|t| t.task.starts_with("count"))
            .collect();
        (tasks.iter().all(|t| t.base.is_empty() != delta))
            .then(|| tasks.iter().map(|t| t.bytes).sum())
    };
    // Whether the bulk load had ended by checkpoint `id` (its task's snapshot says so).
    let bulk_done = |id: u64| -> bool {
        let Some(m) = done.iter().find(|m| m.id == id) else {
            return false;
        };
        let t = m.tasks.iter().find(|t| t.task == "bulk-0").unwrap();
        weir::state::snapshot::read(&checkpoints.join(&t.file), &[])
            .unwrap()
            .finished
    };
    // The checkpoint a delta builds on directly.
    let base_of = |m: &weir::state::checkpoints::Metadata| -> u64 {
        let t = m
            .tasks
            .iter()
            .find(|t| t.task.starts_with("count"))
            .unwrap();
        let last = &t.base.last().unwrap().file;
        last[4..last.find('/').unwrap()].parse().unwrap()
    };
    let full = done.iter().filter_map(|m| own(m, false)).max().unwrap();
    // Deltas of changes after the bulk load: only the trickle's keys.
    let deltas: Vec<u64> = done
        .iter()
        .filter(|m| own(m, true).is_some() && bulk_done(m.id) && bulk_done(base_of(m)))
        .filter_map(|m| own(m, true))
        .collect();
    assert!(
        !deltas.is_empty(),
        "no incremental checkpoint among {}",
        done.len()
    );
    eprintln!("full checkpoint of the counts: {full} bytes; deltas after the load: {deltas:?}");
    assert!(
        full > 20 << 20,
        "a full checkpoint of a million keys: {full} bytes"
    );
    for d in &deltas {
        assert!(
            *d * 10 < full,
            "a delta of {d} bytes against a full one of {full}"
        );
    }
    // Retention with incremental checkpoints: every file is used by a kept checkpoint.
    let run = |retain: u32| {
        weir::state::checkpoints::CheckpointDir::new(&checkpoints).retain(retain, None);
        let (kept, _) = weir::state::checkpoints::CheckpointDir::new(&checkpoints).completed();
        let used: std::collections::HashSet<String> = kept
            .iter()
            .flat_map(|m| m.tasks.iter().flat_map(|t| t.chain()))
            .map(|f| f.file)
            .collect();
        let mut files = Vec::new();
        for chk in std::fs::read_dir(&checkpoints).unwrap().flatten() {
            for f in std::fs::read_dir(chk.path()).unwrap().flatten() {
                let name = format!(
                    "{}/{}",
                    chk.file_name().to_string_lossy(),
                    f.file_name().to_string_lossy()
                );
                if name.ends_with(".redb") {
                    files.push(name);
                }
            }
        }
        (
            kept.len(),
            files.iter().filter(|f| !used.contains(*f)).count(),
        )
    };
    assert_eq!(run(2), (2, 0));
    let restored = weir::state::checkpoints::CheckpointDir::new(&checkpoints)
        .latest()
        .unwrap();
    assert_eq!(restored.tasks.len(), done.last().unwrap().tasks.len());
}

#[test]
fn a_task_restored_as_finished_keeps_its_keyed_state_in_later_checkpoints() {
    // Two pipelines: a short one that finishes at once, a long one that runs on. Restored
    // after the short one finished, its count task stays finished; the checkpoints after the
    // restore must still hold its keyed state.
    let dir = scratch();
    let manifest = write_manifest(
        dir.path(),
        &format!(
            r#"edges = ["short -> split1", "split1 -> count1", "count1 -> out1", "long -> split2", "split2 -> count2", "count2 -> out2"]
[job]
parallelism = 1
[checkpoint]
interval = "100ms"
retain = 1000
[sources.short]
kind = "datagen"
count = 5000
vocabulary = 1000
words_per_line = 1
[sources.long]
kind = "datagen"
count = 200000
rate = 10000
words_per_line = 1
[operators.split1]
component = "{split}"
[operators.count1]
component = "{count}"
partition = "hash"
[operators.split2]
component = "{split}"
[operators.count2]
component = "{count}"
partition = "hash"
[sinks.out1]
kind = "file"
path = "{out}/1"
[sinks.out2]
kind = "file"
path = "{out}/2"
"#,
            split = component("wordcount_split"),
            count = component("wordcount_count"),
            out = dir.path().join("out").display()
        ),
    );
    let checkpoints = dir.path().join("checkpoints");
    // count1's keyed entries in the newest checkpoint after `after` in which it had finished.
    let finished_count1 = |after: u64| -> Option<(u64, usize)> {
        let cp = weir::state::checkpoints::CheckpointDir::new(&checkpoints);
        let (done, _) = cp.completed();
        let m = done.iter().rev().find(|m| m.id > after)?;
        let t = m.tasks.iter().find(|t| t.task == "count1-0")?;
        let snap = weir::state::snapshot::read(&checkpoints.join(&t.file), &t.operators).ok()?;
        snap.finished.then(|| {
            (
                m.id,
                snap.operators.iter().map(|(_, s)| s.values.len()).sum(),
            )
        })
    };
    let run_until = |from: bool, after: u64| -> (u64, usize) {
        let mut cmd = weir();
        cmd.args(["run", manifest.to_str().unwrap()]);
        if from {
            cmd.arg("--from").arg(&checkpoints);
        }
        let mut child = spawn(cmd);
        let start = Instant::now();
        loop {
            if let Some(found) = finished_count1(after) {
                child.kill().unwrap();
                child.wait().unwrap();
                return found;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "no checkpoint");
            assert!(
                child.try_wait().unwrap().is_none(),
                "the job ended too soon"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    let (first, entries) = run_until(false, 0);
    assert!(
        entries > 900,
        "most of the 1,000 words were drawn: {entries}"
    );
    let (_, restored) = run_until(true, first);
    assert_eq!(
        restored, entries,
        "the finished task's state, after the restore"
    );
}
