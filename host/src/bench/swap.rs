//! `weir bench --job swap`: the pause of a hot swap, on a cluster of two workers (real
//! processes on loopback), at 1 K and 1 M keys (`--quick`: 1 K and 20 K), live and by restart.
//!
//! The job: a bulk source loads `keys` keys into a keyed count (`bench/swap-count`, its state a
//! `u64` per key), then a trickle of timed records (their value: when they were made) at
//! [`RATE`] per second keeps hitting those keys and goes on to a `latency` sink that traces
//! every record's making and arrival. Once the keys are loaded and [`STEADY`] has passed, the
//! count is swapped for `bench/swap-count-v2` (its state in a new encoding, migrated lazily on
//! each key's next use), and the job runs on for [`AFTER`] past the swap's end. From the traces:
//!
//! - `pause_ms`: the longest gap between two records reaching a sink subtask (the swapped
//!   operator's subtasks, which the sinks are chained to) from the swap's request on, against
//!   `steady_gap_ms` before it (the flush interval's rhythm);
//! - `p99_ms` (and `max_ms`) of source-to-sink latency of the records made in the second after
//!   the request, against `steady_p99_ms` of those made in the [`STEADY`] before it.
//!
//! A restart swap stops the sources, so its pause shows as a gap (no record is made while the
//! job is down), not as latency.

use super::api::poll;
use super::cluster::start_workers;
use crate::api::client::{Client, Submission, submit_job, upload_component};
use anyhow::{Context as _, Result, bail};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Timed records per second.
const RATE: u64 = 20_000;
/// How long the job runs steadily before the swap, and is measured.
const STEADY: Duration = Duration::from_secs(3);
/// How long it runs on after the swap ended.
const AFTER: Duration = Duration::from_secs(2);

fn now_us() -> u64 {
    crate::connectors::now_us()
}

/// Every traced record under `dir`: per sink subtask, (made, arrived) in µs, by arrival.
fn traces(dir: &Path) -> Result<BTreeMap<u32, Vec<(u64, u64)>>> {
    let mut all: BTreeMap<u32, Vec<(u64, u64)>> = BTreeMap::new();
    for e in std::fs::read_dir(dir)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(subtask) = (name.strip_prefix("trace-"))
            .and_then(|r| r.split('-').next())
            .and_then(|s| s.parse().ok())
        else {
            continue;
        };
        let text = std::fs::read_to_string(e.path())?;
        let times = text.lines().filter_map(|l| {
            let (made, arrived) = l.split_once(' ')?;
            Some((made.parse().ok()?, arrived.parse().ok()?))
        });
        all.entry(subtask).or_default().extend(times);
    }
    for v in all.values_mut() {
        v.sort_unstable_by_key(|&(_, arrived)| arrived);
    }
    Ok(all)
}

/// The longest gap between arrivals in `[from, to)` at any subtask, in ms.
fn longest_gap(traces: &BTreeMap<u32, Vec<(u64, u64)>>, from: u64, to: u64) -> f64 {
    let gap = (traces.values())
        .flat_map(|t| {
            let arrivals: Vec<u64> = (t.iter().map(|&(_, a)| a))
                .filter(|a| (from..to).contains(a))
                .collect();
            arrivals.windows(2).map(|w| w[1] - w[0]).collect::<Vec<_>>()
        })
        .max()
        .unwrap_or(0);
    gap as f64 / 1e3
}

/// The `q` quantile and the largest latency (ms) of the records made in `[from, to)`.
fn latency(traces: &BTreeMap<u32, Vec<(u64, u64)>>, from: u64, to: u64, q: f64) -> (f64, f64) {
    let mut l: Vec<u64> = (traces.values().flatten())
        .filter(|(made, _)| (from..to).contains(made))
        .map(|&(made, arrived)| arrived.saturating_sub(made))
        .collect();
    if l.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    l.sort_unstable();
    let at = ((l.len() as f64 * q).ceil() as usize).clamp(1, l.len()) - 1;
    (l[at] as f64 / 1e3, l[l.len() - 1] as f64 / 1e3)
}

/// One swap of a job of `keys` keys, `live` or by restart: its figures as `key=value` fields
/// prefixed with the mode, and whether every sink subtask had output made after it.
fn swap_once(
    client: &Client,
    dir: &Path,
    components: &Path,
    keys: u64,
    live: bool,
) -> Result<(String, bool)> {
    let mode = if live { "live" } else { "restart" };
    let run = dir.join(format!("{mode}-{keys}"));
    std::fs::create_dir_all(&run)?;
    let component = |name: &str| -> Result<String> {
        let p = components.join(format!("{name}.wasm"));
        if !p.is_file() {
            bail!("{} is missing: build the examples first", p.display());
        }
        Ok(std::path::absolute(&p)?.display().to_string())
    };
    let manifest = run.join("swap.toml");
    std::fs::write(
        &manifest,
        format!(
            "edges = [\"bulk -> key\", \"trickle -> key\", \"key -> count\", \"count -> out\"]\n\
             [job]\nname = \"swap-{mode}-{keys}\"\nparallelism = 2\nflush_ms = 5\n\
             [checkpoint]\ninterval = \"1s\"\ndir = \"{checkpoints}\"\n\
             [sources.bulk]\nkind = \"datagen\"\nshape = \"sequence\"\ncount = {keys}\nparallelism = 1\n\
             [sources.trickle]\nkind = \"datagen\"\nshape = \"clock\"\nrate = {RATE}.0\nparallelism = 1\n\
             [operators.key]\ncomponent = \"{key}\"\nconfig = {{ keys = {keys} }}\n\
             [operators.count]\ncomponent = \"{count}\"\npartition = \"hash\"\n\
             [sinks.out]\nkind = \"latency\"\ntrace = true\npath = \"{out}\"\n",
            checkpoints = run.join("checkpoints").display(),
            key = component("bench_swap_key")?,
            count = component("bench_swap_count")?,
            out = run.join("out").display(),
        ),
    )?;
    let job = crate::manifest::load(&manifest, &[])?;
    let id = submit_job(
        client,
        &Submission {
            job: &job,
            manifest_path: &manifest,
            overrides: &[],
            from: None,
            allow_non_restored_state: false,
        },
    )?;
    let job_path = format!("/v1/jobs/{id}");
    // Loaded: the count has taken every bulk key (and some timed records).
    poll(client, &job_path, Duration::from_secs(600), |v| {
        v["status"] == "running"
            && (v["vertices"].as_array())
                .and_then(|vs| vs.iter().find(|x| x["uid"] == "count"))
                .and_then(|x| x["records_in"].as_u64())
                .is_some_and(|n| n > keys)
    })?;
    std::thread::sleep(STEADY);
    let v2 = upload_component(
        client,
        Path::new(&component("bench_swap_count_v2")?),
        crate::plan::GuestLimits::default().component_bytes,
    )?;
    let asked = now_us();
    let body = serde_json::json!({ "operator": "count", "artifact": format!("sha256:{v2}"), "mode": mode });
    let answer = client.post_json(&format!("{job_path}/swap"), &body)?;
    let request = answer["request"].as_str().context("no request id")?;
    client.wait_request(
        &id,
        request,
        "swap",
        Duration::from_millis(5),
        Duration::from_secs(600),
    )?;
    if !live {
        poll(client, &job_path, Duration::from_secs(600), |v| {
            v["status"] == "running" && v["attempt"].as_u64().is_some_and(|a| a >= 1)
        })?;
    }
    let swapped = now_us();
    std::thread::sleep(AFTER);
    let ended = now_us();
    client.post_json(&format!("{job_path}/cancel"), &Value::Null)?;
    poll(client, &job_path, Duration::from_secs(60), |v| {
        v["status"] == "cancelled"
    })?;
    let view = client.get(&job_path)?;
    if view["versions"]["count"] != 2 {
        bail!("the {mode} swap did not take: {view}");
    }
    let t = traces(&run.join("out"))?;
    let steady_from = asked - STEADY.as_micros() as u64;
    let (steady_p99, _) = latency(&t, steady_from, asked, 0.99);
    let (swap_p99, swap_max) = latency(&t, asked, asked + 1_000_000, 0.99);
    // The job went on after the swap: both sink subtasks had records made after it.
    let went_on = t.len() == 2
        && t.values()
            .all(|r| r.iter().any(|&(made, _)| made > swapped));
    let line = format!(
        " {mode}_pause_ms={:.1} {mode}_steady_gap_ms={:.1} {mode}_p99_ms={swap_p99:.1} {mode}_max_ms={swap_max:.1} {mode}_steady_p99_ms={steady_p99:.1} {mode}_request_ms={:.0}",
        longest_gap(&t, asked, ended),
        longest_gap(&t, steady_from, asked),
        (swapped - asked) as f64 / 1e3,
    );
    Ok((line, went_on))
}

/// Runs the swap benchmark and prints a line per number of keys; `false` if a result was wrong.
pub fn run(quick: bool, manifests: &Path, scratch: &Path) -> Result<bool> {
    let exe = std::env::current_exe().context("cannot find the weir binary")?;
    let components = manifests.join("../target/wasm32-wasip2/release");
    let dir = std::path::absolute(scratch.join("swap"))?;
    std::fs::create_dir_all(&dir)?;
    let (_procs, _, _, api) = start_workers(&exe, &dir.join("cluster"), &[], &[4, 4])?;
    let token = std::fs::read_to_string(dir.join("cluster/coord/api-token"))?;
    let client = Client::new(&api, Some(token.trim()), None)?;
    let sizes: [u64; 2] = if quick {
        [1_000, 20_000]
    } else {
        [1_000, 1_000_000]
    };
    let mut all_ok = true;
    for keys in sizes {
        let mut line = format!("job=swap keys={keys} rate={RATE}");
        let mut ok = true;
        for live in [true, false] {
            let (figures, went_on) = swap_once(&client, &dir, &components, keys, live)?;
            line += &figures;
            ok &= went_on;
        }
        println!("{line} verified={}", if ok { "ok" } else { "FAILED" });
        all_ok &= ok;
    }
    Ok(all_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_and_latencies_come_from_the_traces_in_their_window() {
        let t: BTreeMap<u32, Vec<(u64, u64)>> = [
            (0, vec![(0, 1_000), (1_000, 3_000), (2_000, 60_000)]),
            (1, vec![(0, 2_000), (5_000, 9_000)]),
        ]
        .into();
        assert_eq!(longest_gap(&t, 0, 100_000), 57.0);
        assert_eq!(longest_gap(&t, 0, 10_000), 7.0, "later arrivals are out");
        let (p, max) = latency(&t, 0, 2_000, 0.5);
        // Made before 2 ms: latencies 1, 2, 2 ms.
        assert_eq!((p, max), (2.0, 2.0));
        assert!(latency(&t, 99_000, 100_000, 0.99).0.is_nan());
    }
}
