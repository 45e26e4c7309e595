//! The output side of a task for one edge: partitions records over the downstream subtasks'
//! channels, collecting them into buffers that are sent when full, on flush, or at the end.

use super::channel::{Cancelled, ChannelSender};
use super::metrics::TaskMetrics;
use crate::checkpoint::CheckpointId;
use crate::plan::{Partition, key_groups};
use std::sync::Arc;

/// Writes one edge's records into its channels.
pub struct RecordWriter {
    partition: Partition,
    /// One per downstream subtask (a single one for `forward`).
    channels: Vec<ChannelSender>,
    pending: Vec<Vec<u8>>,
    buffer_bytes: usize,
    max_parallelism: u32,
    round_robin: usize,
    /// The writing task's counters (bytes out, time waiting for credit).
    metrics: Option<Arc<TaskMetrics>>,
}

/// A malformed batch reached a writer (an operator emitted it; the host checks emits, so this is
/// a bug if it ever happens) or the job was cancelled while waiting for credit.
#[derive(Debug)]
pub enum WriteError {
    Cancelled,
    Malformed(weir_batch::FormatError),
}

impl From<Cancelled> for WriteError {
    fn from(_: Cancelled) -> Self {
        WriteError::Cancelled
    }
}

impl RecordWriter {
    pub fn new(
        partition: Partition,
        channels: Vec<ChannelSender>,
        buffer_bytes: usize,
        max_parallelism: u32,
    ) -> Self {
        let pending = channels.iter().map(|_| Vec::new()).collect();
        RecordWriter {
            partition,
            channels,
            pending,
            buffer_bytes,
            max_parallelism,
            round_robin: 0,
            metrics: None,
        }
    }

    /// Counts what it sends, and how long it waits for credit, into `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<TaskMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Whether some records wait in a partly filled buffer.
    pub fn has_pending(&self) -> bool {
        self.pending.iter().any(|p| !p.is_empty())
    }

    /// Routes every record of `batch`.
    pub fn write(&mut self, batch: Vec<u8>) -> Result<(), WriteError> {
        match self.partition {
            Partition::Forward => self.append(0, batch),
            Partition::Broadcast => {
                for target in 0..self.channels.len() {
                    self.append_slice(target, &batch)?;
                }
                Ok(())
            }
            Partition::Hash | Partition::Rebalance => {
                let n = self.channels.len() as u32;
                let mut records = weir_batch::iter(&batch);
                while let Some(r) = records.next_raw() {
                    let (record, raw) = r.map_err(WriteError::Malformed)?;
                    let target = if self.partition == Partition::Hash {
                        let kg = key_groups::key_group(record.key, self.max_parallelism);
                        key_groups::subtask_of(kg, n, self.max_parallelism) as usize
                    } else {
                        self.round_robin = (self.round_robin + 1) % n as usize;
                        self.round_robin
                    };
                    self.append_slice(target, raw)?;
                }
                Ok(())
            }
        }
    }

    /// Takes a whole buffer for one target, without copying it when nothing is pending there.
    fn append(&mut self, target: usize, batch: Vec<u8>) -> Result<(), WriteError> {
        if self.pending[target].is_empty() && batch.len() >= self.buffer_bytes / 2 {
            return Ok(self.send_buffer(target, batch)?);
        }
        self.append_slice(target, &batch)
    }

    fn append_slice(&mut self, target: usize, bytes: &[u8]) -> Result<(), WriteError> {
        let buf = &mut self.pending[target];
        if buf.capacity() == 0 {
            buf.reserve(self.buffer_bytes);
        }
        buf.extend_from_slice(bytes);
        if buf.len() >= self.buffer_bytes {
            self.send(target)?;
        }
        Ok(())
    }

    fn send(&mut self, target: usize) -> Result<(), Cancelled> {
        let buf = std::mem::take(&mut self.pending[target]);
        if buf.is_empty() {
            return Ok(());
        }
        self.send_buffer(target, buf)
    }

    /// Sends a buffer, counting it and the wait for its credit (backpressure).
    fn send_buffer(&mut self, target: usize, buf: Vec<u8>) -> Result<(), Cancelled> {
        let Some(m) = &self.metrics else {
            return self.channels[target].send(buf);
        };
        TaskMetrics::add(&m.bytes_out, buf.len() as u64);
        let channel = &self.channels[target];
        TaskMetrics::waiting(&m.backpressured_ns, &m.backpressured_since, || {
            channel.send(buf)
        })
    }

    /// Sends every partly filled buffer.
    pub fn flush(&mut self) -> Result<(), Cancelled> {
        (0..self.channels.len()).try_for_each(|t| self.send(t))
    }

    /// Flushes every channel, then sends barrier `id` on each, after the records before it.
    pub fn barrier(&mut self, id: CheckpointId) -> Result<(), Cancelled> {
        self.flush()?;
        self.channels.iter().try_for_each(|c| c.barrier(id))
    }

    /// Flushes, then sends watermark `wm` on every channel.
    pub fn watermark(&mut self, wm: i64) -> Result<(), Cancelled> {
        self.flush()?;
        self.channels.iter().try_for_each(|c| c.watermark(wm))
    }

    /// Flushes and ends every channel.
    pub fn end(&mut self) -> Result<(), Cancelled> {
        self.flush()?;
        self.channels.iter().try_for_each(ChannelSender::end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Mode;
    use crate::worker::channel::{Gate, Received};
    use weir_batch::Record;

    fn drain(gate: &Gate) -> Vec<Vec<u8>> {
        let mut keys = Vec::new();
        while let Received::Data(buf) = gate.recv(None) {
            keys.extend(weir_batch::iter(&buf).map(|r| r.unwrap().key.to_vec()));
        }
        keys
    }

    fn batch(keys: &[String]) -> Vec<u8> {
        let mut b = Vec::new();
        for k in keys {
            weir_batch::push(&mut b, &Record::new(k.as_bytes(), b"v"));
        }
        b
    }

    #[test]
    fn hash_sends_each_key_to_the_subtask_owning_its_key_group() {
        let gates: Vec<_> = (0..3).map(|_| Gate::new(1, Mode::ExactlyOnce)).collect();
        let mut w = RecordWriter::new(
            Partition::Hash,
            gates.iter().map(|g| g.sender(0)).collect(),
            256,
            16,
        );
        let keys: Vec<String> = (0..40).map(|i| format!("key{i}")).collect();
        w.write(batch(&keys)).unwrap();
        w.end().unwrap();
        let mut total = 0;
        for (s, g) in gates.iter().enumerate() {
            for k in drain(g) {
                let kg = key_groups::key_group(&k, 16);
                assert!(key_groups::range_of(s as u32, 3, 16).contains(&kg));
                total += 1;
            }
        }
        assert_eq!(total, 40);
    }

    #[test]
    fn rebalance_spreads_and_broadcast_copies() {
        let keys: Vec<String> = (0..30).map(|i| i.to_string()).collect();
        let gates: Vec<_> = (0..3).map(|_| Gate::new(1, Mode::ExactlyOnce)).collect();
        let mut w = RecordWriter::new(
            Partition::Rebalance,
            gates.iter().map(|g| g.sender(0)).collect(),
            1 << 20,
            16,
        );
        w.write(batch(&keys)).unwrap();
        w.end().unwrap();
        assert!(gates.iter().all(|g| drain(g).len() == 10));

        let gates: Vec<_> = (0..2).map(|_| Gate::new(1, Mode::ExactlyOnce)).collect();
        let mut w = RecordWriter::new(
            Partition::Broadcast,
            gates.iter().map(|g| g.sender(0)).collect(),
            1 << 20,
            16,
        );
        w.write(batch(&keys)).unwrap();
        w.end().unwrap();
        assert!(gates.iter().all(|g| drain(g).len() == 30));
    }
}
