//! `weir checkpoints DIR`: the checkpoints of a job's checkpoint directory, one line each.

use crate::state::checkpoints::{CheckpointDir, Metadata, Status};
use anyhow::{Result, bail};
use std::path::Path;

/// Prints one line per checkpoint directory, oldest first: id, status, and for a complete one
/// its trigger time (UTC), duration, size (what it wrote) and full size (what a restore reads:
/// more when it is incremental), and the longest alignment and synchronous pause of any task.
///
/// A directory without metadata is `incomplete` (in flight, or left by a crash: restore ignores
/// it) or, when a complete checkpoint's deltas build on its files, `base`.
pub fn list(dir: &Path) -> Result<()> {
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let statuses = CheckpointDir::new(dir).statuses();
    println!(
        "{:>6}  {:<10}  {:<23}  {:>9}  {:>10}  {:>10}  {:>9}  {:>8}",
        "id", "status", "triggered (UTC)", "duration", "size", "full size", "max align", "max sync"
    );
    for (id, status) in &statuses {
        match status {
            Status::Complete(m) => println!("{}", row(m)),
            Status::Base => println!(
                "{id:>6}  {:<10}  (files the deltas of later checkpoints build on)",
                "base"
            ),
            Status::Incomplete => println!(
                "{id:>6}  {:<10}  (in progress, aborted or cut short: restore ignores it)",
                "incomplete"
            ),
            Status::Unreadable(e) => println!("{id:>6}  {:<10}  {e}", "unreadable"),
        }
    }
    if !statuses
        .iter()
        .any(|(_, s)| matches!(s, Status::Complete(_)))
    {
        println!("(no complete checkpoint)");
    }
    Ok(())
}

fn row(m: &Metadata) -> String {
    let max = |f: fn(&crate::state::checkpoints::TaskFile) -> u64| {
        m.tasks.iter().map(f).max().unwrap_or(0)
    };
    format!(
        "{:>6}  {:<10}  {:<23}  {:>6} ms  {:>10}  {:>10}  {:>6} ms  {:>5} ms",
        m.id,
        "complete",
        utc(m.triggered_unix_ms),
        m.duration_ms,
        size(m.bytes()),
        size(m.full_bytes()),
        max(|t| t.align_ms),
        max(|t| t.sync_ms),
    )
}

fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// `ms` since the Unix epoch as `YYYY-MM-DD hh:mm:ss.mmm` (UTC).
fn utc(ms: u64) -> String {
    let (secs, ms) = (ms / 1000, ms % 1000);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{ms:03}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_sizes_read_as_people_write_them() {
        assert_eq!(utc(0), "1970-01-01 00:00:00.000");
        assert_eq!(utc(1_796_058_175_900), "2026-11-30 17:02:55.900");
        assert_eq!(utc(951_782_400_001), "2000-02-29 00:00:00.001");
        assert_eq!(size(512), "512 B");
        assert_eq!(size(3 << 20), "3.0 MiB");
    }
}
