//! A source component driven like a native source: each poll of the task asks a guest for a
//! batch of records. A guest instance reads one split: it was opened as subtask k of P. A task
//! restored at another parallelism may hold several such splits, one instance each, polled in
//! turn (as Flink's split readers).

use crate::connectors::{ConnectorError, Poll, Source, share};
use crate::wasm::{GuestError, SourceInstance};
use std::collections::VecDeque;

/// How many records a poll asks for, at most: enough to fill a buffer with small records while
/// keeping one guest call short.
const RECORDS_PER_POLL: usize = 1024;
/// The smallest record size assumed when turning a buffer size into a record count.
const MIN_RECORD_BYTES: usize = 16;

/// Opens the guest instance of split (subtask, parallelism).
pub type OpenSplit = Box<dyn Fn(u32, u32) -> Result<SourceInstance, GuestError> + Send>;

/// One split: which subtask of which parallelism the guest was opened as.
struct Split {
    subtask: u32,
    parallelism: u32,
    instance: SourceInstance,
}

/// A split's position in a checkpoint.
#[derive(serde::Serialize, serde::Deserialize)]
struct SplitPosition {
    subtask: u32,
    parallelism: u32,
    position: Vec<u8>,
}

pub struct WasmSource {
    splits: VecDeque<Split>,
    open: OpenSplit,
}

impl WasmSource {
    /// The source of subtask `subtask` of `parallelism`, its one split opened by `open`.
    pub fn new(open: OpenSplit, subtask: u32, parallelism: u32) -> Result<Self, GuestError> {
        let instance = open(subtask, parallelism)?;
        Ok(WasmSource {
            splits: VecDeque::from([Split {
                subtask,
                parallelism,
                instance,
            }]),
            open,
        })
    }
}

fn source_failed(e: GuestError) -> ConnectorError {
    match e {
        GuestError::Cancelled { .. } => ConnectorError::Cancelled,
        e => ConnectorError::Failed(e.to_string()),
    }
}

impl Source for WasmSource {
    fn position(&mut self) -> Result<Vec<u8>, ConnectorError> {
        let mut positions = Vec::with_capacity(self.splits.len());
        for s in &mut self.splits {
            positions.push(SplitPosition {
                subtask: s.subtask,
                parallelism: s.parallelism,
                position: s.instance.position().map_err(source_failed)?,
            });
        }
        Ok(serde_json::to_vec(&positions).expect("a position serializes"))
    }

    fn restore(
        &mut self,
        positions: &[&[u8]],
        subtask: u32,
        parallelism: u32,
    ) -> Result<(), ConnectorError> {
        let mut all = Vec::new();
        for p in positions {
            let splits: Vec<SplitPosition> = serde_json::from_slice(p).map_err(|e| {
                ConnectorError::Failed(format!("unreadable source position in the checkpoint: {e}"))
            })?;
            all.extend(splits);
        }
        self.splits.clear();
        for p in share(all, subtask, parallelism) {
            let mut instance = (self.open)(p.subtask, p.parallelism).map_err(source_failed)?;
            instance.restore(&p.position).map_err(source_failed)?;
            self.splits.push_back(Split {
                subtask: p.subtask,
                parallelism: p.parallelism,
                instance,
            });
        }
        Ok(())
    }

    fn poll(&mut self, batch: &mut Vec<u8>, max_bytes: usize) -> Result<Poll, ConnectorError> {
        let Some(split) = self.splits.front_mut() else {
            return Ok(Poll::Ended);
        };
        let max_records = (max_bytes / MIN_RECORD_BYTES).clamp(1, RECORDS_PER_POLL) as u32;
        let (more, outputs) = split.instance.poll(max_records).map_err(source_failed)?;
        // The host refuses side outputs of a source: everything here is main output.
        for (_, buf) in outputs {
            if batch.is_empty() {
                *batch = buf;
            } else {
                batch.extend_from_slice(&buf);
            }
        }
        if !more {
            self.splits.pop_front();
        }
        Ok(if self.splits.is_empty() {
            Poll::Ended
        } else {
            Poll::More
        })
    }
}
