//! `weir bench --job shuffle`: the word count (`datagen -> split -> hash -> count`) in one
//! process against the same job on a cluster of two workers (one slot each: each worker runs
//! one subtask of every operator, and half of each source's words cross to the other worker),
//! in the same run, as records per second and per CPU second (the workers' CPU added up).
//! Then source-to-sink latency across the workers (`p50`, `p99`) at half the maximum rate of a
//! job of timestamped records, with the flush timeout at 0 and 10 ms. Where this process may
//! create network namespaces and `tc` has netem, the word count runs on a cluster again with
//! 1% loss and 20 ms delay on its loopback (`netem_*`).

use super::{Stats, read_tally, run_job, stat};
use anyhow::{Context as _, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A cluster's processes, killed when dropped.
pub(super) struct Processes(pub(super) Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// CPU seconds (user + system) process `pid` has used so far.
fn cpu_of(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name (in parentheses): fields 14 and 15 are utime and stime.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf only reads a system value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (ticks(11) + ticks(12)) / hz
}

/// Waits until `file` contains `what`, up to 30 s; its text.
fn wait_for(file: &Path, what: &str) -> Result<String> {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if text.contains(what) {
            return Ok(text);
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!("{what:?} did not appear in {}:\n{text}", file.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A coordinator and two one-slot workers under `dir`, each command prefixed by `wrap` (to
/// run it in a network namespace); returns the processes, the coordinator's address and the
/// token.
fn start_cluster(exe: &Path, dir: &Path, wrap: &[String]) -> Result<(Processes, String, String)> {
    let (procs, addr, token, _) = start_workers(exe, dir, wrap, &[1, 1])?;
    Ok((procs, addr, token))
}

/// A coordinator and a worker per entry of `slots` (with that many slots) under `dir`; returns
/// the processes, the coordinator's address, its join token and its API's base URL.
pub(super) fn start_workers(
    exe: &Path,
    dir: &Path,
    wrap: &[String],
    slots: &[u32],
) -> Result<(Processes, String, String, String)> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let spawn = |name: &str, args: &[&str]| -> Result<Child> {
        let (cmd, rest) = match wrap.split_first() {
            Some((first, rest)) => (first.as_str(), rest.to_vec()),
            None => (exe.to_str().context("the binary's path")?, Vec::new()),
        };
        let mut c = Command::new(cmd);
        c.args(rest);
        if !wrap.is_empty() {
            c.arg(exe);
        }
        c.args(args)
            .env("WEIR_LOG", "warn,weir=info")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join(format!("{name}.log")))?)
            .stderr(std::fs::File::create(dir.join(format!("{name}.err")))?);
        Ok(c.spawn()?)
    };
    let coord_dir = dir.join("coord");
    let coord = spawn(
        "coord",
        &[
            "coordinator",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            coord_dir.to_str().context("path")?,
            "--http",
            "127.0.0.1:0",
        ],
    )?;
    let mut procs = Processes(vec![coord]);
    let out = wait_for(&dir.join("coord.log"), "HTTP API at")?;
    let addr = out
        .lines()
        .find_map(|l| l.strip_prefix("weir coordinator listening on "))
        .and_then(|l| l.split_whitespace().next())
        .context("the coordinator's address")?
        .to_string();
    let api = out
        .lines()
        .find_map(|l| l.strip_prefix("HTTP API at "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|l| l.strip_suffix("/v1"))
        .context("the API's address")?
        .to_string();
    let token = std::fs::read_to_string(coord_dir.join("join-token"))?
        .trim()
        .to_string();
    for (i, n) in slots.iter().enumerate() {
        let w = format!("w{i}");
        let data = dir.join(&w);
        procs.0.push(spawn(
            &w,
            &[
                "worker",
                "--join",
                &addr,
                "--token",
                &token,
                "--slots",
                &n.to_string(),
                "--data-dir",
                data.to_str().context("path")?,
            ],
        )?);
        wait_for(&dir.join(format!("{w}.err")), "registered")?;
    }
    Ok((procs, addr, token, api))
}

/// The word count on the cluster: its stats (as `weir run --stats` prints them), with
/// `cpu_s` the workers' CPU during the run.
/// A started cluster: its processes, the coordinator's address and token, and the prefix its
/// commands run with.
struct Cluster {
    procs: Processes,
    addr: String,
    token: String,
    wrap: Vec<String>,
}

fn run_on_cluster(exe: &Path, manifest: &Path, n: u64, out: &Path, c: &Cluster) -> Result<Stats> {
    let (procs, addr, token, wrap) = (&c.procs, c.addr.as_str(), c.token.as_str(), &c.wrap);
    let workers: Vec<u32> = procs.0[1..].iter().map(Child::id).collect();
    let cpu0: f64 = workers.iter().map(|&p| cpu_of(p)).sum();
    let mut cmd = match wrap.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    let output = cmd
        .arg("run")
        .arg(manifest)
        .arg("--stats")
        .args(["--set", &format!("sources.gen.config.n={n}")])
        .args(["--set", &format!("sinks.out.path={}", out.display())])
        .args(["--set", "job.parallelism=2"])
        .args(["--coordinator", addr, "--token", token])
        .output()
        .context("cannot start weir run --coordinator")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("weir run --coordinator failed:\n{stderr}");
    }
    let cpu = workers.iter().map(|&p| cpu_of(p)).sum::<f64>() - cpu0;
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("stats: "))
        .context("weir run printed no stats")?;
    let mut stats: Stats = line
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    stats.insert("cpu_s".into(), format!("{cpu:.3}"));
    Ok(stats)
}

/// A job of `clock` records (their value the time they were made) from one source through a
/// rebalance to two `latency` sinks: subtask 1 runs on the other worker, so its records cross
/// the network.
fn latency_manifest(dir: &Path, count: u64, rate: Option<f64>, flush_ms: u64) -> Result<PathBuf> {
    let path = dir.join(format!("latency-{flush_ms}-{}.toml", rate.is_some()));
    let rate = rate.map_or(String::new(), |r| format!("rate = {r:.0}\n"));
    std::fs::write(
        &path,
        format!(
            "edges = [\"gen -> out\"]\n[job]\nname = \"latency\"\nflush_ms = {flush_ms}\n\
             [sources.gen]\nkind = \"datagen\"\nshape = \"clock\"\ncount = {count}\n{rate}\
             [sinks.out]\nkind = \"latency\"\nparallelism = 2\npartition = \"rebalance\"\npath = \"{}\"\n",
            dir.join(format!("out-latency-{flush_ms}")).display()
        ),
    )?;
    Ok(path)
}

/// Runs a latency job on the cluster: (records/s, the remote sink's figures).
fn run_latency(exe: &Path, c: &Cluster, manifest: &Path, out: &Path) -> Result<(f64, String)> {
    let mut cmd = Command::new(exe);
    let output = cmd
        .arg("run")
        .arg(manifest)
        .arg("--stats")
        .args(["--coordinator", &c.addr, "--token", &c.token])
        .output()
        .context("cannot start weir run --coordinator")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("the latency job failed:\n{stderr}");
    }
    let stats: Stats = stderr
        .lines()
        .find_map(|l| l.strip_prefix("stats: "))
        .context("weir run printed no stats")?
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    let rate = stat(&stats, "records_in")? / stat(&stats, "wall_s")?;
    let figures = std::fs::read_to_string(out.join("part-1"))
        .with_context(|| format!("the latency sink wrote nothing in {}", out.display()))?;
    Ok((rate, figures.trim().to_string()))
}

/// Source-to-sink latency across workers at half the job's maximum rate, with the flush
/// timeout at 0 and 10 ms: `p50_us` and `p99_us` of the remote sink subtask, per setting.
fn latency(exe: &Path, c: &Cluster, dir: &Path, quick: bool) -> Result<String> {
    let n = if quick { 20_000 } else { 1_000_000 };
    let unthrottled = latency_manifest(dir, n, None, 0)?;
    let (max_rate, _) = run_latency(exe, c, &unthrottled, &dir.join("out-latency-0"))?;
    let half = max_rate / 2.0;
    // Some seconds at half the rate (a second when quick).
    let count = (half * if quick { 1.0 } else { 5.0 }) as u64;
    let mut line = format!(" latency_max_records_per_s={max_rate:.0} latency_rate={half:.0}");
    for flush_ms in [0, 10] {
        let manifest = latency_manifest(dir, count.max(1000), Some(half), flush_ms)?;
        let out = dir.join(format!("out-latency-{flush_ms}"));
        let (_, figures) = run_latency(exe, c, &manifest, &out)?;
        let field = |name: &str| {
            figures
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix(name))
                .unwrap_or("?")
                .to_string()
        };
        line += &format!(
            " flush{flush_ms}ms_p50_us={} flush{flush_ms}ms_p99_us={}",
            field("p50_us="),
            field("p99_us=")
        );
    }
    Ok(line)
}

/// Whether `tc` with netem and network namespaces can be used here: the command prefix that
/// runs a process in a namespace whose loopback has 1% loss and 20 ms delay, and the process
/// holding the namespace.
fn netem() -> Option<(Vec<String>, Processes)> {
    let holder = Command::new("unshare")
        .args(["-n", "sleep", "3600"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let pid = holder.id().to_string();
    let holder = Processes(vec![holder]);
    std::thread::sleep(Duration::from_millis(100));
    let enter = ["nsenter", "-t", &pid, "-n"];
    let ok = |args: &[&str]| {
        Command::new(enter[0])
            .args(&enter[1..])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ok(&["ip", "link", "set", "lo", "up"])
        || !ok(&[
            "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "20ms", "loss", "1%",
        ])
    {
        return None;
    }
    Some((enter.iter().map(|s| s.to_string()).collect(), holder))
}

/// Runs the shuffle benchmark and prints its line; `false` if a result was wrong.
pub fn run(quick: bool, n: Option<u64>, manifests: &Path, scratch: &Path) -> Result<bool> {
    let exe = std::env::current_exe().context("cannot find the weir binary")?;
    let manifest = manifests.join("wordcount.toml");
    let n = n.unwrap_or(if quick { 50_000 } else { 2_000_000 });
    let dir = scratch.join("shuffle");
    std::fs::create_dir_all(&dir)?;
    let want = super::expected::wordcount(n);
    let mut ok = true;
    let mut check = |out: &PathBuf| -> Result<&'static str> {
        Ok(if read_tally(out)? == want {
            "ok"
        } else {
            ok = false;
            "FAILED"
        })
    };

    let local = run_job(&manifest, &[], n, &dir.join("local"), None)?;
    let local_ok = check(&dir.join("local"))?;
    let (procs, addr, token) = start_cluster(&exe, &dir.join("cluster"), &[])?;
    let c = Cluster {
        procs,
        addr,
        token,
        wrap: Vec::new(),
    };
    let cluster = run_on_cluster(&exe, &manifest, n, &dir.join("out-cluster"), &c)?;
    let latency = latency(&exe, &c, &dir, quick)?;
    drop(c);
    let cluster_ok = check(&dir.join("out-cluster"))?;
    let rate = |s: &Stats| -> Result<f64> { Ok(n as f64 / stat(s, "wall_s")?) };
    let per_cpu = |s: &Stats| -> Result<f64> { Ok(n as f64 / stat(s, "cpu_s")?.max(1e-9)) };
    let mut line = format!(
        "job=shuffle n={n} local_records_per_s={:.0} cluster_records_per_s={:.0} local_records_per_cpu_s={:.0} cluster_records_per_cpu_s={:.0} ratio_per_cpu={:.3} ratio_wall={:.3}",
        rate(&local)?,
        rate(&cluster)?,
        per_cpu(&local)?,
        per_cpu(&cluster)?,
        per_cpu(&cluster)? / per_cpu(&local)?,
        rate(&cluster)? / rate(&local)?,
    );

    line += &latency;
    match netem() {
        Some((wrap, _holder)) => {
            let small = (n / 10).max(10_000);
            let want = super::expected::wordcount(small);
            let (procs, addr, token) = start_cluster(&exe, &dir.join("netem"), &wrap)?;
            let c = Cluster {
                procs,
                addr,
                token,
                wrap,
            };
            let netem = run_on_cluster(&exe, &manifest, small, &dir.join("out-netem"), &c)?;
            drop(c);
            let right = read_tally(&dir.join("out-netem"))? == want;
            ok &= right;
            line += &format!(
                " netem=\"loss 1% delay 20ms\" netem_n={small} netem_records_per_s={:.0} netem_verified={}",
                small as f64 / stat(&netem, "wall_s")?,
                if right { "ok" } else { "FAILED" }
            );
        }
        None => line += " netem=unavailable",
    }
    println!(
        "{line} verified={}",
        if local_ok == "ok" && cluster_ok == "ok" {
            "ok"
        } else {
            "FAILED"
        }
    );
    Ok(ok)
}
