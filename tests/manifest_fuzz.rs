//! Seeded random mutations of the example manifests, each checked the way `weir validate` checks
//! it and, when accepted, run by the real binary for a bounded time (stopped with Ctrl-C, then
//! cancelled with a second one): no mutation may panic weir, hang it or grow it without bound.
//! A failure prints the seed and the mutated manifest, so it can be replayed.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::{Table, Value};

/// How many mutated manifests are tried.
const CASES: u64 = 300;
/// The peak resident memory no run may exceed.
const MAX_PEAK_MIB: u64 = 2048;

/// SplitMix64: the mutations are a pure function of the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// The fields a manifest may hold (and one it may not): where, and a value of the usual type.
const FIELDS: &[(&str, &str, Kind)] = &[
    ("job", "parallelism", Kind::Int),
    ("job", "max_parallelism", Kind::Int),
    ("job", "buffer_bytes", Kind::Int),
    ("job", "network_mib", Kind::Int),
    ("job", "flush_ms", Kind::Int),
    ("job", "chaining", Kind::Bool),
    ("job", "name", Kind::Str),
    ("limits", "memory_mib", Kind::Int),
    ("limits", "call_timeout_ms", Kind::Int),
    ("limits", "state_mib", Kind::Int),
    ("limits", "log_lines_per_s", Kind::Int),
    ("limits", "component_mib", Kind::Int),
    ("sources", "parallelism", Kind::Int),
    ("sources", "words_per_line", Kind::Int),
    ("sources", "vocabulary", Kind::Int),
    ("sources", "rate", Kind::Float),
    ("sources", "count", Kind::Int),
    ("sources", "seed", Kind::Int),
    ("sources", "shape", Kind::Str),
    ("sources", "format", Kind::Str),
    ("sources", "key_field", Kind::Str),
    ("operators", "parallelism", Kind::Int),
    ("operators", "partition", Kind::Str),
    ("sinks", "parallelism", Kind::Int),
    ("sinks", "partition", Kind::Str),
    ("sinks", "delay_us", Kind::Int),
    ("sinks", "kind", Kind::Str),
    ("job", "unknown_field", Kind::Int),
];

#[derive(Clone, Copy)]
enum Kind {
    Int,
    Float,
    Str,
    Bool,
    Any,
}

/// Values that sit on or across the edges of what fields accept, of `kind`.
fn interesting(rng: &mut Rng, kind: Kind) -> Value {
    let ints: &[i64] = &[
        0,
        1,
        -1,
        2,
        3,
        7,
        128,
        255,
        256,
        4096,
        4097,
        32768,
        32769,
        65535,
        1_000_000,
        3_600_000,
        3_600_001,
        u32::MAX as i64,
        u32::MAX as i64 + 1,
        i64::MAX,
        i64::MIN,
    ];
    let floats: &[f64] = &[
        0.0,
        -0.0,
        0.5,
        1e-300,
        1e300,
        f64::NAN,
        f64::INFINITY,
        -1.0,
        1e6,
    ];
    let strings: &[&str] = &[
        "",
        "x",
        "forward",
        "hash",
        "rebalance",
        "broadcast",
        "lines",
        "sequence",
        "text",
        "json",
        "file",
        "datagen",
        "wasm",
        "stdout",
        "/dev/zero",
        "/dev/null",
        "/proc/self/status",
        "no/such/file",
        "out2",
        "split -> count",
        "count.late -> out",
        "out -> gen",
        "a.b.c -> d",
        "é -> ü",
        "\u{1b}[31m",
    ];
    match kind {
        Kind::Int => match rng.below(5) {
            0 => Value::Integer(rng.next() as i64),
            1 | 2 => Value::Integer(*rng.pick(&[1, 2, 3, 4, 8, 16, 64, 100, 1000, 100_000])),
            _ => Value::Integer(*rng.pick(ints)),
        },
        Kind::Float => Value::Float(*rng.pick(floats)),
        Kind::Str if rng.below(10) == 0 => Value::String("x".repeat(10_000)),
        Kind::Str => Value::String(rng.pick(strings).to_string()),
        Kind::Bool => Value::Boolean(rng.below(2) == 0),
        Kind::Any => match rng.below(6) {
            0 => Value::Array(vec![Value::Integer(1), Value::String("a -> b".into())]),
            1 => Value::Table(Table::new()),
            2 => interesting(rng, Kind::Int),
            3 => interesting(rng, Kind::Float),
            4 => interesting(rng, Kind::Str),
            _ => interesting(rng, Kind::Bool),
        },
    }
}

/// Every path to a value in `table` (through tables and arrays), and whether it is a table.
fn leaves(table: &Table, prefix: &mut Vec<String>, out: &mut Vec<(Vec<String>, bool)>) {
    for (k, v) in table {
        prefix.push(k.clone());
        out.push((prefix.clone(), v.is_table()));
        match v {
            Value::Table(t) => leaves(t, prefix, out),
            Value::Array(a) => {
                for i in 0..a.len() {
                    let mut p = prefix.clone();
                    p.push(format!("#{i}"));
                    out.push((p, false));
                }
            }
            _ => {}
        }
        prefix.pop();
    }
}

/// The value at `path`, if there is one.
fn at<'a>(table: &'a mut Table, path: &[String]) -> Option<&'a mut Value> {
    let (first, rest) = path.split_first()?;
    let mut v = table.get_mut(first)?;
    for seg in rest {
        v = match (v, seg.strip_prefix('#')) {
            (Value::Array(a), Some(i)) => a.get_mut(i.parse::<usize>().ok()?)?,
            (Value::Table(t), None) => t.get_mut(seg)?,
            _ => return None,
        };
    }
    Some(v)
}

/// The kind of `v`, for a replacement of the same kind.
fn kind_of(v: &Value) -> Kind {
    match v {
        Value::Integer(_) => Kind::Int,
        Value::Float(_) => Kind::Float,
        Value::String(_) => Kind::Str,
        Value::Boolean(_) => Kind::Bool,
        _ => Kind::Any,
    }
}

/// Applies one or two random mutations to `manifest`: mostly a value replaced by one of the
/// same type (numbers and switches more often than names), else by any value, a field removed,
/// or a known field added where it belongs.
fn mutate(manifest: &mut Table, rng: &mut Rng) {
    for _ in 0..1 + usize::from(rng.below(10) < 3) {
        let mut paths = Vec::new();
        leaves(manifest, &mut Vec::new(), &mut paths);
        let scalars: Vec<Vec<String>> = paths
            .iter()
            .filter(|(p, _)| {
                matches!(
                    at(manifest, p),
                    Some(Value::Integer(_) | Value::Float(_) | Value::Boolean(_))
                )
            })
            .map(|(p, _)| p.clone())
            .collect();
        let (path, _) = rng.pick(&paths).clone();
        match rng.below(20) {
            0..6 if !scalars.is_empty() => {
                let path = rng.pick(&scalars).clone();
                if let Some(v) = at(manifest, &path) {
                    *v = interesting(rng, kind_of(v));
                }
            }
            0..10 => {
                if let Some(v) = at(manifest, &path) {
                    *v = interesting(rng, kind_of(v));
                }
            }
            10..12 => {
                if let Some(v) = at(manifest, &path) {
                    *v = interesting(rng, Kind::Any);
                }
            }
            12..14 => {
                let (last, parent) = path.split_last().expect("paths are not empty");
                let parent = if parent.is_empty() {
                    Some(&mut *manifest)
                } else {
                    match at(manifest, parent) {
                        Some(Value::Table(t)) => Some(t),
                        _ => None,
                    }
                };
                if let Some(t) = parent {
                    t.remove(last);
                }
            }
            _ => {
                let &(section, field, kind) = rng.pick(FIELDS);
                let value = interesting(rng, kind);
                let Value::Table(t) = manifest
                    .entry(section)
                    .or_insert_with(|| Value::Table(Table::new()))
                else {
                    continue;
                };
                let table = if matches!(section, "job" | "limits") {
                    Some(t)
                } else {
                    let n = t.len();
                    let k = rng.below(n.max(1));
                    t.iter_mut().nth(k).and_then(|(_, v)| v.as_table_mut())
                };
                if let Some(table) = table {
                    table.insert(field.to_string(), value);
                }
            }
        }
    }
}

/// An example manifest made to run from `dir`: components and inputs by absolute path, every
/// sink writing into `dir`.
fn example(name: &str, dir: &Path) -> Table {
    let path = root().join("examples").join(name);
    let base = path
        .parent()
        .expect("examples have a directory")
        .to_path_buf();
    let mut t: Table = toml::from_str(&std::fs::read_to_string(&path).expect("example exists"))
        .expect("examples parse");
    let absolute = |v: &mut Value| {
        if let Value::String(s) = v {
            *s = base.join(&*s).display().to_string();
        }
    };
    for section in ["sources", "operators"] {
        for node in t
            .get_mut(section)
            .and_then(Value::as_table_mut)
            .into_iter()
            .flat_map(|t| t.iter_mut())
            .filter_map(|(_, v)| v.as_table_mut())
        {
            node.get_mut("component").map(absolute);
            node.get_mut("path").map(absolute);
        }
    }
    for (uid, node) in t
        .get_mut("sinks")
        .and_then(Value::as_table_mut)
        .into_iter()
        .flat_map(|t| t.iter_mut())
    {
        if let Some(node) = node.as_table_mut()
            && node.contains_key("path")
        {
            node.insert(
                "path".into(),
                Value::String(dir.join(format!("out-{uid}")).display().to_string()),
            );
        }
    }
    t
}

/// Checks one mutated manifest; returns whether it was accepted (and run).
fn check(seed: u64, source: &str, dir: &Path) -> bool {
    let mut rng = Rng(seed);
    let mut manifest = example(source, dir);
    mutate(&mut manifest, &mut rng);
    let text = toml::to_string(&manifest).unwrap_or_else(|_| format!("{manifest:?}"));
    let file: PathBuf = write_manifest(dir, &text);
    let context = || format!("seed {seed} (from {source}):\n{text}");
    // What `weir validate` checks, in this process: a panic fails the test with the seed.
    let accepted = std::panic::catch_unwind(|| {
        weir::manifest::load(&file, &[])
            .map_err(|e| e.to_string())
            .and_then(|job| weir::worker::check(&job).map_err(|e| e.to_string()))
    })
    .unwrap_or_else(|_| panic!("validation panicked on {}", context()));
    if accepted.is_err() {
        return false;
    }
    let mut cmd = weir();
    cmd.args(["run", file.to_str().unwrap(), "--stats"]);
    let m = run_measured(
        cmd,
        Duration::from_secs(30),
        &[Duration::from_millis(1000), Duration::from_millis(2000)],
    );
    assert!(
        matches!(m.code, Some(0 | 1)),
        "exit {:?}; stderr:\n{}\n{}",
        m.code,
        m.stderr,
        context()
    );
    assert!(
        !m.stderr.contains("weir panicked") && !m.stderr.contains("' panicked at"),
        "weir panicked; stderr:\n{}\n{}",
        m.stderr,
        context()
    );
    assert!(
        !m.stderr.contains("abandoned"),
        "a task did not stop; stderr:\n{}\n{}",
        m.stderr,
        context()
    );
    assert!(
        m.peak_mib < MAX_PEAK_MIB,
        "peak {} MiB; {}",
        m.peak_mib,
        context()
    );
    true
}

#[test]
fn mutated_example_manifests_never_panic_hang_or_grow_without_bound() {
    components();
    let sources = [
        "wordcount/wordcount.toml",
        "wordcount-c/wordcount.toml",
        "bench/stateless.toml",
        "bench/stateless-unchained.toml",
        "bench/wordcount.toml",
    ];
    // Two workers, each over every other seed.
    let workers: Vec<_> = (0..2u64)
        .map(|w| {
            std::thread::spawn(move || {
                let mut accepted = 0;
                for seed in (w..CASES).step_by(2) {
                    let dir = scratch();
                    let source = sources[(seed % sources.len() as u64) as usize];
                    accepted += u64::from(check(seed, source, dir.path()));
                }
                accepted
            })
        })
        .collect();
    let accepted: u64 = workers
        .into_iter()
        .map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
        .sum();
    // The mutations must leave enough manifests valid to exercise running them.
    assert!(
        accepted >= CASES / 10,
        "only {accepted} of {CASES} mutated manifests were accepted"
    );
    eprintln!("{accepted} of {CASES} mutated manifests were accepted and run");
}
