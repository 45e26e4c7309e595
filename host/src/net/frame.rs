//! The wire's frames: what travels on a QUIC stream between two processes, length-prefixed and
//! versioned. One encoding for the data plane (a stream per channel: data buffers forward,
//! credit back, in-band events in order with the data) and the control plane (messages between
//! coordinator and workers).
//!
//! A frame is `length: u32 LE | version: u8 | kind: u8 | payload`, `length` counting what follows
//! it. The decoder is sans-IO: fed bytes as they arrive, it returns whole frames, and refuses a
//! frame of another version, of an unknown kind, malformed, or longer than its limit before
//! reading (let alone allocating) its payload. Any error closes the connection it came on.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::fmt;

/// The wire version this build speaks.
pub const VERSION: u8 = 1;

/// Bytes before a frame's payload: length, version, kind.
pub const HEADER: usize = 6;

/// Which channel a data stream carries: its first frame.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ChannelId {
    /// The job's id, as the coordinator gave it.
    pub job: String,
    /// The job's attempt: frames of an earlier attempt are refused.
    pub attempt: u32,
    /// The job-graph edge the channel belongs to.
    pub edge: u32,
    /// The sending (upstream) subtask and the receiving (downstream) one.
    pub from: u32,
    pub to: u32,
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Opens a data stream: the channel it carries.
    Open(ChannelId),
    /// A buffer of records (the batch format), and how many more buffers the sender holds for
    /// this channel: the receiver grants floating credit against that backlog.
    Data { backlog: u32, records: Bytes },
    /// The receiver can take `credit` more buffers (sent back on the same stream).
    Credit(u32),
    /// Checkpoint barrier n, after the data before it.
    Barrier(u64),
    /// The sender's watermark (ms), after the data before it.
    Watermark(i64),
    /// The sender's partition has ended: nothing follows on this stream.
    EndOfPartition,
    /// A control-plane message (JSON), between coordinator and worker.
    Control(Bytes),
}

const OPEN: u8 = 1;
const DATA: u8 = 2;
const CREDIT: u8 = 3;
const BARRIER: u8 = 4;
const END_OF_PARTITION: u8 = 5;
const WATERMARK: u8 = 6;
const CONTROL: u8 = 16;

/// Why bytes received are not a frame. Each one ends the connection they came on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// A frame of another wire version (a process of another weir version).
    Version(u8),
    /// A kind this version does not know.
    Kind(u8),
    /// A frame longer than the receiver's limit.
    TooLong { length: usize, limit: usize },
    /// The payload does not match its kind.
    Malformed {
        kind: &'static str,
        why: &'static str,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Version(v) => write!(
                f,
                "a frame of wire version {v}; this process speaks version {VERSION} (mixed weir versions?)"
            ),
            FrameError::Kind(k) => write!(f, "a frame of unknown kind {k}"),
            FrameError::TooLong { length, limit } => {
                write!(f, "a frame of {length} bytes, over the limit of {limit}")
            }
            FrameError::Malformed { kind, why } => write!(f, "a malformed {kind} frame: {why}"),
        }
    }
}

impl std::error::Error for FrameError {}

impl Frame {
    fn kind(&self) -> u8 {
        match self {
            Frame::Open(_) => OPEN,
            Frame::Data { .. } => DATA,
            Frame::Credit(_) => CREDIT,
            Frame::Barrier(_) => BARRIER,
            Frame::Watermark(_) => WATERMARK,
            Frame::EndOfPartition => END_OF_PARTITION,
            Frame::Control(_) => CONTROL,
        }
    }

    /// Appends the frame's encoding to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        let start = out.len();
        out.put_u32_le(0);
        out.put_u8(VERSION);
        out.put_u8(self.kind());
        match self {
            Frame::Open(c) => {
                out.put_u32_le(c.attempt);
                out.put_u32_le(c.edge);
                out.put_u32_le(c.from);
                out.put_u32_le(c.to);
                out.put_slice(c.job.as_bytes());
            }
            Frame::Data { backlog, records } => {
                out.put_u32_le(*backlog);
                out.put_slice(records);
            }
            Frame::Credit(n) => out.put_u32_le(*n),
            Frame::Barrier(id) => out.put_u64_le(*id),
            Frame::Watermark(wm) => out.put_i64_le(*wm),
            Frame::EndOfPartition => {}
            Frame::Control(message) => out.put_slice(message),
        }
        let length = (out.len() - start - 4) as u32;
        out[start..start + 4].copy_from_slice(&length.to_le_bytes());
    }

    /// The frame's encoding.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out.freeze()
    }
}

/// Reads frames out of the bytes a stream delivers.
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    /// The longest frame accepted, header included.
    limit: usize,
}

impl Decoder {
    /// Changes the limit for the frames still to come.
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// A decoder refusing frames longer than `limit` bytes (header included).
    pub fn new(limit: usize) -> Self {
        Decoder {
            buf: BytesMut::new(),
            limit,
        }
    }

    /// Bytes received, not yet returned as frames.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held that are not yet a whole frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next whole frame, `None` until one has arrived. After an error the stream is not to
    /// be read further.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.buf.len() < HEADER {
            return Ok(None);
        }
        let length = u32::from_le_bytes(self.buf[..4].try_into().expect("4 bytes")) as usize;
        let (version, kind) = (self.buf[4], self.buf[5]);
        if version != VERSION {
            return Err(FrameError::Version(version));
        }
        if length < 2 {
            return Err(FrameError::Malformed {
                kind: "any",
                why: "shorter than its header",
            });
        }
        if length + 4 > self.limit {
            return Err(FrameError::TooLong {
                length: length + 4,
                limit: self.limit,
            });
        }
        if !matches!(
            kind,
            OPEN | DATA | CREDIT | BARRIER | END_OF_PARTITION | WATERMARK | CONTROL
        ) {
            return Err(FrameError::Kind(kind));
        }
        if self.buf.len() < length + 4 {
            return Ok(None);
        }
        let mut frame = self.buf.split_to(length + 4);
        frame.advance(HEADER);
        let payload = frame.freeze();
        decode(kind, payload).map(Some)
    }
}

fn decode(kind: u8, mut p: Bytes) -> Result<Frame, FrameError> {
    let exact = |p: &Bytes, n: usize, kind: &'static str| {
        if p.len() == n {
            Ok(())
        } else {
            Err(FrameError::Malformed {
                kind,
                why: "wrong length",
            })
        }
    };
    Ok(match kind {
        OPEN => {
            if p.len() < 16 {
                return Err(FrameError::Malformed {
                    kind: "open",
                    why: "shorter than its fields",
                });
            }
            let (attempt, edge, from, to) = (
                p.get_u32_le(),
                p.get_u32_le(),
                p.get_u32_le(),
                p.get_u32_le(),
            );
            let job = String::from_utf8(p.to_vec()).map_err(|_| FrameError::Malformed {
                kind: "open",
                why: "a job id that is not UTF-8",
            })?;
            Frame::Open(ChannelId {
                job,
                attempt,
                edge,
                from,
                to,
            })
        }
        DATA => {
            if p.len() < 4 {
                return Err(FrameError::Malformed {
                    kind: "data",
                    why: "no backlog",
                });
            }
            let backlog = p.get_u32_le();
            Frame::Data {
                backlog,
                records: p,
            }
        }
        CREDIT => {
            exact(&p, 4, "credit")?;
            Frame::Credit(p.get_u32_le())
        }
        BARRIER => {
            exact(&p, 8, "barrier")?;
            Frame::Barrier(p.get_u64_le())
        }
        END_OF_PARTITION => {
            exact(&p, 0, "end-of-partition")?;
            Frame::EndOfPartition
        }
        WATERMARK => {
            exact(&p, 8, "watermark")?;
            Frame::Watermark(p.get_i64_le())
        }
        CONTROL => Frame::Control(p),
        other => return Err(FrameError::Kind(other)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Frame> {
        vec![
            Frame::Open(ChannelId {
                job: "wordcount-7".into(),
                attempt: 2,
                edge: 1,
                from: 3,
                to: 0,
            }),
            Frame::Data {
                backlog: 5,
                records: Bytes::from_static(b"some records"),
            },
            Frame::Data {
                backlog: 0,
                records: Bytes::new(),
            },
            Frame::Credit(2),
            Frame::Barrier(42),
            Frame::Watermark(-5),
            Frame::EndOfPartition,
            Frame::Control(Bytes::from_static(br#"{"heartbeat":1}"#)),
        ]
    }

    #[test]
    fn frames_round_trip_whatever_the_pieces_they_arrive_in() {
        let mut wire = BytesMut::new();
        for f in all() {
            f.encode(&mut wire);
        }
        for piece in [1, 2, 5, 7, 64, wire.len()] {
            let mut d = Decoder::new(1 << 20);
            let mut got = Vec::new();
            for chunk in wire.chunks(piece) {
                d.feed(chunk);
                while let Some(f) = d.next_frame().unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(got, all(), "in pieces of {piece}");
            assert_eq!(d.buffered(), 0);
        }
    }

    #[test]
    fn another_version_an_unknown_kind_or_an_oversized_frame_is_refused_before_its_payload() {
        let data = Frame::Data {
            backlog: 0,
            records: Bytes::from(vec![0; 1000]),
        }
        .to_bytes();
        // Only the header has arrived: the refusal does not wait for (or buffer) the payload.
        let mut d = Decoder::new(100);
        d.feed(&data[..HEADER]);
        assert_eq!(
            d.next_frame(),
            Err(FrameError::TooLong {
                length: 1010,
                limit: 100
            })
        );
        let mut other = data.to_vec();
        other[4] = VERSION + 1;
        let mut d = Decoder::new(1 << 20);
        d.feed(&other[..HEADER]);
        assert_eq!(d.next_frame(), Err(FrameError::Version(VERSION + 1)));
        assert!(
            d.next_frame()
                .unwrap_err()
                .to_string()
                .contains("wire version 2")
        );
        let mut unknown = data.to_vec();
        unknown[5] = 99;
        let mut d = Decoder::new(1 << 20);
        d.feed(&unknown);
        assert_eq!(d.next_frame(), Err(FrameError::Kind(99)));
    }

    #[test]
    fn malformed_payloads_are_errors_never_panics() {
        let frame = |kind: u8, payload: &[u8]| {
            let mut b = ((payload.len() + 2) as u32).to_le_bytes().to_vec();
            b.extend([VERSION, kind]);
            b.extend_from_slice(payload);
            b
        };
        for (bytes, what) in [
            (frame(CREDIT, &[1, 2]), "credit"),
            (frame(BARRIER, &[1; 9]), "barrier"),
            (frame(WATERMARK, &[1; 7]), "watermark"),
            (frame(END_OF_PARTITION, &[0]), "end-of-partition"),
            (frame(DATA, &[1, 2, 3]), "data"),
            (frame(OPEN, &[0; 15]), "open"),
            (
                frame(
                    OPEN,
                    &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff],
                ),
                "open",
            ),
        ] {
            let mut d = Decoder::new(1 << 20);
            d.feed(&bytes);
            match d.next_frame() {
                Err(FrameError::Malformed { kind, .. }) => assert_eq!(kind, what),
                other => panic!("{what}: {other:?}"),
            }
        }
        // A length shorter than the version and kind.
        let mut d = Decoder::new(1 << 20);
        d.feed(&[1, 0, 0, 0, VERSION, DATA]);
        assert!(matches!(d.next_frame(), Err(FrameError::Malformed { .. })));
        // Random bytes: an error or a frame, never a panic.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            let mut d = Decoder::new(4096);
            let bytes: Vec<u8> = (0..64)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            d.feed(&bytes);
            while let Ok(Some(_)) = d.next_frame() {}
            // The same with a valid header of a known kind and a short length.
            let mut bytes = bytes;
            let length = u32::from(bytes[0] % 60).to_le_bytes();
            bytes[..4].copy_from_slice(&length);
            bytes[4] = VERSION;
            bytes[5] =
                [OPEN, DATA, CREDIT, BARRIER, END_OF_PARTITION, CONTROL][bytes[5] as usize % 6];
            let mut d = Decoder::new(4096);
            d.feed(&bytes);
            while let Ok(Some(_)) = d.next_frame() {}
        }
    }
}
