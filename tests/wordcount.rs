//! The word-count example, end to end: real components, the real binary, checked against an
//! independent count.

mod common;

use common::*;
use std::path::Path;

fn run_wordcount(dir: &Path, input: &Path, sets: &[&str]) -> Vec<String> {
    let manifest = wordcount_manifest(dir, input, "");
    let manifest = manifest.display().to_string();
    let mut args = vec!["run", manifest.as_str()];
    for s in sets {
        args.extend(["--set", s]);
    }
    run_ok(&args);
    sink_lines(&dir.join("out"))
}

#[test]
fn counts_equal_an_independent_count_at_parallelism_1_and_4() {
    let dir = scratch();
    let text = text(1_100_000, 7);
    assert!(text.len() >= 1_000_000);
    let input = dir.path().join("input.txt");
    std::fs::write(&input, &text).unwrap();
    let expected = count_words(&text);
    let total: u64 = expected.values().sum();
    for p in ["1", "4"] {
        let lines = run_wordcount(dir.path(), &input, &[&format!("job.parallelism={p}")]);
        assert_eq!(
            lines.len() as u64,
            total,
            "one output line per word occurrence at parallelism {p}"
        );
        assert_running_counts(&lines, &expected, 1);
        let parts = std::fs::read_dir(dir.path().join("out")).unwrap().count();
        assert_eq!(parts.to_string(), p, "one sink file per subtask");
    }
}

#[test]
fn chaining_and_every_applicable_partitioning_give_the_same_counts() {
    let dir = scratch();
    let text = text(200_000, 11);
    let input = dir.path().join("input.txt");
    std::fs::write(&input, &text).unwrap();
    let expected = count_words(&text);
    let base = ["job.parallelism=2"];
    // (overrides, how many times each word is delivered)
    let variants: &[(&[&str], u64)] = &[
        (&["job.chaining=true"], 1),
        (&["job.chaining=false"], 1),
        (
            &["operators.split.partition=forward", "job.chaining=false"],
            1,
        ),
        (&["operators.split.partition=rebalance"], 1),
        (&["operators.split.partition=hash"], 1),
        (&["operators.split.partition=broadcast"], 2),
        (
            &[
                "sources.lines.parallelism=1",
                "operators.split.parallelism=3",
            ],
            1,
        ),
        (
            &["operators.count.parallelism=3", "sinks.out.parallelism=3"],
            1,
        ),
        (&["sinks.out.partition=rebalance"], 1),
        (&["sinks.out.partition=hash"], 1),
        (&["sinks.out.partition=broadcast"], 2),
        (
            &[
                "operators.count.parallelism=1",
                "operators.count.partition=rebalance",
                "sinks.out.parallelism=1",
            ],
            1,
        ),
    ];
    for (sets, copies) in variants {
        let all: Vec<&str> = base.iter().chain(sets.iter()).copied().collect();
        let lines = run_wordcount(dir.path(), &input, &all);
        if *copies == 1 {
            assert_running_counts(&lines, &expected, 1);
        } else {
            // Broadcast delivers every record to both subtasks downstream.
            let total: u64 = expected.values().sum();
            assert_eq!(lines.len() as u64, total * copies, "{sets:?}");
            if sets[0].starts_with("operators.split") {
                assert_running_counts(&lines, &expected, *copies);
            } else {
                let mut once: Vec<String> = lines.clone();
                once.sort();
                once.dedup();
                assert_running_counts(&once, &expected, 1);
            }
        }
    }
}

#[test]
fn keyed_state_refuses_keys_of_other_subtasks() {
    // Keyed state needs hash partitioning: with rebalance, a subtask sees keys whose key groups
    // it does not own, and the host refuses them with an error the job reports.
    let dir = scratch();
    let input = dir.path().join("input.txt");
    std::fs::write(&input, text(20_000, 3)).unwrap();
    let manifest = wordcount_manifest(dir.path(), &input, "");
    let stderr = run_err(&[
        "run",
        manifest.to_str().unwrap(),
        "--set",
        "job.parallelism=2",
        "--set",
        "operators.count.partition=rebalance",
    ]);
    assert!(stderr.contains("operator `count`"), "{stderr}");
    assert!(
        stderr.contains("outside this subtask's key groups"),
        "{stderr}"
    );
    assert!(stderr.contains("partitioned by hash"), "{stderr}");
}
