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
