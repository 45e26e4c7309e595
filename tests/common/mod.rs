//! Helpers for the end-to-end tests: the real `weir` binary, the real example components (built
//! from `examples/` once per test binary), scratch directories, input text and an independent
//! word count to compare against.
#![allow(dead_code)] // each test binary uses its own subset

pub mod procs;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ is inside the repo")
        .to_path_buf()
}

/// Builds the example guests to components (once per test binary; a no-op when up to date).
pub fn components() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = root();
            let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args([
                    "build",
                    "--release",
                    "--target",
                    "wasm32-wasip2",
                    "--manifest-path",
                ])
                .arg(root.join("examples/Cargo.toml"))
                .status()
                .expect("cargo runs");
            assert!(status.success(), "building the example guests failed");
            root.join("examples/target/wasm32-wasip2/release")
        })
        .clone()
}

/// The path of the example component `name` (e.g. `wordcount_split`).
pub fn component(name: &str) -> String {
    components()
        .join(format!("{name}.wasm"))
        .display()
        .to_string()
}

/// The path of the Python example component `name` (e.g. `wordcount_split`).
pub fn python_component(name: &str) -> String {
    built_component("python", name)
}

/// The path of the JavaScript example component `name` (e.g. `wordcount_count`).
pub fn js_component(name: &str) -> String {
    built_component("js", name)
}

/// The path of the C example component `name` (e.g. `wordcount_count`).
pub fn c_component(name: &str) -> String {
    built_component("c", name)
}

/// A component of another language than Rust, built by `scripts/build.sh` into
/// `examples/target/<lang>/` (its toolchains take seconds per component, so the tests do not).
fn built_component(lang: &str, name: &str) -> String {
    let path = root().join(format!("examples/target/{lang}/{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run scripts/build.sh",
        path.display()
    );
    path.display().to_string()
}

/// The weir binary, with a component cache shared by the tests and quiet logs.
pub fn weir() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_weir"));
    c.env("WEIR_CACHE_DIR", root().join("target/test-component-cache"));
    c.env("WEIR_LOG", "warn");
    c
}

/// Runs `cmd` to completion, killing it (and failing the test) after `limit`.
pub fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts");
    wait_bounded(child, limit)
}

pub fn wait_bounded(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait works").is_some() {
            return child.wait_with_output().expect("output is readable");
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output is readable");
            panic!(
                "weir did not finish within {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs weir with `args` and expects success.
pub fn run_ok(args: &[&str]) -> Output {
    let mut cmd = weir();
    cmd.args(args);
    let out = run_bounded(cmd, Duration::from_secs(300));
    assert!(
        out.status.success(),
        "weir {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs weir with `args` and expects failure; returns stderr.
pub fn run_err(args: &[&str]) -> String {
    let mut cmd = weir();
    cmd.args(args);
    let out = run_bounded(cmd, Duration::from_secs(120));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "weir {args:?} should have failed; stderr:\n{stderr}"
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "failures exit with 1; stderr:\n{stderr}"
    );
    stderr
}

/// A scratch directory, removed at the end of the test.
pub fn scratch() -> tempfile::TempDir {
    let base = root().join("target/test-scratch");
    std::fs::create_dir_all(&base).expect("target/ is writable");
    tempfile::tempdir_in(base).expect("scratch dir")
}

/// Deterministic text of at least `bytes` bytes: mixed case, Unicode words from several scripts,
/// digits, punctuation and assorted separators.
pub fn text(bytes: usize, seed: u64) -> String {
    text_with_vocabulary(bytes, seed, 5000)
}

/// [`text`] with `vocabulary` synthetic words instead of 5,000.
pub fn text_with_vocabulary(bytes: usize, seed: u64, vocabulary: u64) -> String {
    const WORDS: &[&str] = &[
        "the",
        "river",
        "Weir",
        "STREAM",
        "record",
        "été",
        "ÉTÉ",
        "Straße",
        "naïve",
        "数える",
        "Zählen",
        "don't",
        "x2",
        "2024",
        "mill",
        "Water",
        "credit",
        "barrier",
        "İstanbul",
        "ñandú",
        "Ωmega",
        "café",
        "über",
        "rock'n'roll",
    ];
    const SEPARATORS: &[&str] = &[
        " ", " ", " ", ", ", ". ", " — ", "\n", "; ", "! ", "? ", "…", "\t", "«", "» ", "-", "_",
    ];
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut out = String::with_capacity(bytes + 64);
    while out.len() < bytes {
        let r = next();
        if r % 3 == 0 {
            out.push_str(WORDS[(r >> 8) as usize % WORDS.len()]);
        } else {
            // A large vocabulary of synthetic words, some capitalized.
            let w = format!("w{}", (r >> 16) % vocabulary);
            if r % 7 == 0 {
                out.push_str(&w.to_uppercase())
            } else {
                out.push_str(&w)
            }
        }
        out.push_str(SEPARATORS[(r >> 40) as usize % SEPARATORS.len()]);
    }
    out.push('\n');
    out
}

/// Counts words independently of the guest: a word is a maximal run of alphanumeric characters,
/// lower-cased afterwards.
pub fn count_words(text: &str) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    let mut word = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_alphanumeric() {
            word.push(c);
        } else if !word.is_empty() {
            *counts.entry(word.to_lowercase()).or_insert(0) += 1;
            word.clear();
        }
    }
    counts
}

/// Every line of every `part-*` file in `dir`.
pub fn sink_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    let mut parts: Vec<_> = std::fs::read_dir(dir)
        .expect("sink dir exists")
        .map(|e| e.unwrap().path())
        .collect();
    parts.sort();
    for p in parts {
        let text = std::fs::read_to_string(&p).expect("sink file is text");
        lines.extend(text.lines().map(str::to_string));
    }
    lines
}

/// The running counts the word count emitted, per word, sorted.
pub fn emitted_counts(lines: &[String]) -> HashMap<String, Vec<u64>> {
    let mut per_word: HashMap<String, Vec<u64>> = HashMap::new();
    for line in lines {
        let (word, n) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("sink line {line:?} is not `<word> <count>`"));
        per_word.entry(word.to_string()).or_default().push(
            n.parse()
                .unwrap_or_else(|_| panic!("bad count in {line:?}")),
        );
    }
    for counts in per_word.values_mut() {
        counts.sort_unstable();
    }
    per_word
}

/// Checks that the running counts are exactly 1..=n for each word with n its count in `expected`
/// times `copies` (each record delivered `copies` times, as with broadcast).
pub fn assert_running_counts(lines: &[String], expected: &HashMap<String, u64>, copies: u64) {
    let got = emitted_counts(lines);
    assert_eq!(got.len(), expected.len(), "different sets of words");
    for (word, &n) in expected {
        let counts = got
            .get(word)
            .unwrap_or_else(|| panic!("word {word:?} missing from the output"));
        let want: Vec<u64> = (1..=n * copies).collect();
        assert!(
            *counts == want,
            "word {word:?}: expected running counts 1..={}, got {} values, max {:?}",
            n * copies,
            counts.len(),
            counts.last()
        );
    }
}

/// Writes `text` as `job.toml` in `dir`.
pub fn write_manifest(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("job.toml");
    std::fs::write(&path, text).expect("scratch is writable");
    path
}

/// Starts `cmd` with its output captured.
pub fn spawn(mut cmd: Command) -> Child {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.spawn().expect("weir starts")
}

/// The word-count manifest, with the example's components and `input` as the source.
pub fn wordcount_manifest(dir: &Path, input: &Path, extra: &str) -> PathBuf {
    wordcount_manifest_with(
        dir,
        input,
        &component("wordcount_split"),
        &component("wordcount_count"),
        extra,
    )
}

/// The word-count manifest with the given `split` and `count` components; the sink writes to
/// `dir/out`.
pub fn wordcount_manifest_with(
    dir: &Path,
    input: &Path,
    split: &str,
    count: &str,
    extra: &str,
) -> PathBuf {
    let manifest = format!(
        r#"edges = ["lines -> split", "split -> count", "count -> out"]

[job]
name = "wordcount-test"
max_parallelism = 128

[sources.lines]
kind = "file"
path = "{input}"

[operators.split]
component = "{split}"

[operators.count]
component = "{count}"
partition = "hash"

[sinks.out]
kind = "file"
path = "{out}"
{extra}
"#,
        input = input.display(),
        out = dir.join("out").display(),
    );
    write_manifest(dir, &manifest)
}

/// The manifest (in `dir`) of a job `src -> OP -> out`: `job` is the body of `[job]`, `source`
/// that of `[sources.src]`; the operator `op` runs `component` with `config` (a TOML inline
/// table); the file sink writes into `out`.
pub fn one_operator_manifest(
    dir: &Path,
    job: &str,
    source: &str,
    op: &str,
    component: &str,
    config: &str,
    out: &Path,
) -> PathBuf {
    write_manifest(
        dir,
        &format!(
            r#"edges = ["src -> {op}", "{op} -> out"]
[job]
{job}
[sources.src]
{source}
[operators.{op}]
component = "{component}"
config = {config}
[sinks.out]
kind = "file"
path = "{out}"
"#,
            out = out.display(),
        ),
    )
}

/// Runs a job of 100,000 sequence records (two subtasks) through the operator `component` with
/// `config`, which must fail it; returns stderr. `extra` goes into `[job]` (e.g. limits).
pub fn faulty_job(component: &str, config: &str, extra: &str) -> String {
    let dir = scratch();
    let manifest = one_operator_manifest(
        dir.path(),
        &format!("parallelism = 2\n{extra}"),
        "kind = \"datagen\"\ncount = 100000\nshape = \"sequence\"",
        "bad",
        component,
        config,
        &dir.path().join("out"),
    );
    run_err(&["run", manifest.to_str().unwrap()])
}

/// Sends SIGINT (what Ctrl-C sends) to `child`.
pub fn interrupt(child: &Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

/// What a measured run of weir gave: its output and its peak resident memory.
pub struct Measured {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Peak resident memory of the weir process, in MiB.
    pub peak_mib: u64,
}

/// Runs `cmd` to completion like [`run_bounded`] (failing the test after `limit`), draining its
/// output as it comes (a flood cannot stall it), and measures its peak resident memory. After
/// each of `interrupts` (times since the start) it gets a SIGINT, as from Ctrl-C.
// The child is reaped by `wait4`, which gives its resource usage; clippy cannot see that.
#[allow(clippy::zombie_processes)]
pub fn run_measured(mut cmd: Command, limit: Duration, interrupts: &[Duration]) -> Measured {
    use std::io::Read;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped")));
    let err = drain(Box::new(child.stderr.take().expect("piped")));
    let pid = child.id() as libc::pid_t;
    let start = Instant::now();
    let mut pending = interrupts.iter().copied().peekable();
    let (status, usage) = loop {
        let mut status = 0;
        // SAFETY: wait4 only writes into the status and rusage it is given.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let done = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if done == pid {
            break (status, usage);
        }
        if pending.peek().is_some_and(|&at| start.elapsed() >= at) {
            pending.next();
            interrupt(&child);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "weir did not finish within {limit:?}; stderr:\n{}",
                err.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Measured {
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        peak_mib: usage.ru_maxrss as u64 / 1024,
    }
}

/// The published sink lines; no in-progress file may be left.
pub fn published(dir: &Path) -> Vec<String> {
    let out = dir.join("out");
    let hidden: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "left in progress: {hidden:?}");
    sink_lines(&out)
}

/// An unsigned LEB128 varint, as the Rust SDK's `ValueState<u64>` stores counts.
pub fn varint(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .enumerate()
        .map(|(i, b)| u64::from(b & 0x7f) << (7 * i))
        .sum()
}

/// Whether `dir` holds a complete checkpoint.
pub fn has_checkpoint(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.path().join("_metadata").exists())
}

/// Runs `manifest` (with `sets`, the i-th run's overrides) and kills it with SIGKILL after a
/// random while, `kills` times, each run resuming with `--from` when a checkpoint is complete;
/// then lets one run finish. Returns the finished run's stderr.
pub fn run_with_kills(manifest: &Path, kills: u32, sets: impl Fn(u32) -> Vec<String>) -> String {
    let dir = manifest.parent().unwrap();
    let checkpoints = dir.join("checkpoints");
    let mut seed: u64 = 0x5eed;
    for run in 0..=kills {
        let mut cmd = weir();
        cmd.args(["run", manifest.to_str().unwrap()]);
        for s in sets(run) {
            cmd.args(["--set", &s]);
        }
        if has_checkpoint(&checkpoints) {
            cmd.args(["--from", checkpoints.to_str().unwrap()]);
        }
        let mut child = spawn(cmd);
        if run == kills {
            let out = wait_bounded(child, Duration::from_secs(180));
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(out.status.success(), "the last run failed:\n{stderr}");
            return stderr;
        }
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let after = Duration::from_millis(250 + (seed >> 33) % 400);
        let start = Instant::now();
        while start.elapsed() < after {
            if let Some(status) = child.try_wait().unwrap() {
                let out = child.wait_with_output().unwrap();
                panic!(
                    "run {run} ended ({status}) before it could be killed; make the job longer:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
    unreachable!("the loop returns from its last run")
}
