//! Sources written as components: the host polls them for records and keeps their position, so
//! a restored position resumes exactly where it was taken.

use crate::{Config, Context, Error};

/// Which share of the input a source subtask reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Split {
    /// This subtask, in `0..parallelism`.
    pub subtask: u32,
    pub parallelism: u32,
}

/// Whether more records may follow a poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Poll {
    More,
    Ended,
}

/// A source subtask: emits records when polled, and can say and restore where it is.
///
/// Positions must be monotonic (a later position never re-emits what an earlier one covered)
/// and exact: after `restore(p)`, the source emits the first record not emitted before `p` was
/// taken.
pub trait Source: Sized + 'static {
    /// Builds the source for `split` from its manifest `config` table.
    fn open(ctx: &mut Context, config: Config, split: Split) -> Result<Self, Error>;
    /// Emits up to `max_records` records through `ctx`.
    fn poll(&mut self, ctx: &mut Context, max_records: u32) -> Result<Poll, Error>;
    /// The position after the last record emitted.
    fn position(&self) -> Vec<u8>;
    /// Continues from a position returned by `position` (called before the first poll).
    fn restore(&mut self, position: &[u8]) -> Result<(), Error>;
}
