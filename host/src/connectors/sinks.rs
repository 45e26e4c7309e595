//! Sinks: `file` (a directory with one `part-<subtask>` file per subtask, one record value per
//! line) and `stdout`. Both can be slowed down per record (`delay_us`) to demonstrate
//! backpressure.

use super::{ConnectorError, Sink};
use crate::cancel::CancelToken;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The longest `delay_us` a sink accepts: a second per record.
pub const MAX_DELAY_US: u64 = 1_000_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SinkConfig {
    File { dir: PathBuf, delay: Duration },
    Stdout { delay: Duration },
}

impl SinkConfig {
    /// Opens subtask `subtask` of the sink; its pauses (`delay_us`) end when `cancel` fires.
    pub fn open(
        &self,
        subtask: u32,
        cancel: &CancelToken,
    ) -> Result<Box<dyn Sink>, ConnectorError> {
        Ok(match self {
            SinkConfig::File { dir, delay } => {
                let path = part_file(dir, subtask);
                let file = crate::files::create_regular(&path)?;
                Box::new(LineSink {
                    out: Out::File(BufWriter::with_capacity(256 * 1024, file), path),
                    delay: *delay,
                    cancel: cancel.clone(),
                })
            }
            SinkConfig::Stdout { delay } => Box::new(LineSink {
                out: Out::Stdout,
                delay: *delay,
                cancel: cancel.clone(),
            }),
        })
    }
}

fn part_file(dir: &Path, subtask: u32) -> PathBuf {
    dir.join(format!("part-{subtask}"))
}

/// Makes the sink's directory ready before any subtask starts: created, with the `part-*` files
/// of an earlier run removed so the directory holds exactly this run's output.
pub fn prepare_sink(config: &SinkConfig) -> Result<(), ConnectorError> {
    let SinkConfig::File { dir, .. } = config else {
        return Ok(());
    };
    let io = |source| ConnectorError::Io {
        path: dir.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        if entry.file_name().to_string_lossy().starts_with("part-") {
            std::fs::remove_file(entry.path()).map_err(io)?;
        }
    }
    Ok(())
}

enum Out {
    File(BufWriter<File>, PathBuf),
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
            Out::Stdout => std::io::stdout().flush().map_err(ConnectorError::Stdout),
        }
    }
}
