//! Keyed state whose encoding changed between versions of an operator's component
//! (`weir:operator/migration`), migrated lazily: a value is converted the first time the new
//! version uses its key, never all at once, so a swap's pause does not grow with the state.
//!
//! Each value is stored under its state's name tagged with the version that wrote it: version 1
//! (every state of a component that declares nothing, and everything written before weir had
//! versions) is the bare name, version v > 1 is `weir:v<v>:<name>` (a name guests cannot use).
//! A component that declares version v of state `s` reads and writes `s` at version v; when a
//! key has no value at v but one at an older version, the older value goes through the
//! component's `migrate` hook (in an instance of its own, since the instance using the state is
//! in the middle of a call), is stored at v, and the older one is removed. Snapshots, restores
//! and rescaling carry the tags with the entries, so a restore of a half-migrated state goes on
//! where it stopped.

use super::host::Refused;
use crate::state::{EntryList, StateAccessError, StateBackend};
use std::borrow::Cow;
use std::collections::HashMap;

/// What runs a component's `migrate` hook: (state, from-version, value) -> value.
pub type Migrate = Box<dyn FnMut(&str, u32, &[u8]) -> std::result::Result<Vec<u8>, String> + Send>;

/// An instance's state versions and its migration hook.
pub struct Migration {
    /// Per state name: the version its component writes (only those above 1).
    current: HashMap<String, u32>,
    migrate: Migrate,
    /// Values migrated so far.
    pub migrated: u64,
}

/// The name state `name`'s values of version `version` are stored under.
pub fn stored_name(name: &str, version: u32) -> Cow<'_, str> {
    if version <= 1 {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(format!(
            "{}v{version}:{name}",
            super::timers::RESERVED_PREFIX
        ))
    }
}

/// A state call's failure: a state error, or a value that could not be migrated (which fails
/// the guest's call).
pub enum Failure {
    State(StateAccessError),
    Refused(Refused),
}

impl From<StateAccessError> for Failure {
    fn from(e: StateAccessError) -> Self {
        Failure::State(e)
    }
}

type Result<T> = std::result::Result<T, Failure>;

impl Migration {
    /// The versions `declared` (state name, version); `None` when every state is at version 1
    /// (nothing to tag or migrate).
    pub fn new(declared: Vec<(String, u32)>, migrate: Migrate) -> Option<Self> {
        let current: HashMap<String, u32> = declared.into_iter().filter(|(_, v)| *v > 1).collect();
        (!current.is_empty()).then_some(Migration {
            current,
            migrate,
            migrated: 0,
        })
    }

    /// The version state `name` is written at, if above 1.
    pub fn version(&self, name: &str) -> Option<u32> {
        self.current.get(name).copied()
    }

    fn convert(
        &mut self,
        name: &str,
        key: &[u8],
        from: u32,
        to: u32,
        value: &[u8],
    ) -> Result<Vec<u8>> {
        let out = (self.migrate)(name, from, value).map_err(|why| {
            Failure::Refused(Refused(format!(
                "cannot migrate state `{name}` of key {} from version {from} to {to}: {why}",
                key_text(key)
            )))
        })?;
        self.migrated += 1;
        Ok(out)
    }

    /// The value of value state `name` (at version `v`) for `key`, migrating an older one.
    pub fn value_get(
        &mut self,
        state: &mut StateBackend,
        name: &str,
        v: u32,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>> {
        let current = stored_name(name, v);
        if let Some(value) = state.value_get(&current, key)? {
            return Ok(Some(value));
        }
        for old in (1..v).rev() {
            let older = stored_name(name, old);
            if let Some(value) = state.value_get(&older, key)? {
                let value = self.convert(name, key, old, v, &value)?;
                state.value_set_many(&current, &[(key, Some(&value))])?;
                state.value_set_many(&older, &[(key, None)])?;
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    /// Sets (`Some`) or clears value state `name` (at version `v`) for `key`; a value of an
    /// older version goes.
    pub fn value_set(
        &mut self,
        state: &mut StateBackend,
        name: &str,
        v: u32,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<()> {
        state.value_set_many(&stored_name(name, v), &[(key, value)])?;
        for old in 1..v {
            let older = stored_name(name, old);
            if state.value_get(&older, key)?.is_some() {
                state.value_set_many(&older, &[(key, None)])?;
            }
        }
        Ok(())
    }

    /// Moves the map of `key` in map state `name` to version `v`, migrating its entries, if an
    /// older version holds it.
    pub fn map_migrate(
        &mut self,
        state: &mut StateBackend,
        name: &str,
        v: u32,
        key: &[u8],
    ) -> Result<()> {
        for old in (1..v).rev() {
            let older = stored_name(name, old);
            let entries: EntryList = state.map_entries(&older, key)?;
            if entries.is_empty() {
                continue;
            }
            let current = stored_name(name, v);
            for (map_key, value) in entries {
                // An entry the new version already wrote wins over the old one.
                if state.map_get(&current, key, &map_key)?.is_some() {
                    continue;
                }
                let value = self.convert(name, key, old, v, &value)?;
                state.map_put(&current, key.to_vec(), map_key, value)?;
            }
            state.map_clear(&older, key)?;
        }
        Ok(())
    }
}

/// A key for an error message: its text when it is printable UTF-8, else its bytes.
fn key_text(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => {
            format!("{:?}", super::guest_log::preview(s))
        }
        _ => format!("{:02x?}", &key[..key.len().min(64)]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend() -> StateBackend {
        StateBackend::memory(0..128, 128, 1 << 20, false)
    }

    /// v1 stores counts as decimal text, v2 as u64 LE.
    fn migration() -> Migration {
        let migrate: Migrate = Box::new(|name, from, value| {
            assert_eq!((name, from), ("count", 1));
            let text = std::str::from_utf8(value).map_err(|e| e.to_string())?;
            let n: u64 = text.parse().map_err(|_| format!("not a count: {text:?}"))?;
            Ok(n.to_le_bytes().to_vec())
        });
        Migration::new(vec![("count".into(), 2), ("other".into(), 1)], migrate).unwrap()
    }

    #[test]
    fn a_value_is_migrated_once_on_first_use_and_the_old_one_goes() {
        let mut state = backend();
        state
            .value_set_many("count", &[(b"a", Some(b"41")), (b"b", Some(b"x"))])
            .ok()
            .unwrap();
        let mut m = migration();
        assert_eq!(m.version("count"), Some(2));
        assert_eq!(m.version("other"), None, "version 1 is untagged");
        let got = m.value_get(&mut state, "count", 2, b"a").ok().unwrap();
        assert_eq!(got, Some(41u64.to_le_bytes().to_vec()));
        assert_eq!(
            state.value_get("count", b"a").unwrap(),
            None,
            "the old value went"
        );
        assert_eq!(
            state.value_get("weir:v2:count", b"a").unwrap(),
            Some(41u64.to_le_bytes().to_vec())
        );
        // Read again: no second migration.
        m.value_get(&mut state, "count", 2, b"a").ok().unwrap();
        assert_eq!(m.migrated, 1);
        // A key never set has no value at any version.
        assert!(
            m.value_get(&mut state, "count", 2, b"z")
                .ok()
                .unwrap()
                .is_none()
        );
        // A value the hook refuses fails with the state, the key and why.
        let Err(Failure::Refused(Refused(why))) = m.value_get(&mut state, "count", 2, b"b") else {
            panic!("b's value is not a count")
        };
        assert_eq!(
            why,
            "cannot migrate state `count` of key \"b\" from version 1 to 2: not a count: \"x\""
        );
        // Setting a key drops its old value without migrating it.
        m.value_set(&mut state, "count", 2, b"b", Some(&7u64.to_le_bytes()))
            .ok()
            .unwrap();
        assert_eq!(state.value_get("count", b"b").unwrap(), None);
        assert_eq!(m.migrated, 1);
    }

    #[test]
    fn a_map_is_migrated_whole_on_first_use() {
        let mut state = backend();
        for (mk, v) in [(&b"x"[..], &b"1"[..]), (b"y", b"2")] {
            state
                .map_put("count", b"k".to_vec(), mk.to_vec(), v.to_vec())
                .unwrap();
        }
        let mut m = migration();
        m.map_migrate(&mut state, "count", 2, b"k").ok().unwrap();
        assert!(state.map_entries("count", b"k").unwrap().is_empty());
        let now = state.map_entries("weir:v2:count", b"k").unwrap();
        assert_eq!(
            now,
            vec![
                (b"x".to_vec(), 1u64.to_le_bytes().to_vec()),
                (b"y".to_vec(), 2u64.to_le_bytes().to_vec())
            ]
        );
        assert_eq!(m.migrated, 2);
    }
}
