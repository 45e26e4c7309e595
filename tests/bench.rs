//! `weir bench --quick`: every reference workload runs from its manifest in `examples/bench/` and
//! its result is checked against the expected counts and sums (not its speed).

mod common;

use common::*;
use std::time::Duration;

fn bench(args: &[&str]) -> std::process::Output {
    components();
    let mut cmd = weir();
    cmd.current_dir(root()).arg("bench").args(args);
    run_bounded(cmd, Duration::from_secs(600))
}

#[test]
fn quick_bench_verifies_every_workload_weir_can_run() {
    let out = bench(&["--quick"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for job in [
        "stateless",
        "stateless-unchained",
        "wordcount",
        "checkpointed",
        "wordcount-redb",
        "checkpointed-redb",
        "window",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("job={job} ")))
            .unwrap_or_else(|| panic!("no line for {job}: {stdout}"));
        for key in [
            "n=",
            "seconds=",
            "records_per_s=",
            "cpu_us_per_record=",
            "peak_rss_mib=",
            "start_ms=",
        ] {
            assert!(line.contains(&format!(" {key}")), "{line}");
        }
        assert!(line.ends_with("verified=ok"), "{line}");
    }
    assert!(
        stdout.contains("job=window ") && stdout.contains(" cpu_vs_flink="),
        "{stdout}"
    );
    // The data plane over loopback: raw QUIC, a remote channel, an in-process channel.
    verified_line(
        &stdout,
        "network",
        &[
            "raw_quic_mib_s=",
            "channel_mib_s=",
            "channel_vs_raw=",
            "in_process_mib_s=",
        ],
    );
    // The word count in one process and on a cluster of two worker processes.
    verified_line(
        &stdout,
        "shuffle",
        &[
            "local_records_per_s=",
            "cluster_records_per_s=",
            "ratio_per_cpu=",
            "ratio_wall=",
            "flush0ms_p50_us=",
            "flush0ms_p99_us=",
            "flush10ms_p50_us=",
            "flush10ms_p99_us=",
            "netem=",
        ],
    );
    // The HTTP API on a running cluster.
    verified_line(
        &stdout,
        "api",
        &[
            "submit_to_first_record_ms_median=",
            "savepoint_ms=",
            "stop_to_restored_ms=",
            "get_job_per_s=",
            "state_query_per_s=",
        ],
    );
    // A hot swap's pause, live and by restart, on a cluster.
    verified_line(
        &stdout,
        "swap",
        &[
            "keys=",
            "live_pause_ms=",
            "live_steady_gap_ms=",
            "live_p99_ms=",
            "restart_pause_ms=",
        ],
    );
    // The checkpointed jobs compare themselves with those run before them.
    for (job, ratios) in [
        ("checkpointed", &["cpu_vs_wordcount="][..]),
        ("wordcount-redb", &["cpu_vs_wordcount="]),
        (
            "checkpointed-redb",
            &["cpu_vs_wordcount_redb=", "cpu_vs_checkpointed="],
        ),
    ] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("job={job} ")))
            .unwrap();
        for r in ratios {
            assert!(line.contains(&format!(" {r}")), "{line}");
        }
    }
}

/// The line of `job` in the bench's output: it carries each of `keys` and verified its result.
fn verified_line<'a>(stdout: &'a str, job: &str, keys: &[&str]) -> &'a str {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&format!("job={job} ")))
        .unwrap_or_else(|| panic!("no line for {job}: {stdout}"));
    for key in keys {
        assert!(line.contains(&format!(" {key}")), "{line}");
    }
    assert!(line.ends_with("verified=ok"), "{line}");
    line
}

#[test]
fn a_wrong_result_is_reported_and_fails_the_bench() {
    // The same job with the filter's threshold changed keeps too many records.
    let dir = scratch();
    let original = std::fs::read_to_string(root().join("examples/bench/stateless.toml")).unwrap();
    let tampered = original
        .replace("min_amount = 2500", "min_amount = 2400")
        .replace(
            "../target/",
            &format!("{}/examples/target/", root().display()),
        );
    std::fs::write(dir.path().join("stateless.toml"), tampered).unwrap();
    let out = bench(&[
        "--job",
        "stateless",
        "--n",
        "20000",
        "--manifests",
        dir.path().to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("job=stateless n=20000 ") && stdout.contains("verified=FAILED"),
        "{stdout}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("some results were wrong"));
}
