//! Checkpoints as protocols, apart from any I/O: barrier alignment at a task's inputs
//! ([`align`]), the coordinator that triggers, completes and aborts checkpoints
//! ([`coordinator`]), and the settings of both ([`settings`]). Tasks, channels and storage drive
//! these state machines; they hold no thread, clock or file of their own.

pub mod align;
pub mod coordinator;
pub mod settings;

pub use align::{Aligned, Aligner};
pub use coordinator::{AbortReason, Action, Coordinator, Schedule};
pub use settings::{Backend, CheckpointSettings, Mode, RestartStrategy, parse_duration};

/// A checkpoint's number: 1 for a job's first, one more for each trigger after it.
pub type CheckpointId = u64;
