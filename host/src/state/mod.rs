//! State backends. For now: keyed state in memory, stored per key group.

mod keyed;

pub use keyed::{KeyedState, StateAccessError};
