//! The `weir` command line: `run`, `validate`, `inspect`, the cluster's verbs, and the
//! project verbs `new`, `build` and `test`.

mod checkpoints;
mod client;
mod embedded;
mod progress;
mod remote;

use crate::manifest::{self, Override};
use crate::plan::{ExecutionGraph, JobGraph};
use crate::wasm::{self, LoadedComponent, Runtime};
use crate::worker::{self, JobControl, JobMetrics};
use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "weir",
    version,
    about = "A stateful stream processor whose functions are WebAssembly components"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a job in this process (embedded local mode), or on a cluster (--coordinator), until
    /// its sources end, or until Ctrl-C.
    Run {
        /// The job manifest (TOML).
        manifest: PathBuf,
        /// Override a manifest field, e.g. `--set operators.count.parallelism=4` (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<Override>,
        /// End with a `stats:` line of key=value figures (CPU, peak memory, start time).
        #[arg(long)]
        stats: bool,
        /// Restore from a checkpoint: a checkpoint directory (its newest complete checkpoint)
        /// or one `chk-<id>` in it.
        #[arg(long, value_name = "DIR")]
        from: Option<PathBuf>,
        /// With --from: drop the state of operators the job no longer has.
        #[arg(long, requires = "from")]
        allow_non_restored_state: bool,
        /// Submit the job to the cluster whose coordinator listens at HOST:PORT, and follow it
        /// to its end (Ctrl-C cancels it), instead of running it in this process.
        #[arg(long, value_name = "HOST:PORT", requires = "token")]
        coordinator: Option<String>,
        /// The cluster's join token (the coordinator prints it and keeps it in its data
        /// directory's join-token file); with --coordinator.
        #[arg(long, value_name = "TOKEN", requires = "coordinator")]
        token: Option<String>,
        /// Serve the job's metrics (Prometheus text) at http://ADDR/metrics.
        #[arg(long, value_name = "ADDR", conflicts_with = "coordinator")]
        metrics: Option<std::net::SocketAddr>,
        /// Build the components the manifest names by their project directory
        /// (`component = "../count"`) first; unchanged projects are not built again.
        #[arg(long)]
        build: bool,
        /// Serve the HTTP API at ADDR while the job runs (an embedded coordinator and worker
        /// in this process): status, savepoints, rescaling, live state, logs.
        #[arg(long, value_name = "ADDR", conflicts_with_all = ["coordinator", "metrics", "stats"])]
        http: Option<std::net::SocketAddr>,
        /// With --http: serve the API without a token (only on a loopback address).
        #[arg(long, requires = "http")]
        no_auth: bool,
    },
    /// Run the reference workloads, verify their results and report their cost.
    Bench {
        /// Small inputs: checks every result quickly (what the test suite runs).
        #[arg(long)]
        quick: bool,
        /// Only this job (stateless, stateless-unchained, wordcount, checkpointed,
        /// wordcount-redb, checkpointed-redb, network, shuffle, window).
        #[arg(long)]
        job: Option<String>,
        /// Records per job instead of the defaults.
        #[arg(long)]
        n: Option<u64>,
        /// The directory holding the job manifests.
        #[arg(long, default_value = "examples/bench")]
        manifests: PathBuf,
    },
    /// Check a manifest and its components without running anything.
    Validate {
        manifest: PathBuf,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<Override>,
        /// Build the components named by their project directory first, as `run --build`.
        #[arg(long)]
        build: bool,
    },
    /// Start a cluster's coordinator: workers join it with the token it prints.
    Coordinator {
        /// The address to listen on (UDP, QUIC), e.g. 127.0.0.1:6123; port 0 picks a free one.
        #[arg(long, value_name = "ADDR")]
        listen: std::net::SocketAddr,
        /// Where the coordinator keeps the cluster's CA, its join token and its state.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// A worker without a heartbeat this long is lost (e.g. "5s", "500ms").
        #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = duration)]
        heartbeat_timeout: std::time::Duration,
        /// Serve the cluster's metrics (Prometheus text) at http://ADDR/metrics.
        #[arg(long, value_name = "ADDR")]
        metrics: Option<std::net::SocketAddr>,
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Start a worker and join it to a coordinator with the slots it offers.
    Worker {
        /// The coordinator's address, HOST:PORT.
        #[arg(long, value_name = "ADDR")]
        join: String,
        /// The join token the coordinator printed (needed until this worker has joined: its
        /// certificate is then kept in its data directory).
        #[arg(long, value_name = "TOKEN")]
        token: Option<String>,
        /// How many task slots this worker offers.
        #[arg(long, value_name = "N")]
        slots: u32,
        /// Where the worker keeps its id, its certificate and its working files.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// How long to keep reconnecting to a lost coordinator (a restart) before exiting.
        #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration)]
        reconnect_timeout: std::time::Duration,
        /// The network buffer pool, in MiB: the most the channels of the jobs it runs may hold
        /// (a part that would need more is refused, and its job fails over).
        #[arg(long, value_name = "MIB", default_value_t = 1024)]
        network_mib: u64,
        /// Serve the metrics of the tasks it runs (Prometheus text) at http://ADDR/metrics.
        #[arg(long, value_name = "ADDR")]
        metrics: Option<std::net::SocketAddr>,
    },
    /// Submit a job to a cluster through its HTTP API: uploads the components the manifest
    /// names, submits it and prints the job's id.
    Submit {
        manifest: PathBuf,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<Override>,
        /// Start from a savepoint (or a checkpoint), on a path the cluster reaches.
        #[arg(long, value_name = "DIR")]
        from: Option<PathBuf>,
        /// With --from: drop the state of operators the job no longer has.
        #[arg(long, requires = "from")]
        allow_non_restored_state: bool,
        /// Follow the job to its end (the exit status is its outcome).
        #[arg(long)]
        follow: bool,
        /// Build the components named by their project directory first, as `run --build`.
        #[arg(long)]
        build: bool,
        #[command(flatten)]
        api: client::ApiArgs,
    },
    /// List the cluster's jobs.
    List {
        #[command(flatten)]
        api: client::ApiArgs,
    },
    /// Show a job: status, vertices and where they run, checkpoints, failures.
    Status {
        job: String,
        /// The whole answer, as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        api: client::ApiArgs,
    },
    /// Take a savepoint of a running job; prints its path.
    Savepoint {
        job: String,
        /// The directory to put it in (by default savepoints/ in the job's checkpoint
        /// directory).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        #[command(flatten)]
        api: client::ApiArgs,
    },
    /// Stop a job with a savepoint; prints the savepoint's path once the job has stopped.
    Stop {
        job: String,
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        #[command(flatten)]
        api: client::ApiArgs,
    },
    /// Rescale a running job: a savepoint, then the job deployed again with the new
    /// parallelism, restored from it.
    Rescale {
        job: String,
        /// The new parallelism (of every node, or of --operator's).
        #[arg(long, value_name = "N")]
        parallelism: u32,
        /// Only this node (by uid).
        #[arg(long, value_name = "UID")]
        operator: Option<String>,
        #[command(flatten)]
        api: client::ApiArgs,
    },
    /// Swap the component of one operator (or window function) of a running job, keeping its
    /// state: the new component is checked first (its world, its exports, its open with the
    /// operator's config), then `live` swaps it in at a checkpoint barrier while the job runs
    /// on, or `restart` takes a savepoint and deploys the job again with it.
    Swap {
        job: String,
        /// The operator's uid.
        operator: String,
        /// The new component (.wasm), uploaded as an artifact.
        component: PathBuf,
        /// `live`: at a checkpoint barrier, the job running on (rolled back if the new
        /// component fails before the next checkpoint); `restart`: from a savepoint.
        #[arg(long, default_value = "live", value_parser = ["live", "restart"])]
        mode: String,
        #[command(flatten)]
        api: client::ApiArgs,
    },
    /// Print a job's recent guest lines (log calls, stdout, stderr).
    Logs {
        job: String,
        /// Go on printing new lines until the job ends.
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        api: client::ApiArgs,
    },
    /// Cancel a job.
    Cancel {
        job: String,
        #[command(flatten)]
        api: client::ApiArgs,
    },
    /// List the checkpoints of a checkpoint directory.
    Checkpoints {
        /// The job's checkpoint directory (`checkpoint.dir`).
        dir: PathBuf,
    },
    /// Create an operator project: code that compiles, a job that runs it on an input it
    /// ships, a test with its expected output, and the language's build file.
    New {
        /// The directory to create; its name names the project.
        #[arg(required_unless_present = "list")]
        name: Option<PathBuf>,
        /// rust, python, js or c.
        #[arg(long, required_unless_present = "list")]
        lang: Option<String>,
        /// map, keyed or source (see --list).
        #[arg(long, default_value = "map")]
        template: String,
        /// Show the templates and their languages.
        #[arg(long, exclusive = true)]
        list: bool,
    },
    /// Build a project's component (Rust, Python, JavaScript or C), installing the language's
    /// toolchain the first time; prints its path and what it implements and imports.
    Build {
        /// The project directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Build a project and run its job on each test case in tests/, comparing what the sinks
    /// write with the expected files (and, for Rust, run its native tests).
    Test {
        /// The project directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Write the current output as the expected one.
        #[arg(long)]
        update: bool,
    },
    /// Show which weir worlds a component implements, and its imports and exports.
    Inspect {
        /// A component (.wasm).
        component: PathBuf,
        /// The largest component file to read, in MiB.
        #[arg(long, default_value_t = 256)]
        max_mib: u64,
    },
}

/// How the HTTP API is served.
#[derive(clap::Args, Debug, Clone)]
struct HttpArgs {
    /// Serve the HTTP API (and /metrics) at ADDR.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8081")]
    http: std::net::SocketAddr,
    /// Serve the API without a token (only on a loopback address).
    #[arg(long)]
    no_auth: bool,
    /// The largest request the API takes (an upload), in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    max_upload_mib: u64,
    /// Serve the API over TLS with this certificate chain (PEM); with --tls-key.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

impl HttpArgs {
    fn options(&self) -> crate::api::ApiOptions {
        crate::api::ApiOptions {
            listen: self.http,
            no_auth: self.no_auth,
            max_body: self.max_upload_mib.saturating_mul(1 << 20),
            tls: self.tls_cert.clone().zip(self.tls_key.clone()),
        }
    }
}

/// The entry point of the `weir` binary.
pub fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,weir=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            manifest,
            overrides,
            stats,
            from,
            allow_non_restored_state,
            coordinator,
            token,
            metrics,
            http,
            no_auth,
            build,
        } => match (coordinator, token, http) {
            (_, _, Some(listen)) => embedded::run(
                &manifest,
                &overrides,
                from.as_deref(),
                allow_non_restored_state,
                &crate::api::ApiOptions {
                    listen,
                    no_auth,
                    max_body: 256 << 20,
                    tls: None,
                },
                components(build).as_ref(),
            ),
            (Some(coordinator), Some(token), None) => remote::run(
                &manifest,
                &overrides,
                &remote::Target {
                    coordinator,
                    token,
                    from,
                    allow_non_restored_state,
                },
                stats,
                components(build).as_ref(),
            ),
            _ => run(
                manifest,
                &overrides,
                stats,
                &worker::RunOptions {
                    from,
                    allow_non_restored_state,
                },
                metrics,
                components(build).as_ref(),
            ),
        },
        Command::Bench {
            quick,
            job,
            n,
            manifests,
        } => crate::bench::run(&crate::bench::Options {
            quick,
            job,
            n,
            manifests,
        })
        .and_then(|ok| {
            if ok {
                Ok(())
            } else {
                Err(anyhow::anyhow!(
                    "some results were wrong (verified=FAILED above)"
                ))
            }
        }),
        Command::Validate {
            manifest,
            overrides,
            build,
        } => validate(manifest, &overrides, components(build).as_ref()),
        Command::New {
            name,
            lang,
            template,
            list,
        } => new(name, lang, &template, list),
        Command::Build { dir } => build(&dir),
        Command::Test { dir, update } => {
            match crate::project::test(&dir, crate::project::TestOptions { update }) {
                Ok(true) => Ok(()),
                Ok(false) => return ExitCode::FAILURE,
                Err(e) => Err(e),
            }
        }
        Command::Inspect { component, max_mib } => inspect(component, max_mib),
        Command::Checkpoints { dir } => checkpoints::list(&dir),
        Command::Submit {
            manifest,
            overrides,
            from,
            allow_non_restored_state,
            follow,
            build,
            api,
        } => client::submit(
            &api,
            &manifest,
            &overrides,
            from.as_deref(),
            allow_non_restored_state,
            follow,
            components(build).as_ref(),
        ),
        Command::List { api } => client::list(&api),
        Command::Status { job, json, api } => client::status(&api, &job, json),
        Command::Cancel { job, api } => client::cancel(&api, &job),
        Command::Logs { job, follow, api } => client::logs(&api, &job, follow),
        Command::Savepoint { job, dir, api } => {
            client::savepoint(&api, &job, dir.as_deref(), false)
        }
        Command::Stop { job, dir, api } => client::savepoint(&api, &job, dir.as_deref(), true),
        Command::Rescale {
            job,
            parallelism,
            operator,
            api,
        } => client::rescale(&api, &job, parallelism, operator.as_deref()),
        Command::Swap {
            job,
            operator,
            component,
            mode,
            api,
        } => client::swap(&api, &job, &operator, &component, &mode),
        Command::Coordinator {
            listen,
            data_dir,
            heartbeat_timeout,
            metrics,
            http,
        } => coordinator(
            crate::coordinator::server::CoordinatorOptions {
                listen,
                data_dir,
                heartbeat_timeout,
                metrics,
            },
            &http.options(),
        ),
        Command::Worker {
            join,
            token,
            slots,
            data_dir,
            reconnect_timeout,
            network_mib,
            metrics,
        } => cluster_worker(worker::agent::WorkerOptions {
            metrics,
            coordinator: join,
            token,
            slots,
            data_dir,
            reconnect: reconnect_timeout,
            network_bytes: network_mib.saturating_mul(1 << 20),
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn duration(text: &str) -> Result<std::time::Duration, String> {
    crate::checkpoint::parse_duration(text)
}

/// A notification on Ctrl-C, for the long-running processes.
fn stop_on_ctrl_c() -> Result<std::sync::Arc<tokio::sync::Notify>> {
    let stop = std::sync::Arc::new(tokio::sync::Notify::new());
    let s = stop.clone();
    ctrlc::set_handler(move || s.notify_one()).context("cannot install the Ctrl-C handler")?;
    Ok(stop)
}

fn coordinator(
    options: crate::coordinator::server::CoordinatorOptions,
    http: &crate::api::ApiOptions,
) -> Result<()> {
    let data_dir = options.data_dir.clone();
    crate::coordinator::server::run(options, stop_on_ctrl_c()?, |s, cluster| {
        let api = crate::api::serve(cluster, http.clone())?;
        println!(
            "weir coordinator listening on {} (data in {})",
            s.addr,
            data_dir.display()
        );
        println!(
            "the join token is in {}; join a worker with:",
            s.token_file.display()
        );
        println!(
            "  weir worker --join {} --token {} --slots 4 --data-dir WORKER_DIR",
            s.addr, s.token
        );
        match &api.token_file {
            Some(file) => println!(
                "HTTP API at {}/v1 (the API token is in {})",
                api.url(),
                file.display()
            ),
            None => println!("HTTP API at {}/v1 (no auth)", api.url()),
        }
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        Ok(())
    })
}

fn cluster_worker(options: worker::agent::WorkerOptions) -> Result<()> {
    worker::agent::run(options, stop_on_ctrl_c()?)
}

/// Reads the manifest and compiles its components: everything that can fail before the job runs.
fn prepare(
    manifest: &Path,
    overrides: &[Override],
    components: &dyn manifest::Components,
) -> Result<(JobGraph, Runtime, Vec<Option<LoadedComponent>>)> {
    let job = manifest::load_with(manifest, overrides, components)?;
    for w in manifest::warnings(&job) {
        eprintln!("warning: {}: {w}", manifest.display());
    }
    worker::check(&job)?;
    let runtime = Runtime::new().map_err(anyhow::Error::msg)?;
    let components = worker::load_components(&runtime, &job)?;
    Ok((job, runtime, components))
}

fn validate(
    manifest: PathBuf,
    overrides: &[Override],
    components: &dyn manifest::Components,
) -> Result<()> {
    let (job, _, _) = prepare(&manifest, overrides, components)?;
    let exec = ExecutionGraph::build(&job);
    println!(
        "{}: ok; job `{}`, {} tasks: {}",
        manifest.display(),
        job.name,
        exec.chains.iter().map(|c| c.parallelism).sum::<u32>(),
        exec.describe(&job)
    );
    Ok(())
}

fn run(
    manifest: PathBuf,
    overrides: &[Override],
    stats: bool,
    options: &worker::RunOptions,
    metrics_at: Option<std::net::SocketAddr>,
    resolver: &dyn manifest::Components,
) -> Result<()> {
    let started = Instant::now();
    let (job, _runtime, components) = prepare(&manifest, overrides, resolver)?;
    let control = JobControl::new();
    let metrics = JobMetrics::new(started);
    if let Some(addr) = metrics_at {
        worker::metrics::register(&job.name, &metrics);
        let at = crate::net::http::serve(addr, worker::metrics::render)
            .with_context(|| format!("--metrics {addr}"))?;
        tracing::info!("metrics at http://{at}/metrics");
    }
    let c = control.clone();
    let interrupts = std::sync::atomic::AtomicU32::new(0);
    ctrlc::set_handler(move || {
        // First Ctrl-C: stop the sources and let everything drain; the second: cancel.
        if interrupts.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            eprintln!(
                "\nstopping: sources end, the job drains and sinks flush (Ctrl-C again to cancel)"
            );
            c.stop();
        } else {
            c.cancel_because("Ctrl-C was pressed twice");
        }
    })
    .context("cannot install the Ctrl-C handler")?;
    let reporter = progress::Reporter::start(metrics.clone());
    let result = worker::run(&job, &components, &control, &metrics, options);
    reporter.finish();
    if result.is_ok() {
        eprintln!("{}", progress::summary(&job.name, &metrics));
    }
    if stats {
        // On failure too: how far the job got, and what it cost.
        eprintln!("stats: {}", progress::stats(&metrics));
    }
    Ok(result?)
}

/// How a command finds the components a manifest names: as files, or (`--build`) building the
/// project directories among them.
fn components(build: bool) -> Box<dyn manifest::Components> {
    if build {
        Box::new(crate::project::BuildingComponents::default())
    } else {
        Box::new(manifest::ComponentFiles)
    }
}

fn new(name: Option<PathBuf>, lang: Option<String>, template: &str, list: bool) -> Result<()> {
    if list {
        print!("{}", crate::project::list());
        return Ok(());
    }
    let (Some(path), Some(lang)) = (name, lang) else {
        anyhow::bail!("weir new needs NAME and --lang (or --list)");
    };
    let lang = crate::project::Lang::parse(&lang)?;
    crate::project::create(&path, lang, template)?;
    let shown = path.display();
    println!(
        "created {shown}: the {template} template in {}

  cd {shown}
  weir build                  # the component; the first build installs the toolchain
  weir test                   # runs the job on tests/*/input.txt, compares with expected.txt
  weir run job.toml --build   # runs the job; the output goes to out/",
        lang.name()
    );
    Ok(())
}

fn build(dir: &Path) -> Result<()> {
    let project = crate::project::Project::open(dir)?;
    let component = crate::project::fresh_build(&project)?;
    print!("{}", crate::project::report(&component)?);
    Ok(())
}

fn inspect(component: PathBuf, max_mib: u64) -> Result<()> {
    let runtime = Runtime::new().map_err(anyhow::Error::msg)?;
    let report = wasm::inspect(&runtime, &component, max_mib.saturating_mul(1 << 20))?;
    print!("{report}");
    Ok(())
}
