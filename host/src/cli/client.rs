//! The CLI verbs that are clients of the HTTP API: `weir submit`, `list`, `status`, `cancel`.
//! They reach the API at `--api URL` (or `WEIR_API`) with `--token T` (or `WEIR_TOKEN`).

pub use crate::api::client::{Client, Submission, query_value, submit_job};
use crate::manifest::{self, Override};
use anyhow::{Context as _, Result, bail};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the API is, and the token it wants.
#[derive(clap::Args, Debug, Clone)]
pub struct ApiArgs {
    /// The API's base URL.
    #[arg(long, env = "WEIR_API", default_value = "http://127.0.0.1:8081")]
    pub api: String,
    /// The API token (the coordinator keeps it in DATA_DIR/api-token).
    #[arg(long, env = "WEIR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Trust this CA certificate (PEM) for an https API, besides the usual roots.
    #[arg(long, value_name = "PEM")]
    pub cacert: Option<PathBuf>,
}

impl ApiArgs {
    fn client(&self) -> Result<Client> {
        Client::new(&self.api, self.token.as_deref(), self.cacert.as_deref())
    }
}

/// `weir submit`: checks the manifest as `weir run` would, uploads its components, submits it
/// with its paths made absolute, and prints the job's id; with `follow`, follows the job to its
/// end.
pub fn submit(
    args: &ApiArgs,
    manifest_path: &Path,
    overrides: &[Override],
    from: Option<&Path>,
    allow_non_restored_state: bool,
    follow: bool,
    components: &dyn manifest::Components,
) -> Result<()> {
    let job = manifest::load_with(manifest_path, overrides, components)?;
    for w in manifest::warnings(&job) {
        eprintln!("warning: {}: {w}", manifest_path.display());
    }
    crate::worker::check(&job)?;
    let client = args.client()?;
    let submission = Submission {
        job: &job,
        manifest_path,
        overrides,
        from,
        allow_non_restored_state,
    };
    let id = submit_job(&client, &submission)?;
    println!("{id}");
    if follow {
        follow_job(&client, &id, None)?;
    }
    Ok(())
}

/// Shows job `id`'s progress until it ends; an error unless it finished. Once `cancel` is set
/// (Ctrl-C), the job is cancelled.
pub fn follow_job(
    client: &Client,
    id: &str,
    cancel: Option<&std::sync::atomic::AtomicBool>,
) -> Result<()> {
    use std::io::Write as _;
    let path = format!("/v1/jobs/{}", query_value(id));
    let mut cancelling = false;
    loop {
        if !cancelling && cancel.is_some_and(|c| c.load(std::sync::atomic::Ordering::SeqCst)) {
            cancelling = true;
            eprintln!("\ncancelling the job (Ctrl-C)");
            let _ = client.post_json(&format!("{path}/cancel"), &Value::Null);
        }
        let job = client.get(&path)?;
        let status = job["status"].as_str().unwrap_or("unknown");
        eprint!(
            "\r{status}: attempt {}, {} records in, {} out ({:.0}/s in), {} checkpoints   ",
            job["attempt"],
            job["records_in"],
            job["records_out"],
            job["records_in_per_second"].as_f64().unwrap_or(0.0),
            job["checkpoints_completed"],
        );
        let _ = std::io::stderr().flush();
        match status {
            "finished" => {
                eprintln!("\njob {id} finished");
                return Ok(());
            }
            "failed" | "cancelled" => {
                eprintln!();
                bail!(
                    "job {id} {status}: {}",
                    job["why"].as_str().unwrap_or("no cause given")
                );
            }
            _ => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// `weir list`.
pub fn list(args: &ApiArgs) -> Result<()> {
    let jobs = args.client()?.get("/v1/jobs")?;
    let jobs = jobs["jobs"].as_array().cloned().unwrap_or_default();
    if jobs.is_empty() {
        println!("no jobs");
        return Ok(());
    }
    println!("{:<32} {:<11} {:>7}  name", "id", "status", "attempt");
    for j in jobs {
        println!(
            "{:<32} {:<11} {:>7}  {}",
            j["id"].as_str().unwrap_or(""),
            j["status"].as_str().unwrap_or(""),
            j["attempt"],
            j["name"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

/// `weir status JOB`: a summary, or the whole JSON.
pub fn status(args: &ApiArgs, id: &str, json: bool) -> Result<()> {
    let job = args
        .client()?
        .get(&format!("/v1/jobs/{}", query_value(id)))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&job)?);
        return Ok(());
    }
    println!(
        "job {} ({})",
        job["id"].as_str().unwrap_or(id),
        job["name"].as_str().unwrap_or("")
    );
    print!("status: {}", job["status"].as_str().unwrap_or(""));
    if let Some(why) = job["why"].as_str() {
        print!(": {why}");
    }
    println!();
    println!(
        "attempt {}, {} restarts; {} records in, {} out",
        job["attempt"], job["restarts"], job["records_in"], job["records_out"]
    );
    if let Some(c) = job.get("last_checkpoint").filter(|c| !c.is_null()) {
        println!(
            "last checkpoint: {} ({} ms, {} bytes)",
            c["id"], c["duration_ms"], c["bytes"]
        );
    }
    for v in job["vertices"].as_array().into_iter().flatten() {
        let workers: Vec<String> = v["subtasks"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| s["worker"].as_str().unwrap_or("-").to_string())
            .collect();
        println!(
            "  {} x{}: {} in, {} out, backpressure {}; on {}",
            v["uid"].as_str().unwrap_or(""),
            v["parallelism"],
            v["records_in"],
            v["records_out"],
            v["backpressure"].as_str().unwrap_or(""),
            workers.join(", ")
        );
    }
    for f in job["failures"].as_array().into_iter().flatten() {
        println!(
            "  attempt {} failed: {}",
            f["attempt"],
            f["cause"].as_str().unwrap_or("")
        );
    }
    if let Some(components) = job["components"].as_object().filter(|c| !c.is_empty()) {
        println!("components:");
        for (uid, hash) in components {
            println!(
                "  {uid}: v{} {}",
                job["versions"][uid].as_u64().unwrap_or(1),
                hash.as_str().unwrap_or("")
            );
        }
    }
    for s in job["swaps"].as_array().into_iter().flatten() {
        println!(
            "  swap of {} ({}, checkpoint {}): {} -> {}: {}{}",
            s["operator"].as_str().unwrap_or(""),
            s["mode"].as_str().unwrap_or(""),
            s["checkpoint"],
            s["from"].as_str().unwrap_or(""),
            s["to"].as_str().unwrap_or(""),
            s["status"].as_str().unwrap_or(""),
            s["why"]
                .as_str()
                .map(|w| format!(" ({w})"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// `weir cancel JOB`.
pub fn cancel(args: &ApiArgs, id: &str) -> Result<()> {
    args.client()?.post_json(
        &format!("/v1/jobs/{}/cancel", query_value(id)),
        &Value::Null,
    )?;
    println!("cancelling {id}");
    Ok(())
}

/// How long the CLI waits for a savepoint.
const REQUEST_LIMIT: Duration = Duration::from_secs(600);

/// `weir savepoint JOB [--dir D]` and `weir stop JOB [--dir D]`: prints the savepoint's path
/// (once the job has ended, for a stop).
pub fn savepoint(args: &ApiArgs, id: &str, dir: Option<&Path>, stop: bool) -> Result<()> {
    let client = args.client()?;
    let dir = match dir {
        Some(d) => Some(std::path::absolute(d).context("--dir")?),
        None => None,
    };
    let body = serde_json::json!({ "dir": dir.map(|d| d.display().to_string()) });
    let route = if stop { "stop" } else { "savepoints" };
    let answer = client.post_json(&format!("/v1/jobs/{}/{route}", query_value(id)), &body)?;
    let request = answer["request"]
        .as_str()
        .context("the API did not say the request's id")?;
    let path = client.wait_savepoint(id, request, Duration::from_millis(100), REQUEST_LIMIT)?;
    if stop {
        let since = std::time::Instant::now();
        loop {
            let job = client.get(&format!("/v1/jobs/{}", query_value(id)))?;
            if matches!(
                job["status"].as_str(),
                Some("finished" | "failed" | "cancelled")
            ) {
                break;
            }
            if since.elapsed() > REQUEST_LIMIT {
                bail!("the job did not stop within {} s", REQUEST_LIMIT.as_secs());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    println!("{path}");
    Ok(())
}

/// `weir rescale JOB --parallelism N [--operator UID]`: a savepoint, then the job deployed
/// again with the new parallelism; prints the savepoint's path once it runs again.
pub fn rescale(args: &ApiArgs, id: &str, parallelism: u32, operator: Option<&str>) -> Result<()> {
    let client = args.client()?;
    let body = match operator {
        Some(uid) => serde_json::json!({ "operators": { uid: parallelism } }),
        None => serde_json::json!({ "parallelism": parallelism }),
    };
    let job_path = format!("/v1/jobs/{}", query_value(id));
    let before = client.get(&job_path)?["attempt"].as_u64().unwrap_or(0);
    let answer = client.post_json(&format!("{job_path}/rescale"), &body)?;
    redeployed(&client, id, &answer, before, "rescaled")
}

/// `weir swap JOB OPERATOR COMPONENT [--mode live|restart]`: uploads the component, then swaps
/// it for the operator's. Live: waits until the swap is confirmed (a checkpoint after it
/// completed) and prints the swap's checkpoint; restart: a savepoint, then the job deployed
/// again with it, and prints the savepoint's path once the job runs again.
pub fn swap(args: &ApiArgs, id: &str, operator: &str, component: &Path, mode: &str) -> Result<()> {
    let client = args.client()?;
    let job_path = format!("/v1/jobs/{}", query_value(id));
    let before = client.get(&job_path)?["attempt"].as_u64().unwrap_or(0);
    let limit = crate::plan::GuestLimits::default().component_bytes;
    let hash = crate::api::client::upload_component(&client, component, limit)?;
    let body = serde_json::json!({
        "operator": operator,
        "artifact": format!("sha256:{hash}"),
        "mode": mode,
    });
    let answer = client.post_json(&format!("{job_path}/swap"), &body)?;
    if mode == "restart" {
        return redeployed(&client, id, &answer, before, "swapped");
    }
    let request = answer["request"]
        .as_str()
        .context("the API did not say the request's id")?;
    let path = client.wait_request(
        id,
        request,
        "swap",
        Duration::from_millis(100),
        REQUEST_LIMIT,
    )?;
    eprintln!("`{operator}` of job {id} runs {hash} (swapped live at checkpoint):");
    println!("{path}");
    Ok(())
}

/// Waits for the savepoint request in `answer` to complete, then for job `id` to run again
/// (an attempt after `before`); prints the savepoint's path.
fn redeployed(client: &Client, id: &str, answer: &Value, before: u64, done: &str) -> Result<()> {
    let job_path = format!("/v1/jobs/{}", query_value(id));
    let request = answer["request"]
        .as_str()
        .context("the API did not say the request's id")?;
    let path = client.wait_savepoint(id, request, Duration::from_millis(100), REQUEST_LIMIT)?;
    let since = std::time::Instant::now();
    loop {
        let job = client.get(&job_path)?;
        let status = job["status"].as_str().unwrap_or("");
        if status == "running" && job["attempt"].as_u64().unwrap_or(0) > before {
            break;
        }
        if matches!(status, "finished" | "failed" | "cancelled") {
            bail!(
                "job {id} {status} while being {done}: {}",
                job["why"].as_str().unwrap_or("no cause given")
            );
        }
        if since.elapsed() > REQUEST_LIMIT {
            bail!(
                "the job did not run again within {} s",
                REQUEST_LIMIT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("job {id} runs {done}, restored from the savepoint:");
    println!("{path}");
    Ok(())
}

/// `weir logs JOB [--follow]`: the job's recent guest lines; with `follow`, new ones as they
/// come until the job ends.
pub fn logs(args: &ApiArgs, id: &str, follow: bool) -> Result<()> {
    use std::io::Write as _;
    let client = args.client()?;
    let job_path = format!("/v1/jobs/{}", query_value(id));
    let mut since = 0u64;
    loop {
        let answer = client.get(&format!("{job_path}/logs?since={since}"))?;
        let mut out = std::io::stdout().lock();
        for l in answer["lines"].as_array().into_iter().flatten() {
            writeln!(
                out,
                "{} {:<6} {}[{}]@{}: {}",
                l["at_ms"],
                l["level"].as_str().unwrap_or(""),
                l["operator"].as_str().unwrap_or(""),
                l["subtask"],
                l["worker"].as_str().unwrap_or(""),
                l["message"].as_str().unwrap_or("")
            )?;
        }
        out.flush()?;
        since = answer["next"].as_u64().unwrap_or(since);
        if !follow {
            return Ok(());
        }
        let job = client.get(&job_path)?;
        if matches!(
            job["status"].as_str(),
            Some("finished" | "failed" | "cancelled")
        ) && answer["lines"].as_array().is_none_or(Vec::is_empty)
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
