//! The control plane's messages between a worker and the coordinator, and how frames travel on
//! a QUIC stream. Each message is one [`Frame::Control`] holding JSON; a stream's frames are
//! read through a [`Decoder`] with a limit, so a peer cannot make a process buffer without
//! bound.

use super::frame::{Frame, FrameError};
use super::stream::{FrameReader, ReadError};
use crate::plan::JobGraph;
use crate::state::checkpoints::{Ack, Notice, Summary};
use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};

/// The longest control frame accepted.
pub const CONTROL_LIMIT: usize = 1 << 20;

/// One task's counters since its attempt began (Flink's numRecordsIn/Out and the time it was
/// busy, backpressured and idle).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFigures {
    /// The task's name: its chain's head uid and subtask, e.g. `count-1`.
    pub task: String,
    pub records_in: u64,
    pub records_out: u64,
    pub busy_ms: u64,
    pub backpressured_ms: u64,
    pub idle_ms: u64,
}

/// From a worker to the coordinator.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToCoordinator {
    /// On the join endpoint, without a certificate: the token's secret, and a certificate
    /// signing request for the worker's key.
    Join {
        token: String,
        worker: String,
        csr_pem: String,
    },
    /// With its certificate: the worker offers its slots.
    Register {
        worker: String,
        slots: u32,
        /// Where its data plane listens.
        data_addr: String,
        /// The worker's weir version.
        version: String,
    },
    Heartbeat,
    /// A worker's part of a job's attempt has ended: finished, failed (why), or cancelled.
    PartEnded {
        job: String,
        attempt: u32,
        outcome: PartOutcome,
    },
    /// Records a worker's part of a job's attempt has read and written so far, and each of its
    /// tasks' counters.
    Progress {
        job: String,
        attempt: u32,
        records_in: u64,
        records_out: u64,
        #[serde(default)]
        tasks: Vec<TaskFigures>,
        /// When its sinks wrote their first record (ms since the Unix epoch), if they have.
        #[serde(default)]
        first_output_unix_ms: Option<u64>,
    },
    /// Lines a worker's part of a job's attempt logged (its guests' log calls, stdout and
    /// stderr), and how many it dropped since the last report.
    Logs {
        job: String,
        attempt: u32,
        lines: Vec<crate::wasm::guest_log::LogLine>,
        dropped: u64,
    },
    /// The answer to query `query`.
    Answer {
        query: u64,
        answer: StateAnswer,
    },
    /// A checkpoint acknowledgement from a task of a part of a job's attempt.
    Ack {
        job: String,
        attempt: u32,
        ack: Ack,
    },
    /// A worker's part of a job's attempt has the component `operator` swaps to at checkpoint
    /// `checkpoint` fetched and compiled (or cannot: `error` says why).
    SwapPrepared {
        job: String,
        attempt: u32,
        checkpoint: u64,
        error: Option<String>,
    },
    /// On a stream of its own: the component with this content hash (the answer is its bytes,
    /// raw, then the end of the stream; a reset if the coordinator has none).
    Fetch {
        hash: String,
    },
    /// From `weir run --coordinator`, without a certificate: the join token, the job graph
    /// (its components named by content hash) and the components' hashes and sizes.
    Submit {
        token: String,
        graph: Box<JobGraph>,
        components: Vec<ComponentRef>,
        /// `--from`: a checkpoint (or a checkpoint directory) to start from, on a path the
        /// coordinator and the workers reach.
        from: Option<std::path::PathBuf>,
        allow_non_restored_state: bool,
    },
    /// From `weir run --coordinator` that lost its coordinator (it restarted): follow job
    /// `job` again.
    Follow {
        token: String,
        job: String,
    },
    /// From `weir run --coordinator`, on the stream of its submission: cancel the job.
    Cancel {
        why: String,
    },
}

/// A component by content: the SHA-256 of its bytes (hex) and its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentRef {
    pub hash: String,
    pub bytes: u64,
}

/// A read of a running task's keyed state: operator `operator`'s state `state` of `key` (and
/// of one map key, for map state), in subtask `subtask` of the chain `chain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateQuery {
    pub chain: usize,
    pub subtask: u32,
    pub operator: String,
    pub state: String,
    pub key: Vec<u8>,
    #[serde(default)]
    pub map_key: Option<Vec<u8>>,
}

/// What a read of keyed state found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StateAnswer {
    /// The key's value in value state.
    Value { value: Vec<u8> },
    /// The key's entries in map state (map key, value), sorted by map key.
    Map { entries: Vec<(Vec<u8>, Vec<u8>)> },
    /// No such operator here, or no value of that state for that key.
    NotFound { why: String },
    /// The task that owns the key has ended (the rest of its job may run on).
    Ended { why: String },
    /// The read failed (its state's storage failed, the task is too busy).
    Failed { why: String },
}

/// How a worker's part of an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PartOutcome {
    Finished,
    Failed { why: String },
    Cancelled,
}

/// What a worker needs to run its part of an attempt of a job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deployment {
    /// The job's id, unique in the cluster.
    pub job: String,
    pub attempt: u32,
    /// The job graph, its components named by content hash.
    pub graph: JobGraph,
    /// Per shared slot (slot k holds subtask k of every chain): the worker that runs it.
    pub slots: Vec<String>,
    /// Every worker of the attempt and where its data plane listens.
    pub peers: Vec<(String, String)>,
    /// The checkpoint to restore from, if any.
    pub restore: Option<Restore>,
    /// The id the attempt's first checkpoint gets.
    pub first_checkpoint: u64,
}

/// A checkpoint an attempt restores from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restore {
    /// Its directory (`chk-<id>`), on a path every process reaches.
    pub path: std::path::PathBuf,
    pub id: u64,
    /// Drop the state of operators the job no longer has.
    pub allow_non_restored_state: bool,
}

/// From the coordinator to `weir run --coordinator`, on the stream of its submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToClient {
    /// Send these components, each on a stream of its own: its hash (64 hex digits), then its
    /// bytes.
    Need { hashes: Vec<String> },
    /// An attempt of the job has been deployed: how many tasks run on each worker.
    Started {
        job: String,
        attempt: u32,
        workers: Vec<(String, u32)>,
    },
    /// A checkpoint of the job completed.
    Checkpoint { summary: Summary },
    /// Records read and written so far by the current attempt.
    Progress {
        attempt: u32,
        records_in: u64,
        records_out: u64,
    },
    /// The attempt failed; the job restarts after `delay_ms`.
    Restarting {
        attempt: u32,
        cause: String,
        delay_ms: u64,
    },
    /// The job has finished.
    Finished,
    /// The job failed for good.
    Failed { why: String },
    /// The job was cancelled.
    Cancelled { why: String },
    /// The submission was refused.
    Refused { why: String },
}

/// From the coordinator to a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToWorker {
    /// The worker's certificate, signed by the cluster's CA, and the CA's.
    Joined { cert_pem: String, ca_pem: String },
    /// Registered: heartbeats are due every `heartbeat_ms`.
    Registered { heartbeat_ms: u64 },
    /// Refused, and why.
    Refused { why: String },
    /// Run this part of a job.
    Deploy(Box<Deployment>),
    /// What the job's checkpoint keeper decided, for the tasks of a part.
    Notice {
        job: String,
        attempt: u32,
        notice: Notice,
    },
    /// Fetch and compile component `component` (a content hash): operator `operator`'s
    /// subtasks swap to it at the barrier of checkpoint `checkpoint` (answered with
    /// `swap_prepared`).
    PrepareSwap {
        job: String,
        attempt: u32,
        operator: String,
        component: String,
        checkpoint: u64,
    },
    /// Read keyed state of a task of a job's attempt (answered with `answer`).
    Query {
        job: String,
        attempt: u32,
        query: u64,
        request: StateQuery,
    },
    /// Cancel a job's attempt.
    Cancel {
        job: String,
        attempt: u32,
        why: String,
    },
}

/// Why a control stream failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("the peer sent a {0} frame on a control stream")]
    NotControl(&'static str),
    #[error("an unreadable control message: {0}")]
    Message(String),
    #[error("the stream broke: {0}")]
    Stream(String),
}

/// A message's frame.
pub fn encode<M: Serialize>(message: &M) -> Bytes {
    let json = serde_json::to_vec(message).expect("control messages serialize");
    let mut out = BytesMut::new();
    Frame::Control(Bytes::from(json)).encode(&mut out);
    out.freeze()
}

/// Reads control messages from a QUIC stream.
pub struct ControlReader(FrameReader);

impl ControlReader {
    pub fn new(recv: quinn::RecvStream) -> Self {
        ControlReader(FrameReader::new(recv, CONTROL_LIMIT))
    }

    /// The next message; `None` when the peer finished the stream.
    pub async fn next<M: for<'de> Deserialize<'de>>(&mut self) -> Result<Option<M>, ControlError> {
        match self.0.next().await {
            Ok(Some(Frame::Control(json))) => serde_json::from_slice(&json)
                .map(Some)
                .map_err(|e| ControlError::Message(e.to_string())),
            Ok(Some(Frame::Data { .. })) => Err(ControlError::NotControl("data")),
            Ok(Some(_)) => Err(ControlError::NotControl("data-plane")),
            Ok(None) => Ok(None),
            Err(ReadError::Frame(e)) => Err(ControlError::Frame(e)),
            Err(ReadError::Stream(why)) => Err(ControlError::Stream(why)),
        }
    }
}

/// Sends one message on a QUIC stream.
pub async fn send<M: Serialize>(
    send: &mut quinn::SendStream,
    message: &M,
) -> Result<(), ControlError> {
    send.write_all(&encode(message))
        .await
        .map_err(|e| ControlError::Stream(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::frame::Decoder;

    #[test]
    fn messages_are_tagged_json_in_control_frames() {
        let m = ToCoordinator::Register {
            worker: "w1".into(),
            slots: 4,
            data_addr: "127.0.0.1:7000".into(),
            version: "0.1.0".into(),
        };
        let bytes = encode(&m);
        let mut d = Decoder::new(CONTROL_LIMIT);
        d.feed(&bytes);
        let Some(Frame::Control(json)) = d.next_frame().unwrap() else {
            panic!("a control frame")
        };
        assert!(
            std::str::from_utf8(&json)
                .unwrap()
                .contains(r#""type":"register""#)
        );
        assert_eq!(
            serde_json::to_string(&serde_json::from_slice::<ToCoordinator>(&json).unwrap())
                .unwrap(),
            std::str::from_utf8(&json).unwrap()
        );
        let refused: ToWorker = serde_json::from_str(r#"{"type":"refused","why":"x"}"#).unwrap();
        assert!(matches!(refused, ToWorker::Refused { why } if why == "x"));
    }
}
