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
fn every_language_s_word_count_equals_the_rust_one_alone_and_mixed() {
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
    let (py, js, c) = (python_component, js_component, c_component);
    let pipelines = [
        ("Python", py("wordcount_split"), py("wordcount_count")),
        ("JavaScript", js("wordcount_split"), js("wordcount_count")),
        ("C", c("wordcount_split"), c("wordcount_count")),
        // Mixed; count keeps its state in the same encoding in every language.
        (
            "Python split + JavaScript count",
            py("wordcount_split"),
            js("wordcount_count"),
        ),
        (
            "Rust split + Python count",
            component("wordcount_split"),
            py("wordcount_count"),
        ),
        (
            "C split + JavaScript count",
            c("wordcount_split"),
            js("wordcount_count"),
        ),
        (
            "Rust split + C count",
            component("wordcount_split"),
            c("wordcount_count"),
        ),
    ];
    for (name, split, count) in pipelines {
        let lines = wordcount(dir.path(), &input, &split, &count);
        assert!(
            lines == rust,
            "the {name} word count differs from the Rust one"
        );
    }
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

#[test]
fn a_javascript_operator_that_throws_fails_the_job_with_its_message() {
    let e = faulty_job(
        &js_component("faulty_throws"),
        r#"{ throw_on = "777" }"#,
        "",
    );
    assert!(e.contains("operator `bad` (subtask 1 of 2) failed"), "{e}");
    assert!(
        e.contains("RangeError: javascript gave up on record \"777\""),
        "{e}"
    );
}

#[test]
fn a_c_operator_that_fails_fails_the_job_with_its_message() {
    let e = faulty_job(&c_component("faulty_fails"), r#"{ fail_on = "777" }"#, "");
    assert!(e.contains("operator `bad` (subtask 1 of 2) failed"), "{e}");
    assert!(e.contains("c gave up on record \"777\""), "{e}");
}

#[test]
fn the_c_sdk_s_helpers_pass_their_checks_inside_a_component() {
    // examples/sdk-c/selftest.c checks numbers, bytes, UTF-8, lower-casing, varints, every
    // state call, config and formatting in `open` (inside the sandbox, compiled as users
    // compile), then passes records through.
    let dir = scratch();
    let manifest = one_operator_manifest(
        dir.path(),
        "parallelism = 1",
        "kind = \"datagen\"\ncount = 1000\nshape = \"sequence\"",
        "selftest",
        &c_component("sdk_selftest"),
        r#"{ extra = "present" }"#,
        &dir.path().join("out"),
    );
    let out = run_ok(&["run", manifest.to_str().unwrap()]);
    assert_eq!(sink_lines(&dir.path().join("out")).len(), 1000);
    // Its last word goes to the host's log, over 600 bytes long.
    let log = String::from_utf8_lossy(&out.stderr);
    let long = format!("selftest passed; long: short-7{:0600}|", 5);
    assert!(log.contains(&long), "{log}");
}

/// Lines of characters drawn from all of Unicode (every scalar value but the line feed), with
/// extra weight on the ones the lower-casing rules single out: capital sigma beside cased and
/// case-ignorable characters, dotted capital I, titlecase letters, combining marks.
fn all_unicode_lines(lines: usize, seed: u64) -> String {
    const SPECIAL: &[char] = &[
        'Σ', 'Σ', 'Α', 'a', 'Z', '\'', '\u{301}', 'ʰ', 'İ', 'ǅ', 'ß', '\u{345}', '1', '٣', ' ', '.',
    ];
    let mut z = seed;
    let mut next = move || {
        z = z
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        z >> 33
    };
    let mut text = String::new();
    for _ in 0..lines {
        for _ in 0..next() % 40 {
            let c = if next() % 2 == 0 {
                SPECIAL[next() as usize % SPECIAL.len()]
            } else {
                // Any scalar value: the planes' ends are as likely as the middles.
                let plane = next() % 17;
                let c = ((plane << 16) | (next() & 0xFFFF)) as u32;
                match char::from_u32(c) {
                    Some('\n' | '\r') | None => ' ',
                    Some(c) => c,
                }
            };
            text.push(c);
        }
        text.push('\n');
    }
    text
}

#[test]
fn the_c_split_splits_and_lower_cases_all_of_unicode_as_the_rust_one_does() {
    // The C SDK's Unicode tables are read off Rust's std by guest-sdk/c/gen; this checks the
    // C code that uses them against Rust's own split, end to end.
    let dir = scratch();
    let input = dir.path().join("input.txt");
    std::fs::write(&input, all_unicode_lines(20_000, 5)).unwrap();
    let split = |component: &str, name: &str| {
        let out = dir.path().join(name);
        let manifest = one_operator_manifest(
            dir.path(),
            "parallelism = 1",
            &format!("kind = \"file\"\npath = \"{}\"", input.display()),
            "split",
            component,
            "{}",
            &out,
        );
        run_ok(&["run", manifest.to_str().unwrap()]);
        sink_lines(&out)
    };
    let rust = split(&component("wordcount_split"), "rust");
    assert!(rust.len() > 50_000, "{} words", rust.len());
    assert!(rust.iter().any(|w| w.contains('ς')) && rust.iter().any(|w| w.contains('σ')));
    let c = split(&c_component("wordcount_split"), "c");
    assert_eq!(c.len(), rust.len());
    for (i, (c, rust)) in c.iter().zip(&rust).enumerate() {
        assert_eq!(c, rust, "word {i}");
    }
}

#[test]
fn the_example_manifests_of_every_language_give_the_rust_example_s_output() {
    let dir = scratch();
    let run = |example: &str| {
        let out = dir.path().join(example);
        let manifest = root().join(format!("examples/{example}/wordcount.toml"));
        run_ok(&[
            "run",
            manifest.to_str().unwrap(),
            "--set",
            &format!("sinks.out.path={}", out.display()),
        ]);
        let mut lines = sink_lines(&out);
        lines.sort();
        lines
    };
    let rust = run("wordcount");
    assert!(!rust.is_empty());
    for example in [
        "wordcount-python",
        "wordcount-js",
        "wordcount-c",
        "wordcount-polyglot",
    ] {
        assert!(
            run(example) == rust,
            "examples/{example} differs from examples/wordcount"
        );
    }
}

#[test]
fn inspect_reports_the_language_and_toolchain_each_component_was_built_with() {
    let cases = [
        (component("wordcount_count"), "Rust", "rustc "),
        (
            python_component("wordcount_count"),
            "Python",
            "componentize-py 0.25.1",
        ),
        (
            js_component("wordcount_count"),
            "JavaScript",
            "componentize-qjs 0.4.5",
        ),
        (c_component("wordcount_count"), "C", "clang 14"),
    ];
    for (path, language, tool) in cases {
        let out = run_ok(&["inspect", &path]);
        let report = String::from_utf8_lossy(&out.stdout);
        let line = |prefix: &str| {
            report
                .lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{report}"))
                .to_string()
        };
        assert!(line("languages: ").contains(language), "{report}");
        assert!(line("built with: ").contains(tool), "{report}");
    }
}

/// SplitMix64, as the `gen` source computes its records.
fn h(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add(i.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[test]
fn python_javascript_and_c_operators_have_every_sdk_capability() {
    // What examples/sdk-*/probe emit for the `gen` source's window workload (keyed, timestamped
    // records): config, value state, map state, the main and a side output, timestamps.
    let n = 3000u64;
    let (mut main, mut odd) = (Vec::new(), Vec::new());
    let mut seen: std::collections::HashMap<
        String,
        (u64, std::collections::BTreeMap<String, u64>),
    > = Default::default();
    for i in 0..n {
        let key = (h(31, i) % 1000).to_string();
        let ts = 2000 + (i / 10) as i64 - (h(32, i) % 2001) as i64;
        let (count, last) = seen.entry(key.clone()).or_default();
        *count += 1;
        last.insert((*count % 3).to_string(), *count);
        let entries: Vec<String> = last.iter().map(|(m, v)| format!("{m}={v}")).collect();
        main.push(format!(">{key} {count} {} @{ts}", entries.join(",")));
        if *count % 2 == 1 {
            odd.push(format!("{key} {count}"));
        }
        if *count == 3 {
            *count = 0;
            last.clear();
        }
    }
    for probe in [
        python_component("sdk_probe"),
        js_component("sdk_probe"),
        c_component("sdk_probe"),
    ] {
        let dir = scratch();
        let manifest = write_manifest(
            dir.path(),
            &format!(
                r#"edges = ["gen -> probe", "probe -> main", "probe.odd -> odd"]
[job]
parallelism = 1
[sources.gen]
kind = "wasm"
component = "{gen}"
config = {{ workload = "window", n = {n} }}
[operators.probe]
component = "{probe}"
partition = "hash"
# Members before `prefix` that the C SDK's JSON reader must skip; `clear_at` and `odd` only the
# C probe reads (with these values, it does what the others do).
config = {{ note = "a \"quoted\" \\ é", limits = {{ n = [1, 2.5e3, -7, true, {{ }}] }}, prefix = ">", clear_at = 3, odd = true }}
[sinks.main]
kind = "file"
path = "{main}"
[sinks.odd]
kind = "file"
path = "{odd}"
"#,
                gen = component("bench_gen"),
                main = dir.path().join("main").display(),
                odd = dir.path().join("odd").display(),
            ),
        );
        run_ok(&["run", manifest.to_str().unwrap()]);
        assert_eq!(sink_lines(&dir.path().join("main")), main, "{probe}");
        assert_eq!(sink_lines(&dir.path().join("odd")), odd, "{probe}");
    }
}

#[test]
fn the_stateless_map_gives_the_same_result_in_every_language() {
    let dir = scratch();
    let manifest = root().join("examples/bench/stateless.toml");
    let run = |map: &str, name: &str| {
        let out = dir.path().join(name);
        run_ok(&[
            "run",
            manifest.to_str().unwrap(),
            "--set",
            "sources.gen.config.n=20000",
            "--set",
            &format!("operators.map.component={map}"),
            "--set",
            &format!("sinks.out.path={}", out.display()),
        ]);
        let mut lines = sink_lines(&out);
        lines.sort();
        lines
    };
    let rust = run(&component("bench_map"), "rust");
    assert_eq!(rust.len(), 2, "one count,sum line per subtask");
    assert_eq!(run(&python_component("bench_map"), "python"), rust);
    assert_eq!(run(&js_component("bench_map"), "js"), rust);
    assert_eq!(run(&c_component("bench_map"), "c"), rust);
}
