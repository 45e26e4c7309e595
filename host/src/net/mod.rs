//! The network between weir processes: the wire's frames and, as it grows, the remote side of
//! credit-based channels and the QUIC transport. Protocols here are sans-IO (fed bytes and
//! events, returning frames and decisions); the sockets drive them.

pub mod blobs;
pub mod control;
pub mod credit;
pub mod data;
pub mod frame;
pub mod http;
pub mod loopback;
pub mod pki;
pub mod stream;

pub use frame::{ChannelId, Decoder, Frame, FrameError};
