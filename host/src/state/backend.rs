//! A subtask's keyed state in the backend its job chose: hash maps in memory (counted against
//! `limits.state_mib`), or a redb database on local disk (`checkpoint.backend = "redb"`). The
//! host's state calls go through this, whichever it is.

use super::keyed::{EntryList, KeyedSnapshot, KeyedState, StateAccessError};
use super::redb_state::RedbState;
use std::ops::Range;
use std::path::Path;

/// Where a subtask keeps its keyed state, and (for incremental checkpoints) which keys changed
/// since its last snapshot.
#[derive(Debug)]
pub struct StateBackend {
    store: Store,
    max_parallelism: u32,
    /// Which keys changed between snapshots, when checkpoints are incremental.
    changes: Option<Changes>,
}

/// The keys changed since each snapshot a delta may still be based on, and since the last
/// snapshot: a delta against snapshot b holds every key changed after b.
#[derive(Debug)]
struct Changes {
    /// (snapshot id, the keys changed between the snapshot before it and it), oldest first.
    between: Vec<(u64, Dirty)>,
    /// The keys changed since the last snapshot.
    current: Dirty,
    /// The oldest snapshot a delta may be based on: the last full one, or the base of the
    /// last delta (changes before it are forgotten). `None` before the first snapshot.
    since: Option<u64>,
    /// What the marked keys take, roughly, and the most they may ([`DIRTY_LIMIT`]).
    bytes: usize,
    limit: usize,
    /// More keys changed than [`DIRTY_LIMIT`] allows: the marks were dropped, and the next
    /// snapshot must be full.
    overflowed: bool,
}

/// The most memory the keys marked as changed may take in one backend. Past it (a guest that
/// writes ever new keys, or a load that touches most of the state) tracking stops until the
/// next full snapshot, which is what so many changes call for anyway.
const DIRTY_LIMIT: usize = 64 << 20;

/// What a marked key costs besides its bytes: the hash set's slot and the `Vec`.
const DIRTY_OVERHEAD: usize = 40;

impl Changes {
    fn new(limit: usize) -> Self {
        Changes {
            between: Vec::new(),
            current: Dirty::default(),
            since: None,
            bytes: 0,
            limit,
            overflowed: false,
        }
    }

    fn mark(&mut self, map: bool, name: &str, key: &[u8]) {
        if self.overflowed {
            return;
        }
        let d = &mut self.current;
        let set = if map { &mut d.maps } else { &mut d.values };
        if Dirty::mark(set, &mut d.scratch, name, key) {
            self.bytes += 2 + name.len() + key.len() + DIRTY_OVERHEAD;
            if self.bytes > self.limit {
                self.between = Vec::new();
                self.current = Dirty::default();
                self.bytes = 0;
                self.overflowed = true;
            }
        }
    }
}

#[derive(Debug)]
enum Store {
    Memory(KeyedState),
    /// Boxed: an open write transaction makes it large, and the memory backend is the hot one.
    Redb(Box<RedbState>),
}

/// Keys changed since the last snapshot, each as its state name's length, the name and the
/// key (one byte string: a lookup of a key already marked allocates nothing).
#[derive(Debug, Default)]
struct Dirty {
    values: hashbrown::HashSet<Vec<u8>, foldhash::fast::RandomState>,
    maps: hashbrown::HashSet<Vec<u8>, foldhash::fast::RandomState>,
    scratch: Vec<u8>,
}

impl Dirty {
    fn mark(
        set: &mut hashbrown::HashSet<Vec<u8>, foldhash::fast::RandomState>,
        scratch: &mut Vec<u8>,
        name: &str,
        key: &[u8],
    ) -> bool {
        scratch.clear();
        scratch.extend_from_slice(&(name.len() as u16).to_be_bytes());
        scratch.extend_from_slice(name.as_bytes());
        scratch.extend_from_slice(key);
        !set.contains(scratch.as_slice()) && set.insert(scratch.clone())
    }

    /// The (state name, key) of a marked entry.
    fn split(entry: &[u8]) -> (&str, &[u8]) {
        let n = u16::from_be_bytes([entry[0], entry[1]]) as usize;
        let name = std::str::from_utf8(&entry[2..2 + n]).expect("marked from a &str");
        (name, &entry[2 + n..])
    }
}

/// A map-state entry: the key, the map key and the value.
pub type KeyedMapEntry = (Vec<u8>, Vec<u8>, Vec<u8>);

impl StateBackend {
    /// In memory, for the key groups `range` of `max_parallelism`, within `budget_bytes`;
    /// tracking changed keys when `incremental`.
    pub fn memory(
        range: Range<u32>,
        max_parallelism: u32,
        budget_bytes: usize,
        incremental: bool,
    ) -> Self {
        StateBackend {
            store: Store::Memory(KeyedState::new(range, max_parallelism, budget_bytes)),
            max_parallelism,
            changes: incremental.then(|| Changes::new(DIRTY_LIMIT)),
        }
    }

    /// In a new redb database at `path`.
    pub fn redb(
        path: &Path,
        range: Range<u32>,
        max_parallelism: u32,
        incremental: bool,
    ) -> Result<Self, StateAccessError> {
        Ok(StateBackend {
            store: Store::Redb(Box::new(RedbState::create(path, range, max_parallelism)?)),
            max_parallelism,
            changes: incremental.then(|| Changes::new(DIRTY_LIMIT)),
        })
    }

    fn mark_value(&mut self, name: &str, key: &[u8]) {
        if let Some(c) = &mut self.changes {
            c.mark(false, name, key);
        }
    }

    fn mark_map(&mut self, name: &str, key: &[u8]) {
        if let Some(c) = &mut self.changes {
            c.mark(true, name, key);
        }
    }

    /// The job's number of key groups.
    pub fn max_parallelism(&self) -> u32 {
        self.max_parallelism
    }

    /// Whether this backend can take a delta against its snapshot of checkpoint `base`: it
    /// tracks changes, took that snapshot since its last full one, and has not dropped its
    /// marks since.
    pub fn can_delta(&self, base: u64) -> bool {
        self.changes
            .as_ref()
            .is_some_and(|c| !c.overflowed && c.since.is_some_and(|since| since <= base))
    }

    /// How many keys a delta against checkpoint `base` would hold, at most (`None`: no delta
    /// can be taken, see [`can_delta`](Self::can_delta)).
    pub fn changed_keys(&self, base: u64) -> Option<usize> {
        let c = self.changes.as_ref().filter(|_| self.can_delta(base))?;
        let since = |d: &Dirty| d.values.len() + d.maps.len();
        Some(
            c.between
                .iter()
                .filter(|(at, _)| *at > base)
                .map(|(_, d)| since(d))
                .sum::<usize>()
                + since(&c.current),
        )
    }

    /// The snapshot for checkpoint `id`: everything (`base` is `None`), or only the keys
    /// changed since the snapshot of checkpoint `base` (incremental checkpoints; only when
    /// [`can_delta`](Self::can_delta) says so).
    pub fn snapshot(
        &mut self,
        id: u64,
        base: Option<u64>,
    ) -> Result<KeyedSnapshot, StateAccessError> {
        if let Some(b) = base
            && !self.can_delta(b)
        {
            return Err(StateAccessError::Storage(format!(
                "no delta against checkpoint {b} can be taken (changes are not tracked since)"
            )));
        }
        let Some(mut changes) = self.changes.take() else {
            return self.full();
        };
        let snap = match base {
            None => {
                changes.between.clear();
                changes.current = Dirty::default();
                changes.bytes = 0;
                changes.overflowed = false;
                changes.since = Some(id);
                self.full()
            }
            Some(b) => {
                changes.between.retain(|(at, _)| *at > b);
                changes.since = Some(b);
                let mut keys = Dirty::default();
                for (_, d) in &changes.between {
                    keys.values.extend(d.values.iter().cloned());
                    keys.maps.extend(d.maps.iter().cloned());
                }
                keys.values.extend(changes.current.values.iter().cloned());
                keys.maps.extend(changes.current.maps.iter().cloned());
                self.delta(&keys)
            }
        };
        changes
            .between
            .push((id, std::mem::take(&mut changes.current)));
        self.changes = Some(changes);
        snap
    }

    /// What `keys` hold now: present ones as entries, absent ones as removals.
    fn delta(&mut self, keys: &Dirty) -> Result<KeyedSnapshot, StateAccessError> {
        let mut delta = KeyedSnapshot::default();
        let max_parallelism = self.max_parallelism;
        for entry in &keys.values {
            let (name, key) = Dirty::split(entry);
            let kg = crate::plan::key_groups::key_group(key, max_parallelism);
            match self.value_get(name, key)? {
                Some(v) => delta.values.push((name.to_string(), kg, key.to_vec(), v)),
                None => delta
                    .removed_values
                    .push((name.to_string(), kg, key.to_vec())),
            }
        }
        for entry in &keys.maps {
            let (name, key) = Dirty::split(entry);
            let kg = crate::plan::key_groups::key_group(key, max_parallelism);
            delta
                .removed_maps
                .push((name.to_string(), kg, key.to_vec()));
            for (mk, v) in self.map_entries(name, key)? {
                delta.maps.push((name.to_string(), kg, key.to_vec(), mk, v));
            }
        }
        Ok(delta)
    }

    pub fn value_get(
        &mut self,
        name: &str,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StateAccessError> {
        match &mut self.store {
            Store::Memory(s) => Ok(s.value_get(name, key)?.map(<[u8]>::to_vec)),
            Store::Redb(s) => s.value_get(name, key),
        }
    }

    /// The values of `keys`, in order, each handed to `push` (`None`: no value).
    pub fn value_get_many(
        &mut self,
        name: &str,
        keys: &[&[u8]],
        mut push: impl FnMut(Option<&[u8]>),
    ) -> Result<(), StateAccessError> {
        match &mut self.store {
            Store::Memory(s) => {
                let state = s.value_state(name);
                for key in keys {
                    push(state.get(key)?);
                }
                Ok(())
            }
            Store::Redb(s) => s.value_get_many(name, keys.iter().map(|k| Ok(*k)), push),
        }
    }

    /// Sets (`Some`) or clears (`None`) each key of `entries`.
    pub fn value_set_many(
        &mut self,
        name: &str,
        entries: &[(&[u8], Option<&[u8]>)],
    ) -> Result<(), StateAccessError> {
        if self.changes.is_some() {
            for &(key, _) in entries {
                self.mark_value(name, key);
            }
        }
        match &mut self.store {
            Store::Memory(s) => {
                let mut state = s.value_state(name);
                for &(key, value) in entries {
                    match value {
                        Some(v) => state.set(key, v)?,
                        None => state.clear(key)?,
                    }
                }
                Ok(())
            }
            Store::Redb(s) => s.value_set_many(name, entries.iter().map(|&e| Ok(e))),
        }
    }

    pub fn map_get(
        &mut self,
        name: &str,
        key: &[u8],
        map_key: &[u8],
    ) -> Result<Option<Vec<u8>>, StateAccessError> {
        match &mut self.store {
            Store::Memory(s) => Ok(s.map_get(name, key, map_key)?.map(<[u8]>::to_vec)),
            Store::Redb(s) => s.map_get(name, key, map_key),
        }
    }

    pub fn map_put(
        &mut self,
        name: &str,
        key: Vec<u8>,
        map_key: Vec<u8>,
        value: Vec<u8>,
    ) -> Result<(), StateAccessError> {
        self.mark_map(name, &key);
        match &mut self.store {
            Store::Memory(s) => s.map_put(name, key, map_key, value),
            Store::Redb(s) => s.map_put(name, &key, &map_key, &value),
        }
    }

    pub fn map_remove(
        &mut self,
        name: &str,
        key: &[u8],
        map_key: &[u8],
    ) -> Result<(), StateAccessError> {
        self.mark_map(name, key);
        match &mut self.store {
            Store::Memory(s) => s.map_remove(name, key, map_key),
            Store::Redb(s) => s.map_remove(name, key, map_key),
        }
    }

    pub fn map_entries(&mut self, name: &str, key: &[u8]) -> Result<EntryList, StateAccessError> {
        match &mut self.store {
            Store::Memory(s) => s.map_entries(name, key),
            Store::Redb(s) => s.map_entries(name, key),
        }
    }

    pub fn map_clear(&mut self, name: &str, key: &[u8]) -> Result<(), StateAccessError> {
        self.mark_map(name, key);
        match &mut self.store {
            Store::Memory(s) => s.map_clear(name, key),
            Store::Redb(s) => s.map_clear(name, key),
        }
    }

    /// Every entry of map state `name`: (key, map key, value), in no particular order. It
    /// copies the whole state: for restores, not for the hot path.
    pub fn all_map_entries(&mut self, name: &str) -> Result<Vec<KeyedMapEntry>, StateAccessError> {
        let snap = self.full()?.collected()?;
        Ok((snap.maps.into_iter())
            .filter(|(n, ..)| n == name)
            .map(|(_, _, key, mk, v)| (key, mk, v))
            .collect())
    }

    /// A copy of every entry.
    fn full(&mut self) -> Result<KeyedSnapshot, StateAccessError> {
        match &mut self.store {
            Store::Memory(s) => Ok(s.snapshot()),
            Store::Redb(s) => s.snapshot(),
        }
    }

    /// Loads the entries of `snapshot` in this subtask's key groups.
    pub fn restore(&mut self, snapshot: &KeyedSnapshot) -> Result<(), StateAccessError> {
        match &mut self.store {
            Store::Memory(s) => s.restore(snapshot),
            Store::Redb(s) => s.restore(snapshot),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incremental_snapshot_holds_what_changed_since_its_base() {
        let mut s = StateBackend::memory(0..128, 128, usize::MAX, true);
        let set = |s: &mut StateBackend, k: &str, v: &str| {
            s.value_set_many("v", &[(k.as_bytes(), Some(v.as_bytes()))])
                .unwrap()
        };
        for i in 0..100 {
            set(&mut s, &format!("k{i}"), "0");
        }
        s.map_put("m", b"mk".to_vec(), b"a".to_vec(), b"1".to_vec())
            .unwrap();
        let full = s.snapshot(1, None).unwrap();
        assert_eq!(full.collected().unwrap().values.len(), 100);
        // Between 1 and 2: one key changes, one is cleared, the map gains an entry.
        set(&mut s, "k1", "1");
        s.value_set_many("v", &[(b"k2".as_slice(), None)]).unwrap();
        s.map_put("m", b"mk".to_vec(), b"b".to_vec(), b"2".to_vec())
            .unwrap();
        let d2 = s.snapshot(2, Some(1)).unwrap();
        assert_eq!(d2.values.len(), 1);
        assert_eq!(d2.removed_values.len(), 1);
        assert_eq!((d2.removed_maps.len(), d2.maps.len()), (1, 2));
        // Checkpoint 2 is aborted: 3 builds on 1 again, with 2's changes and its own.
        set(&mut s, "k3", "3");
        let d3 = s.snapshot(3, Some(1)).unwrap();
        assert_eq!(d3.values.len(), 2, "k1 and k3");
        // Restored on the full snapshot, the delta gives what a full snapshot gives.
        let mut restored = StateBackend::memory(0..128, 128, usize::MAX, false);
        restored.restore(&full).unwrap();
        restored.restore(&d3).unwrap();
        let mut restored = restored.snapshot(0, None).unwrap().collected().unwrap();
        let mut whole = s.snapshot(4, None).unwrap().collected().unwrap();
        for snap in [&mut restored, &mut whole] {
            snap.values.sort();
            snap.maps.sort();
        }
        assert_eq!(restored, whole);
        // 3 was aborted too: 5 builds on 4, then (5 aborted) 6 on 4 again; none on 1 any more.
        set(&mut s, "k5", "5");
        assert!(s.can_delta(4));
        assert_eq!(s.snapshot(5, Some(4)).unwrap().values.len(), 1);
        set(&mut s, "k6", "6");
        assert!(s.can_delta(4) && !s.can_delta(1));
        assert_eq!(s.snapshot(6, Some(4)).unwrap().values.len(), 2);
        assert!(s.snapshot(7, Some(1)).is_err());
        // Without incremental checkpoints, every snapshot is full.
        let mut plain = StateBackend::memory(0..128, 128, usize::MAX, false);
        set(&mut plain, "a", "1");
        assert!(!plain.can_delta(0));
        let snap = plain.snapshot(1, None).unwrap();
        assert_eq!(snap.collected().unwrap().values.len(), 1);
    }

    #[test]
    fn too_many_changed_keys_make_the_next_snapshot_full() {
        let mut s = StateBackend::memory(0..128, 128, usize::MAX, true);
        s.changes = Some(Changes::new(10_000));
        assert!(!s.can_delta(0), "no snapshot yet");
        s.snapshot(1, None).unwrap();
        // A guest writing and clearing ever new keys: the state stays empty, the marks do not.
        for i in 0..1000u32 {
            let k = i.to_be_bytes();
            s.value_set_many("v", &[(k.as_slice(), Some(b"x".as_slice()))])
                .unwrap();
            s.value_set_many("v", &[(k.as_slice(), None)]).unwrap();
        }
        let c = s.changes.as_ref().unwrap();
        assert!(c.overflowed && c.current.values.is_empty() && c.bytes == 0);
        assert!(!s.can_delta(1));
        // The full snapshot that follows starts tracking again.
        assert!(s.snapshot(2, None).unwrap().is_empty());
        s.value_set_many("v", &[(b"a".as_slice(), Some(b"1".as_slice()))])
            .unwrap();
        assert!(s.can_delta(2));
        assert_eq!(s.snapshot(3, Some(2)).unwrap().values.len(), 1);
    }
}
