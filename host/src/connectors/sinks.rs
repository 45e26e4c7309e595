//! Sinks: `file` (a directory with one file per subtask, one record value per line) and `stdout`.
//! Both can be slowed down per record (`delay_us`) to demonstrate backpressure.
//!
//! Under checkpointing the file sink is transactional (two-phase commit, as Flink's file sink):
//! records go to hidden in-progress files (`.part-<subtask>-<run>-<n>.inprogress`); at barrier
//! `c` the file is flushed, synced and closed (pre-committed); once a checkpoint from `c` on
//! completes it is published by an atomic rename to `part-<subtask>-<c>-<run>` (`c` zero-padded;
//! `end` for the last file of a finished job). A reader sees only whole files of completed
//! checkpoints; a restore from checkpoint `k` withdraws what was published past `k`, so the
//! visible output is exactly that of a run that never failed.

use super::{ConnectorError, Sink};
use crate::cancel::CancelToken;
use crate::checkpoint::CheckpointId;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The longest `delay_us` a sink accepts: a second per record.
pub const MAX_DELAY_US: u64 = 1_000_000;

/// The checkpoint id a pre-commit at the end of input is filed under: published only when the
/// whole job has finished.
const AT_END: CheckpointId = CheckpointId::MAX;

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SinkConfig {
    File {
        dir: PathBuf,
        delay: Duration,
    },
    Stdout {
        delay: Duration,
    },
    /// Measures how long records took from their making (the value: microseconds since the
    /// epoch, as the `clock` datagen writes it) to this sink; at the end writes
    /// `records=N p50_us=.. p99_us=.. max_us=..` to `dir/part-<subtask>`. With `trace`, also
    /// writes `<made µs> <arrived µs>` per record, batch by batch (what a cancelled run wrote
    /// stays), to `dir/trace-<subtask>-<opened µs>`. For benchmarks.
    Latency {
        dir: PathBuf,
        #[serde(default)]
        trace: bool,
    },
}

impl SinkConfig {
    /// Opens subtask `subtask` of the sink; its pauses (`delay_us`) end when `cancel` fires.
    /// With `transactional` (a name unique to this run of the job), a file sink writes through
    /// pre-committed files published by [`commit`].
    pub fn open(
        &self,
        subtask: u32,
        cancel: &CancelToken,
        transactional: Option<&str>,
    ) -> Result<Box<dyn Sink>, ConnectorError> {
        if let SinkConfig::Latency { dir, trace } = self {
            let trace = match trace {
                false => None,
                true => {
                    let path = dir.join(format!("trace-{subtask}-{}", now_us()));
                    let file = crate::files::create_regular(&path)?;
                    Some((BufWriter::new(file), path))
                }
            };
            return Ok(Box::new(LatencySink {
                path: dir.join(format!("part-{subtask}")),
                histogram: Histogram::default(),
                trace,
            }));
        }
        let out = match (self, transactional) {
            (SinkConfig::File { dir, .. }, None) => {
                let path = dir.join(format!("part-{subtask}"));
                let file = crate::files::create_regular(&path)?;
                Out::File(BufWriter::with_capacity(256 * 1024, file), path)
            }
            (SinkConfig::File { dir, .. }, Some(run)) => Out::Transactional(Transactional {
                dir: dir.clone(),
                subtask,
                run: run.to_string(),
                next: 0,
                current: None,
                pending: Vec::new(),
            }),
            (SinkConfig::Stdout { .. }, _) => Out::Stdout,
            (SinkConfig::Latency { .. }, _) => unreachable!("opened above"),
        };
        let delay = match self {
            SinkConfig::File { delay, .. } | SinkConfig::Stdout { delay } => *delay,
            SinkConfig::Latency { .. } => Duration::ZERO,
        };
        Ok(Box::new(LineSink {
            out,
            delay,
            cancel: cancel.clone(),
        }))
    }

    /// The directory a file sink writes to.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            SinkConfig::File { dir, .. } | SinkConfig::Latency { dir, .. } => Some(dir),
            SinkConfig::Stdout { .. } => None,
        }
    }
}

/// Makes the sink's directory ready before any subtask starts. A fresh run empties it of the
/// `part-*` files (visible or in progress) of an earlier run, so it holds exactly this run's
/// output. A run restored from checkpoint `k` keeps the files published up to `k`, which are
/// the output up to it, and removes the rest (in progress, or published past `k` before a
/// fallback to `k`), whose records will be written again.
pub fn prepare_sink(
    config: &SinkConfig,
    restored: Option<CheckpointId>,
) -> Result<(), ConnectorError> {
    let Some(dir) = config.dir() else {
        return Ok(());
    };
    let io = |source| ConnectorError::Io {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let hidden = name.starts_with(".part-") && name.ends_with(".inprogress");
        let stale = match restored {
            None => name.starts_with("part-"),
            Some(k) => published_after(&name, k),
        };
        if hidden || stale {
            std::fs::remove_file(entry.path()).map_err(io)?;
        }
    }
    Ok(())
}

/// Whether `name` is a transactional file published for a checkpoint after `k` (or at the end
/// of a job, which comes after every checkpoint).
fn published_after(name: &str, k: CheckpointId) -> bool {
    let mut parts = name.strip_prefix("part-").unwrap_or("").split('-');
    match (parts.next(), parts.next()) {
        (Some(_subtask), Some("end")) => true,
        (Some(_subtask), Some(id)) => id.parse::<CheckpointId>().is_ok_and(|id| id > k),
        _ => false,
    }
}

/// A pre-committed file: the checkpoint it waits for, its hidden path and its published one.
type Pending = Vec<(CheckpointId, PathBuf, PathBuf)>;

/// Publishes the files of `pending` (what [`Sink::pre_commit`] returned) that waited for a
/// checkpoint up to `upto`; publishing is idempotent, so a commit interrupted by a crash is
/// finished on restore.
pub fn commit(pending: &[u8], upto: CheckpointId) -> Result<(), ConnectorError> {
    let files = pending_files(pending)?;
    sync_hidden(&files)?;
    for (id, hidden, published) in files {
        if id > upto {
            continue;
        }
        match std::fs::rename(&hidden, &published) {
            Ok(()) => {}
            Err(_) if published.exists() => {}
            Err(source) => {
                return Err(ConnectorError::Io {
                    path: hidden,
                    source,
                });
            }
        }
    }
    Ok(())
}

/// Syncs to disk the pre-committed files of a sink's pre-commit record that are still hidden (a
/// published one was synced before it was published).
pub fn make_durable(pending: &[u8]) -> Result<(), ConnectorError> {
    sync_hidden(&pending_files(pending)?)
}

/// The files of a sink's pre-commit record (none for an empty one).
fn pending_files(pending: &[u8]) -> Result<Pending, ConnectorError> {
    if pending.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(pending).map_err(|e| {
        ConnectorError::Failed(format!("a sink's pre-commit record is unreadable: {e}"))
    })
}

/// Syncs the hidden files that are still there (only regular files: a path from a checkpoint
/// never makes this block on a FIFO).
fn sync_hidden(files: &Pending) -> Result<(), ConnectorError> {
    for (_, hidden, _) in files {
        match crate::files::open_regular(hidden) {
            Ok((f, _)) => f.sync_all().map_err(|source| ConnectorError::Io {
                path: hidden.clone(),
                source,
            })?,
            Err(crate::files::FileError::Missing { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A file sink's files under checkpointing.
struct Transactional {
    dir: PathBuf,
    subtask: u32,
    /// Unique to this run of the job.
    run: String,
    /// The number of the next file.
    next: u64,
    current: Option<(BufWriter<File>, PathBuf)>,
    /// Pre-committed files not yet known to be published.
    pending: Pending,
}

impl Transactional {
    /// The in-progress file, opened on first use, and its path.
    fn writer(&mut self) -> Result<(&mut BufWriter<File>, &PathBuf), ConnectorError> {
        if self.current.is_none() {
            let path = self.dir.join(format!(
                ".part-{}-{}-{}.inprogress",
                self.subtask, self.run, self.next
            ));
            let file = crate::files::create_regular(&path)?;
            self.current = Some((BufWriter::with_capacity(256 * 1024, file), path));
        }
        let (w, path) = self.current.as_mut().expect("just opened");
        Ok((w, path))
    }

    fn pre_commit(
        &mut self,
        id: CheckpointId,
        published: CheckpointId,
    ) -> Result<Vec<u8>, ConnectorError> {
        if let Some((mut w, path)) = self.current.take() {
            let io = |source| ConnectorError::Io {
                path: path.clone(),
                source,
            };
            // To the kernel here; to the disk by the checkpoint's writer ([`make_durable`]),
            // off the task's path, before the checkpoint can complete.
            w.flush().map_err(io)?;
            let name = if id == AT_END {
                format!("part-{}-end-{}", self.subtask, self.run)
            } else {
                format!("part-{}-{id:010}-{}", self.subtask, self.run)
            };
            self.next += 1;
            self.pending.push((id, path, self.dir.join(name)));
        }
        self.pending.retain(|(id, _, _)| *id > published);
        if self.pending.is_empty() {
            return Ok(Vec::new());
        }
        Ok(serde_json::to_vec(&self.pending).expect("paths serialize"))
    }
}

enum Out {
    File(BufWriter<File>, PathBuf),
    Transactional(Transactional),
    Stdout,
}

struct LineSink {
    out: Out,
    delay: Duration,
    cancel: CancelToken,
}

fn write_lines(w: &mut dyn Write, batch: &[u8]) -> std::io::Result<u64> {
    let mut n = 0;
    for r in weir_batch::iter(batch) {
        let r = r.map_err(std::io::Error::other)?;
        w.write_all(r.value)?;
        w.write_all(b"\n")?;
        n += 1;
    }
    Ok(n)
}

impl Sink for LineSink {
    fn write(&mut self, batch: &[u8]) -> Result<(), ConnectorError> {
        let n = match &mut self.out {
            Out::File(w, path) => write_lines(w, batch).map_err(|source| ConnectorError::Io {
                path: path.clone(),
                source,
            })?,
            Out::Transactional(t) => {
                let (w, path) = t.writer()?;
                write_lines(w, batch).map_err(|source| ConnectorError::Io {
                    path: path.clone(),
                    source,
                })?
            }
            Out::Stdout => {
                let mut lock = std::io::stdout().lock();
                let n = write_lines(&mut lock, batch).map_err(ConnectorError::Stdout)?;
                lock.flush().map_err(ConnectorError::Stdout)?;
                n
            }
        };
        if !self.delay.is_zero() {
            let pause = self.delay.saturating_mul(n.min(u64::from(u32::MAX)) as u32);
            self.cancel
                .sleep(pause)
                .map_err(|_| ConnectorError::Cancelled)?;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<(), ConnectorError> {
        match &mut self.out {
            Out::File(w, path) => w.flush().map_err(|source| ConnectorError::Io {
                path: path.clone(),
                source,
            }),
            // Its last file is pre-committed at the end of input, and published with the job.
            Out::Transactional(_) => Ok(()),
            Out::Stdout => std::io::stdout().flush().map_err(ConnectorError::Stdout),
        }
    }

    fn pre_commit(
        &mut self,
        id: Option<CheckpointId>,
        published: CheckpointId,
    ) -> Result<Vec<u8>, ConnectorError> {
        match &mut self.out {
            Out::Transactional(t) => t.pre_commit(id.unwrap_or(AT_END), published),
            // Written through as it comes: nothing waits to be published.
            Out::File(..) | Out::Stdout => self.close().map(|()| Vec::new()),
        }
    }
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Counts of values in buckets of about 3% width (16 per power of two), so that quantiles
/// come out within 3% whatever the range, in fixed memory.
#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    max: u64,
}

impl Histogram {
    fn bucket(v: u64) -> usize {
        if v < 16 {
            return v as usize;
        }
        let msb = 63 - v.leading_zeros() as usize;
        ((msb - 3) << 4) | ((v >> (msb - 4)) & 15) as usize
    }

    /// The smallest value of bucket `b`.
    fn low(b: usize) -> u64 {
        if b < 16 {
            return b as u64;
        }
        let msb = (b >> 4) + 3;
        (1 << msb) | (((b & 15) as u64) << (msb - 4))
    }

    fn add(&mut self, v: u64) {
        let b = Self::bucket(v);
        if self.counts.len() <= b {
            self.counts.resize(b + 1, 0);
        }
        self.counts[b] += 1;
        self.max = self.max.max(v);
    }

    fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The value below which a fraction `q` of the values are (a bucket's low end).
    fn quantile(&self, q: f64) -> u64 {
        let want = (self.total() as f64 * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return Self::low(b);
            }
        }
        self.max
    }
}

/// The `latency` sink.
struct LatencySink {
    path: PathBuf,
    histogram: Histogram,
    /// Where each record's times go, with `trace`.
    trace: Option<(BufWriter<std::fs::File>, PathBuf)>,
}

impl Sink for LatencySink {
    fn write(&mut self, batch: &[u8]) -> Result<(), ConnectorError> {
        let now = now_us();
        for r in weir_batch::iter(batch) {
            let r = r.map_err(|e| ConnectorError::Failed(e.to_string()))?;
            let made = std::str::from_utf8(r.value)
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| {
                    ConnectorError::Failed(format!(
                        "the latency sink reads values made by the clock datagen (microseconds), not {:?}",
                        String::from_utf8_lossy(&r.value[..r.value.len().min(40)])
                    ))
                })?;
            self.histogram.add(now.saturating_sub(made));
            if let Some((out, _)) = &mut self.trace {
                let _ = writeln!(out, "{made} {now}");
            }
        }
        if let Some((out, path)) = &mut self.trace {
            out.flush().map_err(|source| ConnectorError::Io {
                path: path.clone(),
                source,
            })?;
        }
        Ok(())
    }

    fn close(&mut self) -> Result<(), ConnectorError> {
        let h = &self.histogram;
        let line = format!(
            "records={} p50_us={} p99_us={} max_us={}\n",
            h.total(),
            h.quantile(0.5),
            h.quantile(0.99),
            h.max
        );
        let mut f = crate::files::create_regular(&self.path)?;
        f.write_all(line.as_bytes())
            .map_err(|source| ConnectorError::Io {
                path: self.path.clone(),
                source,
            })
    }

    fn pre_commit(
        &mut self,
        _id: Option<CheckpointId>,
        _published: CheckpointId,
    ) -> Result<Vec<u8>, ConnectorError> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(values: &[&str]) -> Vec<u8> {
        let mut b = Vec::new();
        for v in values {
            weir_batch::push(&mut b, &weir_batch::Record::new(b"", v.as_bytes()));
        }
        b
    }

    fn visible(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn files_are_published_only_once_their_checkpoint_completes() {
        let tmp = tempfile::tempdir().unwrap();
        let config = SinkConfig::File {
            dir: tmp.path().to_path_buf(),
            delay: Duration::ZERO,
        };
        prepare_sink(&config, None).unwrap();
        let mut sink = config.open(0, &CancelToken::default(), Some("r1")).unwrap();
        sink.write(&batch(&["a", "b"])).unwrap();
        let at1 = sink.pre_commit(Some(1), 0).unwrap();
        sink.write(&batch(&["c"])).unwrap();
        let at2 = sink.pre_commit(Some(2), 0).unwrap();
        // Nothing published yet; checkpoint 2's record also carries 1's file.
        assert_eq!(
            visible(tmp.path()),
            [".part-0-r1-0.inprogress", ".part-0-r1-1.inprogress"]
        );
        commit(&at1, 1).unwrap();
        assert_eq!(visible(tmp.path())[1], "part-0-0000000001-r1");
        // Publishing is idempotent: 2's record republishes 1's file without harm.
        commit(&at2, 2).unwrap();
        commit(&at2, 2).unwrap();
        assert_eq!(
            visible(tmp.path()),
            ["part-0-0000000001-r1", "part-0-0000000002-r1"]
        );
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("part-0-0000000001-r1")).unwrap(),
            "a\nb\n"
        );
        // Once 2 is known published, the next record forgets it; nothing written, nothing to do.
        assert!(sink.pre_commit(Some(3), 2).unwrap().is_empty());
        sink.write(&batch(&["d"])).unwrap();
        let end = sink.pre_commit(None, 3).unwrap();
        commit(&end, 3).unwrap();
        assert_eq!(visible(tmp.path()).len(), 3, "the end waits for the job");
        commit(&end, CheckpointId::MAX).unwrap();
        assert_eq!(visible(tmp.path())[2], "part-0-end-r1");
    }

    #[test]
    fn a_restored_run_keeps_what_was_published_up_to_its_checkpoint() {
        let tmp = tempfile::tempdir().unwrap();
        let config = SinkConfig::File {
            dir: tmp.path().to_path_buf(),
            delay: Duration::ZERO,
        };
        for name in [
            "part-0-0000000003-r1",
            "part-0-0000000004-r1",
            "part-1-end-r1",
            ".part-0-r1-2.inprogress",
        ] {
            std::fs::write(tmp.path().join(name), "x\n").unwrap();
        }
        prepare_sink(&config, Some(3)).unwrap();
        assert_eq!(visible(tmp.path()), ["part-0-0000000003-r1"]);
        prepare_sink(&config, None).unwrap();
        assert!(visible(tmp.path()).is_empty());
    }

    #[test]
    fn the_latency_histogram_finds_quantiles_within_its_bucket_width() {
        let mut h = Histogram::default();
        for v in 1..=10_000u64 {
            h.add(v);
        }
        for b in 0..200 {
            assert_eq!(Histogram::bucket(Histogram::low(b)), b);
        }
        let (p50, p99) = (h.quantile(0.5) as f64, h.quantile(0.99) as f64);
        assert!((p50 / 5000.0 - 1.0).abs() < 0.07, "{p50}");
        assert!((p99 / 9900.0 - 1.0).abs() < 0.07, "{p99}");
        assert_eq!(h.max, 10_000);
        assert_eq!(h.total(), 10_000);
    }
}
