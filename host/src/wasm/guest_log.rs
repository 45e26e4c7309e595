//! What guests write for people to read, made safe to print: log lines limited per subtask (a
//! token bucket one second deep, what was dropped counted and reported), and every message cut
//! to 4 KB with control characters escaped, so that a guest can neither flood the host's log nor
//! write terminal escape codes or fake log lines into it.

use std::borrow::Cow;
use std::fmt::Write;
use std::time::{Duration, Instant};

/// The longest guest message printed (log lines, error and panic messages).
pub const MAX_MESSAGE: usize = 4096;

/// How often dropped lines are reported while a guest keeps logging past its limit.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// `message` ready to print: cut to [`MAX_MESSAGE`] bytes (saying how long it was), control
/// characters escaped (`\u{1b}`); tabs are kept, and newlines too when `newlines` is set (error
/// messages such as tracebacks span lines; a log line must stay one line).
pub fn printable(message: &str, newlines: bool) -> Cow<'_, str> {
    let keep = |c: char| !c.is_control() || c == '\t' || (newlines && c == '\n');
    if message.len() <= MAX_MESSAGE && message.chars().all(keep) {
        return Cow::Borrowed(message);
    }
    let mut out = String::with_capacity(message.len().min(MAX_MESSAGE + 64));
    for c in message.chars() {
        if out.len() >= MAX_MESSAGE {
            let _ = write!(out, "... ({} bytes in all)", message.len());
            break;
        }
        if keep(c) {
            out.push(c);
        } else {
            let _ = write!(out, "{}", c.escape_unicode());
        }
    }
    Cow::Owned(out)
}

/// The start of `name` (a name a guest gave, which may be of any length), for a message.
pub fn preview(name: &str) -> String {
    const SHOWN: usize = 40;
    match name.char_indices().nth(SHOWN) {
        None => printable(name, false).into_owned(),
        Some((cut, _)) => format!("{}...", printable(&name[..cut], false)),
    }
}

/// Decides which of a subtask's log lines are printed: at most `per_second` a second, with a
/// burst of as many. Fed the time of each line, so that it is deterministic under test.
#[derive(Debug)]
pub struct LogLimiter {
    per_second: u32,
    tokens: f64,
    refilled: Instant,
    dropped: u64,
    reported: Instant,
}

impl LogLimiter {
    pub fn new(per_second: u32, now: Instant) -> Self {
        LogLimiter {
            per_second,
            tokens: f64::from(per_second),
            refilled: now,
            dropped: 0,
            reported: now,
        }
    }

    /// The configured rate.
    pub fn per_second(&self) -> u32 {
        self.per_second
    }

    /// Whether a line logged at `now` is printed; a line that is not is counted as dropped.
    pub fn admit(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        let full = f64::from(self.per_second);
        self.tokens = (self.tokens + elapsed * full).min(full);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.dropped += 1;
            false
        }
    }

    /// How many lines were dropped since the last report, when a report is due: every
    /// [`REPORT_EVERY`] while lines are being dropped, and at the `end` of the instance.
    pub fn report(&mut self, now: Instant, end: bool) -> Option<u64> {
        if self.dropped == 0
            || !(end || now.saturating_duration_since(self.reported) >= REPORT_EVERY)
        {
            return None;
        }
        self.reported = now;
        Some(std::mem::take(&mut self.dropped))
    }
}

/// A guest's line, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogLine {
    /// When it was logged, in ms since the Unix epoch.
    pub at_ms: u64,
    /// `error`, `warn`, `info`, `debug`, `trace`; `stdout` and `stderr` for what the guest
    /// printed.
    pub level: String,
    pub operator: String,
    pub subtask: u32,
    /// Printable: cut to [`MAX_MESSAGE`] bytes, control characters escaped.
    pub message: String,
}

/// The recent lines of a job's guests in this process, for the API: a bounded queue, the
/// oldest dropped (and counted) when it is full.
#[derive(Debug)]
pub struct RecentLogs {
    lines: std::sync::Mutex<(std::collections::VecDeque<LogLine>, u64)>,
    capacity: usize,
}

impl RecentLogs {
    pub fn new(capacity: usize) -> std::sync::Arc<Self> {
        std::sync::Arc::new(RecentLogs {
            lines: std::sync::Mutex::new((std::collections::VecDeque::new(), 0)),
            capacity,
        })
    }

    pub fn push(&self, line: LogLine) {
        let mut l = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if l.0.len() >= self.capacity {
            l.0.pop_front();
            l.1 += 1;
        }
        l.0.push_back(line);
    }

    /// Up to `max` lines, oldest first, taken out; and how many were dropped since the last
    /// call (the queue was full).
    pub fn take(&self, max: usize) -> (Vec<LogLine>, u64) {
        let mut l = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let n = max.min(l.0.len());
        let lines = l.0.drain(..n).collect();
        (lines, std::mem::take(&mut l.1))
    }
}

/// Where a subtask's lines go: its log calls and what it writes to stdout and stderr pass the
/// same limit ([`LogLimiter`]), then reach the host's log (tagged with operator and subtask)
/// and, when the job's lines are kept for the API, its [`RecentLogs`].
pub struct GuestLog {
    operator: std::sync::Arc<str>,
    subtask: u32,
    limiter: std::sync::Mutex<LogLimiter>,
    recent: Option<std::sync::Arc<RecentLogs>>,
}

impl GuestLog {
    pub fn new(
        operator: std::sync::Arc<str>,
        subtask: u32,
        per_second: u32,
        recent: Option<std::sync::Arc<RecentLogs>>,
    ) -> std::sync::Arc<Self> {
        std::sync::Arc::new(GuestLog {
            operator,
            subtask,
            limiter: std::sync::Mutex::new(LogLimiter::new(per_second, Instant::now())),
            recent,
        })
    }

    fn limiter(&self) -> std::sync::MutexGuard<'_, LogLimiter> {
        self.limiter.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Logs `message` at `level` (`stdout` and `stderr` log as info and warn), if the limit
    /// admits it. `shown`: the host's log filter lets this level through.
    pub fn line(&self, level: &str, message: &str, shown: bool) {
        let kept = self.recent.is_some() && !matches!(level, "debug" | "trace");
        if !shown && !kept {
            // Lines nobody would see cost nothing and count against nothing.
            return;
        }
        let now = Instant::now();
        {
            let mut limiter = self.limiter();
            self.report(&mut limiter, now, false);
            if !limiter.admit(now) {
                return;
            }
        }
        let message = printable(message, false);
        let (operator, subtask) = (&*self.operator, self.subtask);
        if shown {
            match level {
                "trace" => tracing::trace!(operator, subtask, "{message}"),
                "debug" => tracing::debug!(operator, subtask, "{message}"),
                "info" => tracing::info!(operator, subtask, "{message}"),
                "stdout" => tracing::info!(operator, subtask, stream = "stdout", "{message}"),
                "stderr" => tracing::warn!(operator, subtask, stream = "stderr", "{message}"),
                "warn" => tracing::warn!(operator, subtask, "{message}"),
                _ => tracing::error!(operator, subtask, "{message}"),
            }
        }
        if let (true, Some(recent)) = (kept, &self.recent) {
            recent.push(LogLine {
                at_ms: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
                level: level.to_string(),
                operator: operator.to_string(),
                subtask,
                message: message.into_owned(),
            });
        }
    }

    fn report(&self, limiter: &mut LogLimiter, now: Instant, end: bool) {
        if let Some(dropped) = limiter.report(now, end) {
            let (operator, subtask) = (&*self.operator, self.subtask);
            tracing::warn!(
                operator,
                subtask,
                dropped,
                "dropped {dropped} log lines of this subtask: over limits.log_lines_per_s = {}",
                limiter.per_second()
            );
        }
    }

    /// The instance ends: what was dropped is reported now.
    pub fn end(&self) {
        let mut limiter = self.limiter();
        self.report(&mut limiter, Instant::now(), true);
    }
}

/// A guest's stdout or stderr: split into lines, each logged through its [`GuestLog`]. A line
/// longer than [`MAX_MESSAGE`] is cut into several; what is left without a newline is logged
/// when the stream is dropped.
pub struct GuestOutput {
    log: std::sync::Arc<GuestLog>,
    /// `stdout` or `stderr`.
    stream: &'static str,
    partial: Vec<u8>,
}

impl GuestOutput {
    pub fn new(log: std::sync::Arc<GuestLog>, stream: &'static str) -> Self {
        GuestOutput {
            log,
            stream,
            partial: Vec::new(),
        }
    }

    fn shown(&self) -> bool {
        match self.stream {
            "stdout" => tracing::enabled!(tracing::Level::INFO),
            _ => tracing::enabled!(tracing::Level::WARN),
        }
    }

    /// Takes `bytes` the guest wrote.
    pub fn write(&mut self, mut bytes: &[u8]) {
        let shown = self.shown();
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&bytes[..end]);
            self.emit(shown);
            bytes = &bytes[end + 1..];
        }
        self.partial.extend_from_slice(bytes);
        while self.partial.len() >= MAX_MESSAGE {
            let rest = self.partial.split_off(MAX_MESSAGE);
            self.emit(shown);
            self.partial = rest;
        }
    }

    fn emit(&mut self, shown: bool) {
        let line = String::from_utf8_lossy(&self.partial);
        let line = line.strip_suffix('\r').unwrap_or(&line);
        self.log.line(self.stream, line, shown);
        self.partial.clear();
    }
}

impl Drop for GuestOutput {
    fn drop(&mut self) {
        if !self.partial.is_empty() {
            let shown = self.shown();
            self.emit(shown);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_a_burst_then_the_rate_and_reports_what_it_dropped() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(10, t0);
        assert_eq!((0..15).filter(|_| l.admit(t0)).count(), 10);
        assert_eq!(l.report(t0, false), None, "not due yet");
        // Half a second later, five more lines are allowed.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!((0..10).filter(|_| l.admit(t1)).count(), 5);
        let t2 = t0 + REPORT_EVERY;
        assert_eq!(l.report(t2, false), Some(10));
        assert_eq!(l.report(t2, true), None, "nothing dropped since");
        // A long pause refills the bucket, but never past one second's worth.
        let t3 = t2 + Duration::from_secs(3600);
        assert_eq!((0..100).filter(|_| l.admit(t3)).count(), 10);
        assert_eq!(l.report(t3, true), Some(90), "the end reports at once");
    }

    #[test]
    fn guest_output_becomes_limited_lines_kept_for_the_api() {
        let recent = RecentLogs::new(3);
        let log = GuestLog::new("op".into(), 1, 4, Some(recent.clone()));
        {
            let mut out = GuestOutput::new(log.clone(), "stdout");
            out.write(b"one\ntw");
            out.write(b"o\r\nthree\nfour\nfive\n");
            out.write(b"no newline");
        }
        // The limit (4 a second) passed four lines; the queue keeps the newest three.
        let (lines, dropped) = recent.take(10);
        let text: Vec<&str> = lines.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(text, ["two", "three", "four"]);
        assert_eq!(dropped, 1);
        assert!(
            lines
                .iter()
                .all(|l| l.level == "stdout" && l.operator == "op" && l.subtask == 1)
        );
        // A line without end is cut into messages of at most MAX_MESSAGE bytes.
        let recent = RecentLogs::new(10);
        let log = GuestLog::new("op".into(), 0, 100, Some(recent.clone()));
        let mut out = GuestOutput::new(log, "stderr");
        out.write(&vec![b'x'; MAX_MESSAGE * 2 + 5]);
        drop(out);
        let (lines, _) = recent.take(10);
        let sizes: Vec<usize> = lines.iter().map(|l| l.message.len()).collect();
        assert_eq!(sizes, [MAX_MESSAGE, MAX_MESSAGE, 5]);
    }

    #[test]
    fn messages_are_cut_and_escaped() {
        assert!(matches!(printable("plain\ttext", false), Cow::Borrowed(_)));
        assert_eq!(
            printable("red \x1b[31m\nline", false),
            "red \\u{1b}[31m\\u{a}line"
        );
        assert_eq!(printable("two\nlines\x07", true), "two\nlines\\u{7}");
        let long = "é".repeat(10_000);
        let cut = printable(&long, true);
        assert!(cut.len() < MAX_MESSAGE + 64, "{}", cut.len());
        assert!(cut.ends_with("... (20000 bytes in all)"), "{cut}");
        assert!(cut.starts_with("éé"));
        assert_eq!(preview("late"), "late");
        assert_eq!(
            preview(&"x".repeat(1 << 20)),
            format!("{}...", "x".repeat(40))
        );
    }
}
