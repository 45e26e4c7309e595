//! The CLI verbs that are clients of the HTTP API: `weir submit`, `list`, `status`, `cancel`.
//! They reach the API at `--api URL` (or `WEIR_API`) with `--token T` (or `WEIR_TOKEN`).

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

/// A client of the API.
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(args: &ApiArgs) -> Result<Self> {
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(path) = &args.cacert {
            let pem = crate::files::read_small_text(path)?;
            let certs = ureq::tls::parse_pem(pem.as_bytes())
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect::<Vec<_>>();
            if certs.is_empty() {
                bail!("--cacert {}: no certificate in it", path.display());
            }
            tls = tls.root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(certs)));
        }
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(300)))
            .tls_config(tls.build())
            .build();
        Ok(Client {
            base: args.api.trim_end_matches('/').to_string(),
            token: args.token.as_ref().map(|t| t.trim().to_string()),
            agent: config.new_agent(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn authorized<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(t) => request.header("Authorization", format!("Bearer {t}")),
            None => request,
        }
    }

    /// The JSON of a response, or the API's error as an error.
    fn answer(
        &self,
        what: &str,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value> {
        let mut response =
            response.with_context(|| format!("cannot reach the API at {}", self.base))?;
        let status = response.status();
        let text = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .with_context(|| format!("{what}: cannot read the answer"))?;
        let json: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .with_context(|| format!("{what}: the API answered {status} with {text:?}"))?
        };
        if !status.is_success() {
            let message = json["error"]["message"].as_str().unwrap_or(&text);
            bail!("{what}: {message} ({status})");
        }
        Ok(json)
    }

    pub fn get(&self, path: &str) -> Result<Value> {
        let r = self.authorized(self.agent.get(self.url(path))).call();
        self.answer(&format!("GET {path}"), r)
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Result<Value> {
        let r = self
            .authorized(self.agent.post(self.url(path)))
            .header("Content-Type", "application/json")
            .send(body.to_string().as_bytes());
        self.answer(&format!("POST {path}"), r)
    }

    pub fn post_bytes(&self, path: &str, content_type: &str, body: &[u8]) -> Result<Value> {
        let r = self
            .authorized(self.agent.post(self.url(path)))
            .header("Content-Type", content_type)
            .send(body);
        self.answer(&format!("POST {path}"), r)
    }
}

/// Percent-encodes a query parameter's value.
fn query_value(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
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
) -> Result<()> {
    let job = manifest::load(manifest_path, overrides)?;
    crate::worker::check(&job)?;
    let client = Client::new(args)?;
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

/// A job to submit: checked, as read from its manifest with its overrides, and where it starts.
pub struct Submission<'a> {
    pub job: &'a crate::plan::JobGraph,
    pub manifest_path: &'a Path,
    pub overrides: &'a [Override],
    pub from: Option<&'a Path>,
    pub allow_non_restored_state: bool,
}

/// Uploads the components of a submission's job and submits it with its paths made absolute;
/// the job's id.
pub fn submit_job(client: &Client, submission: &Submission) -> Result<String> {
    let Submission {
        job,
        manifest_path,
        overrides,
        from,
        allow_non_restored_state,
    } = *submission;
    let mut uploaded: Vec<(PathBuf, String)> = Vec::new();
    let text = manifest::portable(manifest_path, overrides, |file| {
        if let Some((_, hash)) = uploaded.iter().find(|(f, _)| f == file) {
            return Ok(format!("sha256:{hash}"));
        }
        let bytes = crate::files::read_limited(
            file,
            job.limits.component_bytes,
            Some("limits.component_mib"),
        )
        .map_err(|e| e.to_string())?;
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        // A component the coordinator has already is not sent again.
        let hash = crate::net::blobs::content_hash(&bytes);
        if client.get(&format!("/v1/artifacts/{hash}")).is_ok() {
            uploaded.push((file.to_path_buf(), hash.clone()));
            return Ok(format!("sha256:{hash}"));
        }
        let answer = client
            .post_bytes(
                &format!("/v1/artifacts?name={}", query_value(&name)),
                "application/wasm",
                &bytes,
            )
            .map_err(|e| format!("{e:#}"))?;
        let hash = answer["artifacts"][0]["hash"]
            .as_str()
            .ok_or("the API did not say the artifact's hash")?
            .to_string();
        uploaded.push((file.to_path_buf(), hash.clone()));
        Ok(format!("sha256:{hash}"))
    })
    .map_err(anyhow::Error::msg)?;
    let from = match from {
        Some(p) => Some(std::path::absolute(p).context("--from")?),
        None => None,
    };
    let body = serde_json::json!({
        "manifest": text,
        "manifest_name": manifest_path.display().to_string(),
        "from_savepoint": from.map(|p| p.display().to_string()),
        "allow_non_restored_state": allow_non_restored_state,
    });
    let answer = client.post_json("/v1/jobs", &body)?;
    Ok(answer["id"]
        .as_str()
        .context("the API did not say the job's id")?
        .to_string())
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
    let jobs = Client::new(args)?.get("/v1/jobs")?;
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
    let job = Client::new(args)?.get(&format!("/v1/jobs/{}", query_value(id)))?;
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
    Ok(())
}

/// `weir cancel JOB`.
pub fn cancel(args: &ApiArgs, id: &str) -> Result<()> {
    Client::new(args)?.post_json(
        &format!("/v1/jobs/{}/cancel", query_value(id)),
        &Value::Null,
    )?;
    println!("cancelling {id}");
    Ok(())
}

/// Waits for savepoint request `request` of job `id` to end; the savepoint's path.
fn wait_request(client: &Client, id: &str, request: &str) -> Result<String> {
    let path = format!(
        "/v1/jobs/{}/savepoints/{}",
        query_value(id),
        query_value(request)
    );
    let since = std::time::Instant::now();
    loop {
        let r = client.get(&path)?;
        match r["status"].as_str() {
            Some("completed") => {
                return r["path"]
                    .as_str()
                    .map(str::to_string)
                    .context("the API did not say the savepoint's path");
            }
            Some("failed") => bail!(
                "the savepoint failed: {}",
                r["error"].as_str().unwrap_or("no cause given")
            ),
            _ if since.elapsed() > REQUEST_LIMIT => bail!(
                "the savepoint did not complete within {} s (request {request} goes on)",
                REQUEST_LIMIT.as_secs()
            ),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// How long the CLI waits for a savepoint.
const REQUEST_LIMIT: Duration = Duration::from_secs(600);

/// `weir savepoint JOB [--dir D]` and `weir stop JOB [--dir D]`: prints the savepoint's path
/// (once the job has ended, for a stop).
pub fn savepoint(args: &ApiArgs, id: &str, dir: Option<&Path>, stop: bool) -> Result<()> {
    let client = Client::new(args)?;
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
    let path = wait_request(&client, id, request)?;
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
    let client = Client::new(args)?;
    let body = match operator {
        Some(uid) => serde_json::json!({ "operators": { uid: parallelism } }),
        None => serde_json::json!({ "parallelism": parallelism }),
    };
    let job_path = format!("/v1/jobs/{}", query_value(id));
    let before = client.get(&job_path)?["attempt"].as_u64().unwrap_or(0);
    let answer = client.post_json(&format!("{job_path}/rescale"), &body)?;
    let request = answer["request"]
        .as_str()
        .context("the API did not say the request's id")?;
    let path = wait_request(&client, id, request)?;
    let since = std::time::Instant::now();
    loop {
        let job = client.get(&job_path)?;
        let status = job["status"].as_str().unwrap_or("");
        if status == "running" && job["attempt"].as_u64().unwrap_or(0) > before {
            break;
        }
        if matches!(status, "finished" | "failed" | "cancelled") {
            bail!(
                "job {id} {status} while being rescaled: {}",
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
    eprintln!("job {id} runs rescaled, restored from the savepoint:");
    println!("{path}");
    Ok(())
}

/// `weir logs JOB [--follow]`: the job's recent guest lines; with `follow`, new ones as they
/// come until the job ends.
pub fn logs(args: &ApiArgs, id: &str, follow: bool) -> Result<()> {
    use std::io::Write as _;
    let client = Client::new(args)?;
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
