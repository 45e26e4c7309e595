//! Event time as protocols without I/O, as [`crate::checkpoint`] keeps barriers:
//! - which windows a record belongs to ([`assigner`]);
//! - the watermarks a source generates, and the minimum a task takes over its inputs
//!   ([`watermark`]);
//! - when windows fire and are dropped ([`windows`]; by count: [`count`]);
//! - the timers of keys ([`timers`]).
//!
//! Timestamps are milliseconds (`i64`); the threads and channels that carry records drive
//! these.

pub mod assigner;
pub mod count;
pub mod timers;
pub mod watermark;
pub mod windows;

pub use assigner::{Assigner, Window};
pub use watermark::{Generator, Strategy, Valve, ValveOutput};
pub use windows::{Action, RecordAction, WindowOperator};
