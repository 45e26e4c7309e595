//! Live progress of `weir run`: a status line redrawn on a terminal, a log line at intervals
//! otherwise, and a summary at the end.

use crate::worker::JobMetrics;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

pub struct Reporter {
    done: mpsc::Sender<()>,
    thread: Option<JoinHandle<()>>,
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

fn human(x: f64) -> String {
    match x {
        x if x >= 1e9 => format!("{:.2} G", x / 1e9),
        x if x >= 1e6 => format!("{:.2} M", x / 1e6),
        x if x >= 1e3 => format!("{:.1} K", x / 1e3),
        x => format!("{x:.0}"),
    }
}

/// The last completed checkpoint, for the status line and the summary.
fn last_checkpoint(m: &JobMetrics) -> String {
    m.last_checkpoint().map_or(String::new(), |c| {
        let full = if c.full_bytes > c.bytes {
            format!(" of {} KiB", c.full_bytes.div_ceil(1024))
        } else {
            String::new()
        };
        format!(
            "; checkpoint {} ({} ms, {} KiB{full})",
            c.id,
            c.duration.as_millis(),
            c.bytes.div_ceil(1024)
        )
    })
}

fn status(m: &JobMetrics) -> String {
    let t = m.elapsed();
    format!(
        "{:>7.1} s  in {} records ({} records/s)  out {} records{}",
        t.as_secs_f64(),
        m.records_in(),
        human(rate(m.records_in(), t)),
        m.records_out(),
        last_checkpoint(m)
    )
}

impl Reporter {
    /// Starts reporting on stderr: every 200 ms on a terminal, every 10 s otherwise (or every
    /// `$WEIR_PROGRESS_MS`).
    pub fn start(metrics: Arc<JobMetrics>) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let every = std::env::var("WEIR_PROGRESS_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
            .unwrap_or(if terminal {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(10)
            });
        let (done, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("weir-progress".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(every) {
                    if terminal {
                        eprint!("\r\x1b[2K{}", status(&metrics));
                        let _ = std::io::stderr().flush();
                    } else {
                        tracing::info!("{}", status(&metrics));
                    }
                }
                if terminal {
                    eprint!("\r\x1b[2K");
                }
            })
            .ok();
        Reporter { done, thread }
    }

    /// Stops reporting (clearing the status line).
    pub fn finish(mut self) {
        let _ = self.done.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The closing line of a run.
pub fn summary(job: &str, m: &JobMetrics) -> String {
    let t = m.elapsed();
    let first = m.first_output_after().map_or(String::new(), |d| {
        format!("; first record out after {} ms", d.as_millis())
    });
    format!(
        "job `{job}` finished in {:.2} s: {} records in, {} records out, {} records/s in{first}{}",
        t.as_secs_f64(),
        m.records_in(),
        m.records_out(),
        human(rate(m.records_in(), t)),
        last_checkpoint(m)
    )
}

/// The process's CPU time (user + system) in seconds and its peak resident memory in KiB.
fn resource_usage() -> (f64, u64) {
    // SAFETY: getrusage only writes into the struct it is given, which is plain old data.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(ru.ru_utime) + secs(ru.ru_stime), ru.ru_maxrss as u64)
}

/// `key=value` figures of a finished run, for `weir run --stats` (and `weir bench`).
pub fn stats(m: &JobMetrics) -> String {
    let (cpu, peak_kib) = resource_usage();
    let ms = |d: Option<Duration>| d.map_or("none".to_string(), |d| d.as_millis().to_string());
    let (checkpoints, median) = m.checkpoints();
    format!(
        "wall_s={:.3} cpu_s={cpu:.3} peak_rss_kib={peak_kib} start_ms={} ready_ms={} first_output_ms={} records_in={} records_out={} checkpoints={checkpoints} checkpoint_median_ms={} checkpoint_bytes={}",
        m.elapsed().as_secs_f64(),
        ms(m.running_after()),
        ms(m.ready_after()),
        ms(m.first_output_after()),
        m.records_in(),
        m.records_out(),
        ms(median),
        m.last_checkpoint().map_or(0, |c| c.bytes),
    )
}
