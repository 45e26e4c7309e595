//! Frames read from a QUIC stream as they arrive, through a [`Decoder`] with a limit.

use super::frame::{Decoder, Frame, FrameError};

/// Why no frame could be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("the stream broke: {0}")]
    Stream(String),
}

/// Reads frames from one stream.
pub struct FrameReader {
    recv: quinn::RecvStream,
    decoder: Decoder,
}

impl FrameReader {
    /// Reads `recv`, refusing frames longer than `limit` bytes.
    pub fn new(recv: quinn::RecvStream, limit: usize) -> Self {
        FrameReader {
            recv,
            decoder: Decoder::new(limit),
        }
    }

    /// Changes the limit for the frames still to come (once a stream's first frame said
    /// what it carries).
    pub fn set_limit(&mut self, limit: usize) {
        self.decoder.set_limit(limit);
    }

    /// Tells the peer nothing more will be read.
    pub fn stop(&mut self) {
        let _ = self.recv.stop(1u32.into());
    }

    /// The next frame; `None` when the peer finished the stream between frames.
    pub async fn next(&mut self) -> Result<Option<Frame>, ReadError> {
        loop {
            if let Some(frame) = self.decoder.next_frame()? {
                return Ok(Some(frame));
            }
            let mut buf = [0u8; 64 * 1024];
            match self.recv.read(&mut buf).await {
                Ok(Some(n)) => self.decoder.feed(&buf[..n]),
                Ok(None) if self.decoder.buffered() == 0 => return Ok(None),
                Ok(None) => return Err(ReadError::Stream("it ended inside a frame".into())),
                Err(e) => return Err(ReadError::Stream(e.to_string())),
            }
        }
    }
}
