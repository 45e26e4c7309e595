//! In-process backpressure: a deliberately slow sink bounds the memory of a fast unbounded
//! pipeline (credits stop the source instead of queues growing), and stopping it with Ctrl-C
//! drains everything: no record is lost.

mod common;

use common::*;
use std::time::{Duration, Instant};

/// Resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The bound the test holds weir to. The engine, the compiled components and four instances take
/// ~25 MiB; the channels hold at most (2 x 2 + 8) buffers of 32 KiB per gate.
const RSS_BOUND_MIB: u64 = 96;

#[test]
fn a_slow_sink_bounds_memory_and_ctrl_c_loses_nothing() {
    components();
    let dir = scratch();
    let out = dir.path().join("out");
    let manifest = write_manifest(
        dir.path(),
        &format!(
            r#"edges = ["gen -> split", "split -> slow"]
[job]
name = "backpressure"
[sources.gen]
kind = "datagen"
shape = "sequence"
[operators.split]
component = "{split}"
[sinks.slow]
kind = "file"
path = "{out}"
parallelism = 2
partition = "rebalance"
delay_us = 20
"#,
            split = component("wordcount_split"),
            out = out.display(),
        ),
    );
    let mut cmd = weir();
    cmd.args(["run", manifest.to_str().unwrap()]);
    let child = spawn(cmd);
    let pid = child.id();

    // Sample resident memory for a few seconds while the source is held back by the sink.
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        std::thread::sleep(Duration::from_millis(100));
        if let Some(kib) = rss_kib(pid) {
            samples.push(kib);
        }
    }
    interrupt(&child);
    let output = wait_bounded(child, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "Ctrl-C stops the job cleanly: {stderr}"
    );

    assert!(samples.len() >= 20, "sampled the process: {samples:?}");
    let peak = samples.iter().max().unwrap() / 1024;
    assert!(
        peak < RSS_BOUND_MIB,
        "resident memory peaked at {peak} MiB (bound {RSS_BOUND_MIB}): {samples:?}"
    );
    let (first, second) = samples.split_at(samples.len() / 2);
    let (early, late) = (first.iter().max().unwrap(), second.iter().max().unwrap());
    assert!(
        *late <= early + 8 * 1024,
        "memory keeps growing: {early} KiB then {late} KiB"
    );

    // Every generated record reached the sink exactly once.
    let summary = stderr
        .lines()
        .find(|l| l.contains("finished"))
        .unwrap_or_else(|| panic!("no summary: {stderr}"));
    let records_in: u64 = summary
        .split("s: ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(
        summary.contains(&format!(
            "{records_in} records in, {records_in} records out"
        )),
        "{summary}"
    );
    let mut values: Vec<u64> = sink_lines(&out)
        .iter()
        .map(|l| l.parse().unwrap())
        .collect();
    values.sort_unstable();
    assert_eq!(values.len() as u64, records_in);
    assert!(
        values.iter().copied().eq(0..records_in),
        "the sink holds exactly records 0..{records_in}"
    );
    // The sink's pace (2 x 50 K records/s at most) held the unbounded source back.
    assert!(
        records_in < 1_000_000,
        "the source was held back: {records_in} records in 4 s"
    );
}
