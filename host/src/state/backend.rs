//! A subtask's keyed state in the backend its job chose: hash maps in memory (counted against
//! `limits.state_mib`), or a redb database on local disk (`checkpoint.backend = "redb"`). The
//! host's state calls go through this, whichever it is.

use super::keyed::{EntryList, KeyedSnapshot, KeyedState, StateAccessError};
use super::redb_state::RedbState;
use std::ops::Range;
use std::path::Path;

/// Where a subtask keeps its keyed state.
#[derive(Debug)]
pub enum StateBackend {
    Memory(KeyedState),
    /// Boxed: an open write transaction makes it large, and the memory backend is the hot one.
    Redb(Box<RedbState>),
}

impl StateBackend {
    /// In memory, for the key groups `range` of `max_parallelism`, within `budget_bytes`.
    pub fn memory(range: Range<u32>, max_parallelism: u32, budget_bytes: usize) -> Self {
        StateBackend::Memory(KeyedState::new(range, max_parallelism, budget_bytes))
    }

    /// In a new redb database at `path`.
    pub fn redb(
        path: &Path,
        range: Range<u32>,
        max_parallelism: u32,
    ) -> Result<Self, StateAccessError> {
        Ok(StateBackend::Redb(Box::new(RedbState::create(
            path,
            range,
            max_parallelism,
        )?)))
    }

    pub fn value_get(
        &mut self,
        name: &str,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StateAccessError> {
        match self {
            StateBackend::Memory(s) => Ok(s.value_get(name, key)?.map(<[u8]>::to_vec)),
            StateBackend::Redb(s) => s.value_get(name, key),
        }
    }

    /// The values of `keys`, in order, each handed to `push` (`None`: no value).
    pub fn value_get_many(
        &mut self,
        name: &str,
        keys: &[&[u8]],
        mut push: impl FnMut(Option<&[u8]>),
    ) -> Result<(), StateAccessError> {
        match self {
            StateBackend::Memory(s) => {
                let state = s.value_state(name);
                for key in keys {
                    push(state.get(key)?);
                }
                Ok(())
            }
            StateBackend::Redb(s) => s.value_get_many(name, keys.iter().map(|k| Ok(*k)), push),
        }
    }

    /// Sets (`Some`) or clears (`None`) each key of `entries`.
    pub fn value_set_many(
        &mut self,
        name: &str,
        entries: &[(&[u8], Option<&[u8]>)],
    ) -> Result<(), StateAccessError> {
        match self {
            StateBackend::Memory(s) => {
                let mut state = s.value_state(name);
                for &(key, value) in entries {
                    match value {
                        Some(v) => state.set(key, v)?,
                        None => state.clear(key)?,
                    }
                }
                Ok(())
            }
            StateBackend::Redb(s) => s.value_set_many(name, entries.iter().map(|&e| Ok(e))),
        }
    }

    pub fn map_get(
        &mut self,
        name: &str,
        key: &[u8],
        map_key: &[u8],
    ) -> Result<Option<Vec<u8>>, StateAccessError> {
        match self {
            StateBackend::Memory(s) => Ok(s.map_get(name, key, map_key)?.map(<[u8]>::to_vec)),
            StateBackend::Redb(s) => s.map_get(name, key, map_key),
        }
    }

    pub fn map_put(
        &mut self,
        name: &str,
        key: Vec<u8>,
        map_key: Vec<u8>,
        value: Vec<u8>,
    ) -> Result<(), StateAccessError> {
        match self {
            StateBackend::Memory(s) => s.map_put(name, key, map_key, value),
            StateBackend::Redb(s) => s.map_put(name, &key, &map_key, &value),
        }
    }

    pub fn map_remove(
        &mut self,
        name: &str,
        key: &[u8],
        map_key: &[u8],
    ) -> Result<(), StateAccessError> {
        match self {
            StateBackend::Memory(s) => s.map_remove(name, key, map_key),
            StateBackend::Redb(s) => s.map_remove(name, key, map_key),
        }
    }

    pub fn map_entries(&mut self, name: &str, key: &[u8]) -> Result<EntryList, StateAccessError> {
        match self {
            StateBackend::Memory(s) => s.map_entries(name, key),
            StateBackend::Redb(s) => s.map_entries(name, key),
        }
    }

    pub fn map_clear(&mut self, name: &str, key: &[u8]) -> Result<(), StateAccessError> {
        match self {
            StateBackend::Memory(s) => s.map_clear(name, key),
            StateBackend::Redb(s) => s.map_clear(name, key),
        }
    }

    /// A copy of every entry, for a checkpoint.
    pub fn snapshot(&mut self) -> Result<KeyedSnapshot, StateAccessError> {
        match self {
            StateBackend::Memory(s) => Ok(s.snapshot()),
            StateBackend::Redb(s) => s.snapshot(),
        }
    }

    /// Loads the entries of `snapshot` in this subtask's key groups.
    pub fn restore(&mut self, snapshot: &KeyedSnapshot) -> Result<(), StateAccessError> {
        match self {
            StateBackend::Memory(s) => s.restore(snapshot),
            StateBackend::Redb(s) => s.restore(snapshot),
        }
    }
}
