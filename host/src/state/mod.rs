//! State: keyed state per key group, in memory or in redb on disk, and what a checkpoint keeps
//! of it.

mod backend;
pub mod checkpoints;
mod keyed;
mod redb_state;
pub mod snapshot;

pub use backend::StateBackend;
pub use keyed::{EntryList, KeyRef, KeyedSnapshot, KeyedState, StateAccessError};
