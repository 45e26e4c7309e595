//! The control plane's messages between a worker and the coordinator, and how frames travel on
//! a QUIC stream. Each message is one [`Frame::Control`] holding JSON; a stream's frames are
//! read through a [`Decoder`] with a limit, so a peer cannot make a process buffer without
//! bound.

use super::frame::{Frame, FrameError};
use super::stream::{FrameReader, ReadError};
use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};

/// The longest control frame accepted.
pub const CONTROL_LIMIT: usize = 1 << 20;

/// From a worker to the coordinator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// From the coordinator to a worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToWorker {
    /// The worker's certificate, signed by the cluster's CA, and the CA's.
    Joined { cert_pem: String, ca_pem: String },
    /// Registered: heartbeats are due every `heartbeat_ms`.
    Registered { heartbeat_ms: u64 },
    /// Refused, and why.
    Refused { why: String },
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
        assert_eq!(serde_json::from_slice::<ToCoordinator>(&json).unwrap(), m);
        let refused: ToWorker = serde_json::from_str(r#"{"type":"refused","why":"x"}"#).unwrap();
        assert_eq!(refused, ToWorker::Refused { why: "x".into() });
    }
}
