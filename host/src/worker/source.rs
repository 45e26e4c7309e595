//! A source component driven like a native source: each poll of the task asks the guest for a
//! batch of records.

use crate::connectors::{ConnectorError, Poll, Source};
use crate::wasm::{GuestError, SourceInstance};

/// How many records a poll asks for, at most: enough to fill a buffer with small records while
/// keeping one guest call short.
const RECORDS_PER_POLL: usize = 1024;
/// The smallest record size assumed when turning a buffer size into a record count.
const MIN_RECORD_BYTES: usize = 16;

pub struct WasmSource {
    instance: SourceInstance,
}

impl WasmSource {
    pub fn new(instance: SourceInstance) -> Self {
        WasmSource { instance }
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
        self.instance.position().map_err(source_failed)
    }

    fn restore(&mut self, position: &[u8]) -> Result<(), ConnectorError> {
        self.instance.restore(position).map_err(source_failed)
    }

    fn poll(&mut self, batch: &mut Vec<u8>, max_bytes: usize) -> Result<Poll, ConnectorError> {
        let max_records = (max_bytes / MIN_RECORD_BYTES).clamp(1, RECORDS_PER_POLL) as u32;
        let (more, outputs) = self.instance.poll(max_records).map_err(|e| match e {
            GuestError::Cancelled { .. } => ConnectorError::Cancelled,
            e => ConnectorError::Failed(e.to_string()),
        })?;
        // The host refuses side outputs of a source: everything here is main output.
        for (_, buf) in outputs {
            if batch.is_empty() {
                *batch = buf;
            } else {
                batch.extend_from_slice(&buf);
            }
        }
        Ok(if more { Poll::More } else { Poll::Ended })
    }
}
