//! Per-task metrics (Flink's `numRecordsIn/Out`, `numBytesIn/Out`, `busyTimeMsPerSecond`,
//! `backPressuredTimeMsPerSecond`, `idleTimeMsPerSecond`, input queue lengths and credit per
//! channel), counted by the task threads with relaxed atomics, and the Prometheus text of the
//! jobs this process runs, served at `/metrics` (see [`crate::net::http`]).

use super::channel::Gate;
use super::control::JobMetrics;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// What one task counts.
#[derive(Default)]
pub struct TaskMetrics {
    /// The task's name: its chain's head uid and subtask, e.g. `count-1`.
    pub name: String,
    pub records_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub records_out: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Time spent working (in operators, sources and sinks), waiting for credit to send, and
    /// waiting for input, in nanoseconds.
    pub busy_ns: AtomicU64,
    pub backpressured_ns: AtomicU64,
    pub idle_ns: AtomicU64,
    /// When the wait for input, or for credit, going on began (nanoseconds on [`clock`]; 0:
    /// none), so that a task blocked for long shows as idle or backpressured meanwhile.
    pub idle_since: AtomicU64,
    pub backpressured_since: AtomicU64,
    /// Its input gate, for the queue and credit of each channel.
    pub gate: Option<Arc<Gate>>,
}

/// Nanoseconds on a clock of this process (never 0).
pub fn clock() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64 + 1
}

impl TaskMetrics {
    pub fn new(name: String, gate: Option<Arc<Gate>>) -> Arc<Self> {
        Arc::new(TaskMetrics {
            name,
            gate,
            ..TaskMetrics::default()
        })
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn time(counter: &AtomicU64, since: Instant) {
        counter.fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    /// Nanoseconds busy, backpressured and idle so far, a wait going on included.
    pub fn times(&self) -> [u64; 3] {
        let going_on = |since: &AtomicU64| match since.load(Ordering::Relaxed) {
            0 => 0,
            at => clock().saturating_sub(at),
        };
        [
            self.busy_ns.load(Ordering::Relaxed),
            self.backpressured_ns.load(Ordering::Relaxed) + going_on(&self.backpressured_since),
            self.idle_ns.load(Ordering::Relaxed) + going_on(&self.idle_since),
        ]
    }

    /// The task's counters, as a worker reports them to the coordinator.
    pub fn figures(&self) -> crate::net::control::TaskFigures {
        let [busy, backpressured, idle] = self.times();
        crate::net::control::TaskFigures {
            task: self.name.clone(),
            records_in: self.records_in.load(Ordering::Relaxed),
            records_out: self.records_out.load(Ordering::Relaxed),
            busy_ms: busy / 1_000_000,
            backpressured_ms: backpressured / 1_000_000,
            idle_ms: idle / 1_000_000,
        }
    }

    /// Runs `wait`, counting its time into `counter`, and as it goes on into `since`.
    pub fn waiting<T>(counter: &AtomicU64, since: &AtomicU64, wait: impl FnOnce() -> T) -> T {
        let start = clock();
        since.store(start, Ordering::Relaxed);
        let out = wait();
        since.store(0, Ordering::Relaxed);
        counter.fetch_add(clock() - start, Ordering::Relaxed);
        out
    }
}

/// The jobs this process runs (or ran last), for `/metrics`.
static JOBS: Mutex<Vec<(String, Weak<JobMetrics>)>> = Mutex::new(Vec::new());

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes job `name`'s metrics visible at `/metrics` while they live.
pub fn register(name: &str, metrics: &Arc<JobMetrics>) {
    let mut jobs = lock(&JOBS);
    jobs.retain(|(_, m)| m.strong_count() > 0);
    jobs.push((name.to_string(), Arc::downgrade(metrics)));
}

/// Escapes a label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Each task's time counters (busy, backpressured, idle) at a scrape, by job and task.
type Sample = (Instant, HashMap<String, [u64; 3]>);

/// The time counters at the previous scrape, for the per-second figures.
static LAST: Mutex<Option<Sample>> = Mutex::new(None);

/// The Prometheus text of every live job's metrics.
pub fn render() -> String {
    let jobs: Vec<(String, Arc<JobMetrics>)> = lock(&JOBS)
        .iter()
        .filter_map(|(n, m)| Some((n.clone(), m.upgrade()?)))
        .collect();
    let mut out = String::new();
    let help = |out: &mut String, name: &str, kind: &str, text: &str| {
        let _ = writeln!(out, "# HELP {name} {text}\n# TYPE {name} {kind}");
    };
    help(
        &mut out,
        "weir_job_records_in_total",
        "counter",
        "Records read by the job's sources in this process.",
    );
    help(
        &mut out,
        "weir_job_records_out_total",
        "counter",
        "Records written by the job's sinks in this process.",
    );
    help(
        &mut out,
        "weir_job_restarts_total",
        "counter",
        "Restarts of the job run by this process.",
    );
    help(
        &mut out,
        "weir_checkpoints_completed_total",
        "counter",
        "Checkpoints completed.",
    );
    help(
        &mut out,
        "weir_checkpoint_last_duration_ms",
        "gauge",
        "Duration of the last completed checkpoint.",
    );
    help(
        &mut out,
        "weir_checkpoint_last_bytes",
        "gauge",
        "Bytes the last completed checkpoint wrote.",
    );
    for (job, m) in &jobs {
        let j = label(job);
        let _ = writeln!(
            out,
            "weir_job_records_in_total{{job=\"{j}\"}} {}",
            m.records_in()
        );
        let _ = writeln!(
            out,
            "weir_job_records_out_total{{job=\"{j}\"}} {}",
            m.records_out()
        );
        let _ = writeln!(
            out,
            "weir_job_restarts_total{{job=\"{j}\"}} {}",
            m.restarts()
        );
        let (count, _) = m.checkpoints();
        let _ = writeln!(
            out,
            "weir_checkpoints_completed_total{{job=\"{j}\"}} {count}"
        );
        if let Some(c) = m.last_checkpoint() {
            let _ = writeln!(
                out,
                "weir_checkpoint_last_duration_ms{{job=\"{j}\"}} {}",
                c.duration.as_millis()
            );
            let _ = writeln!(out, "weir_checkpoint_last_bytes{{job=\"{j}\"}} {}", c.bytes);
        }
    }
    let counters = [
        ("weir_task_records_in_total", "Records into the task."),
        ("weir_task_bytes_in_total", "Bytes into the task."),
        ("weir_task_records_out_total", "Records out of the task."),
        ("weir_task_bytes_out_total", "Bytes out of the task."),
    ];
    let mut now_times = HashMap::new();
    let mut last = lock(&LAST);
    let (since, before) = last
        .take()
        .unwrap_or_else(|| (Instant::now(), HashMap::new()));
    let seconds = since.elapsed().max(Duration::from_millis(1)).as_secs_f64();
    for (i, (name, text)) in counters.iter().enumerate() {
        help(&mut out, name, "counter", text);
        for (job, m) in &jobs {
            for t in m.tasks() {
                let v = [&t.records_in, &t.bytes_in, &t.records_out, &t.bytes_out][i]
                    .load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "{name}{{job=\"{}\",task=\"{}\"}} {v}",
                    label(job),
                    label(&t.name)
                );
            }
        }
    }
    let times = [
        (
            "weir_task_busy_ms_per_second",
            "Time working, per second since the previous scrape.",
        ),
        (
            "weir_task_backpressured_ms_per_second",
            "Time waiting for credit to send, per second since the previous scrape.",
        ),
        (
            "weir_task_idle_ms_per_second",
            "Time waiting for input, per second since the previous scrape.",
        ),
    ];
    for (i, (name, text)) in times.iter().enumerate() {
        help(&mut out, name, "gauge", text);
        for (job, m) in &jobs {
            for t in m.tasks() {
                let key = format!("{job}/{}", t.name);
                let now = t.times();
                // Since the previous scrape; at the first, since the job started.
                let (then, seconds) = match before.get(&key) {
                    Some(then) => (*then, seconds),
                    None => ([0; 3], m.elapsed().as_secs_f64().max(1e-3)),
                };
                let ms = (now[i].saturating_sub(then[i]) as f64 / 1e6 / seconds).min(1000.0);
                let _ = writeln!(
                    out,
                    "{name}{{job=\"{}\",task=\"{}\"}} {ms:.0}",
                    label(job),
                    label(&t.name)
                );
                now_times.insert(key, now);
            }
        }
    }
    *last = Some((Instant::now(), now_times));
    help(
        &mut out,
        "weir_channel_queued_buffers",
        "gauge",
        "Buffers queued on an input channel of the task (the sender's output queue for a channel in this process).",
    );
    help(
        &mut out,
        "weir_channel_credit",
        "gauge",
        "Credit announced to a remote sender and not yet used.",
    );
    for (job, m) in &jobs {
        for t in m.tasks() {
            let Some(gate) = &t.gate else { continue };
            let credits = gate.remote_credits();
            for (ch, queued) in gate.in_flight().into_iter().enumerate() {
                let labels = format!(
                    "job=\"{}\",task=\"{}\",channel=\"{ch}\"",
                    label(job),
                    label(&t.name)
                );
                let _ = writeln!(out, "weir_channel_queued_buffers{{{labels}}} {queued}");
                if let Some(Some(credit)) = credits.get(ch) {
                    let _ = writeln!(out, "weir_channel_credit{{{labels}}} {credit}");
                }
            }
        }
    }
    out
}
