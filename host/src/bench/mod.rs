//! `weir bench`: the reference workloads of `examples/bench/README.md`, each run as its own
//! `weir run` process (so CPU time and peak memory are that job's alone) at parallelism 2,
//! verified against results computed natively, reported one `key=value` line per job.
//!
//! CPU per record is the process's user + system time minus that of the same job at n = 1
//! (startup, loading components), divided by n.

mod api;
mod cluster;
mod expected;
mod network;
mod swap;

pub use expected::Expected;

use anyhow::{Context as _, Result, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What to run.
pub struct Options {
    /// Small n, for CI: checks results, not speed.
    pub quick: bool,
    /// Only this job.
    pub job: Option<String>,
    /// Records per job instead of the defaults.
    pub n: Option<u64>,
    /// Where the job manifests are.
    pub manifests: PathBuf,
}

struct Job {
    name: &'static str,
    /// Its manifest in `examples/bench/` (without `.toml`), and settings on top of it.
    manifest: &'static str,
    sets: &'static [&'static str],
    /// n as WORKLOADS.md measures it, and for `--quick`.
    full_n: u64,
    quick_n: u64,
    expected: fn(u64) -> Expected,
    /// It takes checkpoints (into a scratch directory).
    checkpoints: bool,
    /// Ratios of its CPU per record to earlier jobs' of the same run: (field name, job).
    compare: &'static [(&'static str, &'static str)],
    /// Flink 2.3's CPU per record on the same job, as measured on the reference machine
    /// (examples/bench/README.md), in µs.
    flink_cpu_us: Option<f64>,
}

const JOBS: &[Job] = &[
    Job {
        name: "stateless",
        manifest: "stateless",
        sets: &[],
        full_n: 20_000_000,
        quick_n: 200_000,
        expected: expected::stateless,
        checkpoints: false,
        compare: &[],
        flink_cpu_us: Some(0.235),
    },
    Job {
        name: "stateless-unchained",
        manifest: "stateless-unchained",
        sets: &[],
        full_n: 20_000_000,
        quick_n: 200_000,
        expected: expected::stateless,
        checkpoints: false,
        compare: &[],
        flink_cpu_us: Some(0.83),
    },
    Job {
        name: "wordcount",
        manifest: "wordcount",
        sets: &[],
        full_n: 5_000_000,
        quick_n: 50_000,
        expected: expected::wordcount,
        checkpoints: false,
        compare: &[],
        flink_cpu_us: Some(3.6),
    },
    Job {
        name: "checkpointed",
        manifest: "checkpointed",
        sets: &[],
        full_n: 5_000_000,
        quick_n: 50_000,
        expected: expected::wordcount,
        checkpoints: true,
        compare: &[("cpu_vs_wordcount", "wordcount")],
        flink_cpu_us: Some(3.9),
    },
    // The redb backend keeps keyed state on disk; "without checkpoints" is the same job with
    // an interval longer than the run.
    Job {
        name: "wordcount-redb",
        manifest: "checkpointed",
        sets: &["checkpoint.backend=redb", "checkpoint.interval=1h"],
        full_n: 5_000_000,
        quick_n: 50_000,
        expected: expected::wordcount,
        checkpoints: true,
        compare: &[("cpu_vs_wordcount", "wordcount")],
        flink_cpu_us: None,
    },
    Job {
        name: "checkpointed-redb",
        manifest: "checkpointed",
        sets: &["checkpoint.backend=redb"],
        full_n: 5_000_000,
        quick_n: 50_000,
        expected: expected::wordcount,
        checkpoints: true,
        compare: &[
            ("cpu_vs_wordcount_redb", "wordcount-redb"),
            ("cpu_vs_checkpointed", "checkpointed"),
        ],
        flink_cpu_us: None,
    },
    Job {
        name: "window",
        manifest: "window",
        sets: &[],
        full_n: 25_000_000,
        quick_n: 250_000,
        expected: expected::window,
        checkpoints: false,
        compare: &[],
        flink_cpu_us: Some(0.54),
    },
];

/// What `weir run --stats` reports about itself.
type Stats = BTreeMap<String, String>;

fn stat(stats: &Stats, key: &str) -> Result<f64> {
    stats
        .get(key)
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("`weir run --stats` did not report {key}"))
}

/// Runs `job` with `n` records, its sink writing to `out` (and its checkpoints to
/// `checkpoints` when it takes them); returns its stats.
fn run_job(
    manifest: &Path,
    sets: &[&str],
    n: u64,
    out: &Path,
    checkpoints: Option<&Path>,
) -> Result<Stats> {
    let exe = std::env::current_exe().context("cannot find the weir binary")?;
    let output = Command::new(exe)
        .arg("run")
        .arg(manifest)
        .arg("--stats")
        .args(["--set", &format!("sources.gen.config.n={n}")])
        .args(["--set", &format!("sinks.out.path={}", out.display())])
        .args(checkpoints.map(|dir| format!("--set=checkpoint.dir={}", dir.display())))
        .args(["--set", "job.parallelism=2"])
        .args(sets.iter().map(|s| format!("--set={s}")))
        .output()
        .context("cannot start weir run")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("weir run {} failed:\n{stderr}", manifest.display());
    }
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("stats: "))
        .context("weir run printed no stats")?;
    Ok(line
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.into(), v.into()))
        .collect())
}

/// Adds up the `count,sum` lines the job's tally wrote, one per subtask.
fn read_tally(out: &Path) -> Result<Expected> {
    let mut total = Expected { records: 0, sum: 0 };
    for entry in std::fs::read_dir(out).with_context(|| format!("reading {}", out.display()))? {
        let text = std::fs::read_to_string(entry?.path())?;
        for line in text.lines() {
            let (count, sum) = line
                .split_once(',')
                .with_context(|| format!("tally line `{line}` is not count,sum"))?;
            total.records += count.parse::<u64>()?;
            total.sum += sum.parse::<u64>()?;
        }
    }
    Ok(total)
}

/// Runs the selected jobs, printing one line each; `Ok(false)` if any result was wrong.
pub fn run(options: &Options) -> Result<bool> {
    let known: Vec<&str> = JOBS
        .iter()
        .map(|j| j.name)
        .chain(["network", "shuffle", "api", "swap"])
        .collect();
    if let Some(name) = &options.job
        && !known.contains(&name.as_str())
    {
        bail!("unknown job `{name}`; the jobs are {}", known.join(", "));
    }
    let selected = |name: &str| options.job.as_deref().is_none_or(|j| j == name);
    let scratch = std::env::temp_dir().join(format!("weir-bench-{}", std::process::id()));
    let mut all_ok = true;
    // CPU per record of the jobs run so far, to compare checkpointed with plain word count.
    let mut cpu_of: BTreeMap<&str, f64> = BTreeMap::new();
    for job in JOBS.iter().filter(|j| selected(j.name)) {
        let manifest = options.manifests.join(format!("{}.toml", job.manifest));
        if !manifest.is_file() {
            bail!(
                "{} does not exist; run weir bench from the repository root or pass --manifests",
                manifest.display()
            );
        }
        let n = options.n.unwrap_or(if options.quick {
            job.quick_n
        } else {
            job.full_n
        });
        let out = scratch.join(job.name);
        let checkpoints = job.checkpoints.then(|| out.join("checkpoints"));
        let baseline = run_job(
            &manifest,
            job.sets,
            1,
            &out.join("baseline"),
            checkpoints.as_deref(),
        )?;
        let stats = run_job(
            &manifest,
            job.sets,
            n,
            &out.join("run"),
            checkpoints.as_deref(),
        )?;
        let got = read_tally(&out.join("run"))?;
        let want = (job.expected)(n);
        let cpu = stat(&stats, "cpu_s")?;
        let wall = stat(&stats, "wall_s")?;
        let cpu_per_record = (cpu - stat(&baseline, "cpu_s")?).max(0.0) / n as f64 * 1e6;
        let verified = if got == want {
            "verified=ok".to_string()
        } else {
            all_ok = false;
            format!(
                "verified=FAILED expected_records={} expected_sum={} records={} sum={}",
                want.records, want.sum, got.records, got.sum
            )
        };
        cpu_of.insert(job.name, cpu_per_record);
        let mut extra = match stats.get("checkpoints").map(String::as_str) {
            None | Some("0") => String::new(),
            Some(count) => format!(
                " checkpoints={count} checkpoint_median_ms={} checkpoint_kib={:.0}",
                stats
                    .get("checkpoint_median_ms")
                    .map_or("?", String::as_str),
                stat(&stats, "checkpoint_bytes")? / 1024.0,
            ),
        };
        if let Some(flink) = job.flink_cpu_us {
            extra += &format!(" cpu_vs_flink={:.2}", cpu_per_record / flink);
        }
        for (field, other) in job.compare {
            if let Some(other) = cpu_of.get(other) {
                extra += &format!(" {field}={:.3}", cpu_per_record / other);
            }
        }
        println!(
            "job={} n={n} seconds={wall:.3} records_per_s={:.0} cpu_us_per_record={cpu_per_record:.3} peak_rss_mib={:.1} start_ms={}{extra} {verified}",
            job.name,
            n as f64 / wall,
            stat(&stats, "peak_rss_kib")? / 1024.0,
            stats.get("start_ms").map_or("?", String::as_str),
        );
    }
    if selected("network") {
        all_ok &= network::run(options.quick)?;
    }
    if selected("shuffle") {
        all_ok &= cluster::run(options.quick, options.n, &options.manifests, &scratch)?;
    }
    if selected("api") {
        all_ok &= api::run(options.quick, &options.manifests, &scratch)?;
    }
    if selected("swap") {
        all_ok &= swap::run(options.quick, &options.manifests, &scratch)?;
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(all_ok)
}
