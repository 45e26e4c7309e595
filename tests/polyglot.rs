//! Operators written in other languages than Rust, against the same WIT: each language's word
//! count equals the Rust one on the same text, and a guest's exception fails the job naming the
//! operator, with the guest's message.

mod common;

use common::*;
use std::path::Path;

/// The word count with `split` and `count` from the given components, at parallelism 2; the sink
/// lines, sorted.
fn wordcount(dir: &Path, input: &Path, split: &str, count: &str) -> Vec<String> {
    let _ = std::fs::remove_dir_all(dir.join("out"));
    let manifest = wordcount_manifest_with(dir, input, split, count, "");
    run_ok(&[
        "run",
        manifest.to_str().unwrap(),
        "--set",
        "job.parallelism=2",
    ]);
    let mut lines = sink_lines(&dir.join("out"));
    lines.sort();
    lines
}

#[test]
fn python_word_count_equals_the_rust_one_alone_and_mixed() {
    let dir = scratch();
    let text = text(1_050_000, 23);
    assert!(text.len() >= 1_000_000);
    let input = dir.path().join("input.txt");
    std::fs::write(&input, &text).unwrap();
    let rust = wordcount(
        dir.path(),
        &input,
        &component("wordcount_split"),
        &component("wordcount_count"),
    );
    let total: u64 = count_words(&text).values().sum();
    assert_eq!(rust.len() as u64, total);
    let python = wordcount(
        dir.path(),
        &input,
        &python_component("wordcount_split"),
        &python_component("wordcount_count"),
    );
    assert!(
        python == rust,
        "the Python word count differs from the Rust one"
    );
    // Mixed: Rust split, Python count (state in the same encoding as Rust's count).
    let mixed = wordcount(
        dir.path(),
        &input,
        &component("wordcount_split"),
        &python_component("wordcount_count"),
    );
    assert!(
        mixed == rust,
        "Rust split + Python count differs from the Rust word count"
    );
}

#[test]
fn a_python_operator_that_raises_fails_the_job_with_its_message() {
    let e = faulty_job(
        &python_component("faulty_raises"),
        r#"{ raise_on = "777" }"#,
        "",
    );
    assert!(e.contains("operator `bad` (subtask 1 of 2) failed"), "{e}");
    assert!(
        e.contains("ValueError: python gave up on record '777'"),
        "{e}"
    );
}
