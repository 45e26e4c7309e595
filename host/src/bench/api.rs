//! `weir bench --job api`: the HTTP API on a running cluster (a coordinator and one worker with
//! four slots, real processes on loopback).
//!
//! - **Submit to first record.** `POST /v1/jobs` of the word count (its components uploaded
//!   and compiled before, so cached), to the first record its sink writes, as the workers
//!   report it (the same clock); the median and the best of several submissions.
//! - **Savepoints at scale.** A job that loads `keys` distinct keys into the word count's
//!   keyed state, then goes on at a trickle: how long a savepoint takes (request to completed)
//!   and its size; then stop-to-restored: from `POST /stop` to the first record written by the
//!   same job submitted again from the savepoint (its state restored).
//! - **Requests per second** of `GET /v1/jobs/{id}` and of a live state query, one client on
//!   one connection, for two seconds each.

use super::cluster::start_workers;
use crate::api::client::{Client, Submission, submit_job};
use anyhow::{Context as _, Result, bail};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often the benchmark polls: its times are read from the answers, to the millisecond.
const POLL: Duration = Duration::from_millis(2);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Polls `GET path` until `done` says so, up to `limit`; the last answer.
pub(super) fn poll(
    client: &Client,
    path: &str,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let start = Instant::now();
    loop {
        let v = client.get(path)?;
        if done(&v) {
            return Ok(v);
        }
        if matches!(v["status"].as_str(), Some("failed" | "cancelled")) {
            bail!("{path}: {v}");
        }
        if start.elapsed() > limit {
            bail!("{path} did not get there within {limit:?}: {v}");
        }
        std::thread::sleep(POLL);
    }
}

/// Requests per second of `GET path`, for two seconds.
fn rate(client: &Client, path: &str) -> Result<f64> {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        client.get(path)?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// The size of the files under `dir`.
fn size_of(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => size_of(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// Submits the manifest at `path` (its components uploaded unless the coordinator has them);
/// the job's id and when the request was sent (ms since the Unix epoch).
fn submit(client: &Client, path: &Path, from: Option<&Path>) -> Result<(String, u64)> {
    let job = crate::manifest::load(path, &[])?;
    let submission = Submission {
        job: &job,
        manifest_path: path,
        overrides: &[],
        from,
        allow_non_restored_state: false,
    };
    let at = now_ms();
    Ok((submit_job(client, &submission)?, at))
}

/// Runs the API benchmark and prints its line; `false` if a result was wrong.
pub fn run(quick: bool, manifests: &Path, scratch: &Path) -> Result<bool> {
    let exe = std::env::current_exe().context("cannot find the weir binary")?;
    let components = manifests.join("../target/wasm32-wasip2/release");
    let component = |name: &str| -> Result<String> {
        let p = components.join(format!("{name}.wasm"));
        if !p.is_file() {
            bail!("{} is missing: build the examples first", p.display());
        }
        Ok(std::path::absolute(&p)?.display().to_string())
    };
    let (split, count) = (component("wordcount_split")?, component("wordcount_count")?);
    let dir = std::path::absolute(scratch.join("api"))?;
    std::fs::create_dir_all(&dir)?;
    let (_procs, _, _, api) = start_workers(&exe, &dir.join("cluster"), &[], &[4])?;
    let token = std::fs::read_to_string(dir.join("cluster/coord/api-token"))?;
    let client = Client::new(&api, Some(token.trim()), None)?;

    // Submit to first record, components cached (the first run compiles them on the worker).
    let small = dir.join("small.toml");
    std::fs::write(
        &small,
        format!(
            "edges = [\"gen -> split\", \"split -> count\", \"count -> out\"]\n[job]\nname = \"small\"\nflush_ms = 0\n[sources.gen]\nkind = \"datagen\"\ncount = 1000\n[operators.split]\ncomponent = \"{split}\"\n[operators.count]\ncomponent = \"{count}\"\npartition = \"hash\"\n[sinks.out]\nkind = \"file\"\npath = \"{}\"\n",
            dir.join("small-out").display()
        ),
    )?;
    let mut firsts = Vec::new();
    for round in 0..6 {
        let (id, at) = submit(&client, &small, None)?;
        let v = poll(
            &client,
            &format!("/v1/jobs/{id}"),
            Duration::from_secs(60),
            |v| v["status"] == "finished" && v["first_output_ms"].is_u64(),
        )?;
        if round > 0 {
            firsts.push(
                v["first_output_ms"]
                    .as_u64()
                    .unwrap_or(0)
                    .saturating_sub(at),
            );
        }
    }
    firsts.sort_unstable();

    // A savepoint, then stop to restored, at `keys` keys.
    let keys: u64 = if quick { 20_000 } else { 1_000_000 };
    let big = dir.join("big.toml");
    let job_text = |name: &str| {
        format!(
            "edges = [\"bulk -> split\", \"trickle -> split\", \"split -> count\", \"count -> out\"]\n[job]\nname = \"{name}\"\nparallelism = 2\n[checkpoint]\ninterval = \"10s\"\ndir = \"{}\"\n[sources.bulk]\nkind = \"datagen\"\ncount = {keys}\nshape = \"sequence\"\nparallelism = 1\n[sources.trickle]\nkind = \"datagen\"\nrate = 1000.0\nvocabulary = 1000\nwords_per_line = 1\nparallelism = 1\n[operators.split]\ncomponent = \"{split}\"\npartition = \"rebalance\"\n[operators.count]\ncomponent = \"{count}\"\npartition = \"hash\"\n[sinks.out]\nkind = \"file\"\npath = \"{}\"\n",
            dir.join("big-checkpoints").display(),
            dir.join("big-out").display()
        )
    };
    std::fs::write(&big, job_text("big"))?;
    let (id, _) = submit(&client, &big, None)?;
    let job_path = format!("/v1/jobs/{id}");
    // Loaded: the counting vertex has taken every bulk key.
    poll(&client, &job_path, Duration::from_secs(600), |v| {
        v["status"] == "running"
            && v["vertices"]
                .as_array()
                .and_then(|vs| vs.iter().find(|x| x["uid"] == "count"))
                .and_then(|x| x["records_in"].as_u64())
                .is_some_and(|n| n >= keys)
    })?;
    let started = Instant::now();
    let r = client.post_json(&format!("{job_path}/savepoints"), &Value::Null)?;
    let savepoint = client.wait_savepoint(
        &id,
        r["request"].as_str().unwrap_or(""),
        POLL,
        Duration::from_secs(300),
    )?;
    let savepoint_ms = started.elapsed().as_millis();
    let savepoint_mib = size_of(Path::new(&savepoint)) as f64 / (1 << 20) as f64;

    // Rates of the API while the job runs.
    let key = client.get(&format!("{job_path}/state/count/count?key=7"));
    let key = if key.is_ok() { "7" } else { "1" };
    let get_rate = rate(&client, &job_path)?;
    let state_rate = rate(&client, &format!("{job_path}/state/count/count?key={key}"))?;

    let stop_at = now_ms();
    let r = client.post_json(&format!("{job_path}/stop"), &Value::Null)?;
    let stopped = client.wait_savepoint(
        &id,
        r["request"].as_str().unwrap_or(""),
        POLL,
        Duration::from_secs(300),
    )?;
    poll(&client, &job_path, Duration::from_secs(60), |v| {
        v["status"] == "finished"
    })?;
    std::fs::write(&big, job_text("big-restored"))?;
    let (again, _) = submit(&client, &big, Some(Path::new(&stopped)))?;
    let v = poll(
        &client,
        &format!("/v1/jobs/{again}"),
        Duration::from_secs(600),
        |v| v["first_output_ms"].is_u64(),
    )?;
    let restored_ms = v["first_output_ms"]
        .as_u64()
        .unwrap_or(0)
        .saturating_sub(stop_at);
    // The restored job holds the keys: one read back.
    let read = client.get(&format!("/v1/jobs/{again}/state/count/count?key={key}"));
    let ok = read.is_ok();
    let _ = client.post_json(&format!("/v1/jobs/{again}/cancel"), &Value::Null);
    println!(
        "job=api submit_to_first_record_ms_median={} submit_to_first_record_ms_best={} keys={keys} savepoint_ms={savepoint_ms} savepoint_mib={savepoint_mib:.1} stop_to_restored_ms={restored_ms} get_job_per_s={get_rate:.0} state_query_per_s={state_rate:.0} verified={}",
        firsts[firsts.len() / 2],
        firsts[0],
        if ok { "ok" } else { "FAILED" }
    );
    Ok(ok)
}
