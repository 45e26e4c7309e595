//! State: keyed state in memory, stored per key group, and what a checkpoint keeps of it.

pub mod checkpoints;
mod keyed;
pub mod snapshot;

pub use keyed::{KeyedSnapshot, KeyedState, StateAccessError};
