//! Native connectors: where records enter and leave a job.
//!
//! Sources: `datagen` (deterministic records from a seed, bounded or not, optionally paced) and
//! `file` (text lines or JSON lines, split across subtasks by byte range). Sinks: `file` (one file
//! per subtask in a directory, one record value per line) and `stdout`.

mod datagen;
mod file;
mod sinks;

pub use datagen::{DatagenConfig, DatagenShape, MAX_WORDS_PER_LINE, splitmix};
pub use file::{FileSourceConfig, LineFormat, TimestampField, open_input};
pub use sinks::{MAX_DELAY_US, SinkConfig, commit, make_durable, now_us, prepare_sink};

use crate::checkpoint::CheckpointId;
use std::path::PathBuf;

/// A connector failed: unreadable input, unwritable output, malformed lines.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} at byte {offset}: {message}")]
    Malformed {
        path: PathBuf,
        offset: u64,
        message: String,
    },
    #[error("writing to stdout: {0}")]
    Stdout(std::io::Error),
    /// A source component failed; the message says how.
    #[error("{0}")]
    Failed(String),
    /// A file that cannot be a source or a sink (not a regular file, missing, unreadable).
    #[error(transparent)]
    File(#[from] crate::files::FileError),
    /// The job was cancelled while the connector waited.
    #[error("cancelled")]
    Cancelled,
}

/// What a source has left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// More records may come.
    More,
    /// The source is exhausted (bounded sources only).
    Ended,
}

/// One subtask of a source.
pub trait Source: Send {
    /// Appends records (flat format) to `batch`, stopping near `max_bytes`.
    fn poll(&mut self, batch: &mut Vec<u8>, max_bytes: usize) -> Result<Poll, ConnectorError>;
    /// The position after the last record polled, for a checkpoint: the splits this subtask
    /// still has to read, each with its progress.
    fn position(&mut self) -> Result<Vec<u8>, ConnectorError>;
    /// Records the last poll set aside for a side output (a line without a usable
    /// timestamp): the output's name and the records.
    fn rejected(&mut self) -> Option<(&str, Vec<u8>)> {
        None
    }
    /// Resumes, before the first poll, with this subtask's share of the splits `positions`
    /// hold: every subtask's [`Source::position`] from a checkpoint, taken at any parallelism
    /// (a source may change parallelism across a restore, as with Flink's split enumerators).
    fn restore(
        &mut self,
        positions: &[&[u8]],
        subtask: u32,
        parallelism: u32,
    ) -> Result<(), ConnectorError>;
}

/// Subtask `subtask`'s share of `splits` (of `parallelism`): every `parallelism`-th one, so
/// that with an unchanged parallelism each subtask gets back what it had.
pub fn share<T>(splits: Vec<T>, subtask: u32, parallelism: u32) -> Vec<T> {
    splits
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i as u64 % u64::from(parallelism) == u64::from(subtask))
        .map(|(_, s)| s)
        .collect()
}

/// One subtask of a sink.
pub trait Sink: Send {
    /// Writes every record of `batch` (flat format).
    fn write(&mut self, batch: &[u8]) -> Result<(), ConnectorError>;
    /// Flushes everything written; called once at the end of input.
    fn close(&mut self) -> Result<(), ConnectorError>;
    /// Makes what was written so far durable, to be published once checkpoint `id` completes
    /// (`None`: once the job finishes), and returns what that publishing needs: every
    /// pre-commit not yet published as of checkpoint `published` (see [`sinks::commit`]).
    /// Empty for a sink with nothing to publish.
    fn pre_commit(
        &mut self,
        id: Option<CheckpointId>,
        published: CheckpointId,
    ) -> Result<Vec<u8>, ConnectorError>;
}

/// A source's configuration, from the manifest.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum SourceConfig {
    File(FileSourceConfig),
    Datagen(DatagenConfig),
}

impl SourceConfig {
    /// Opens subtask `subtask` of `parallelism`.
    pub fn open(&self, subtask: u32, parallelism: u32) -> Result<Box<dyn Source>, ConnectorError> {
        Ok(match self {
            SourceConfig::File(f) => Box::new(file::FileSource::open(f, subtask, parallelism)?),
            SourceConfig::Datagen(d) => {
                Box::new(datagen::Datagen::new(d.clone(), subtask, parallelism))
            }
        })
    }
}
