//! Keyed state of one operator subtask, in memory, stored per key group so that a key group's
//! state can move to another subtask when the job is rescaled. What it holds is counted against
//! a budget (`limits.state_mib`): key and value bytes plus a fixed overhead per entry, so that an
//! operator cannot make the host grow without bound.

use crate::plan::key_groups;
use hashbrown::{HashTable, hash_table};
use smallvec::SmallVec;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use weir_batch::same_bytes as same_key;

/// A state call the subtask must refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateAccessError {
    /// The key belongs to another subtask's key groups.
    KeyOutsideKeyGroups {
        key_group: u32,
        range: Range<u32>,
        key_preview: String,
    },
    /// The write would take the subtask's state past its budget.
    OverBudget { state: String, limit: usize },
    /// The state's storage failed (the redb backend: a full disk, say).
    Storage(String),
}

impl fmt::Display for StateAccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateAccessError::KeyOutsideKeyGroups {
                key_group,
                range,
                key_preview,
            } => write!(
                f,
                "key {key_preview} is in key group {key_group}, outside this subtask's key groups {}..{}; \
                 keyed state needs the operator's input partitioned by hash on the same key",
                range.start, range.end
            ),
            StateAccessError::Storage(why) => write!(f, "keyed state storage failed: {why}"),
            StateAccessError::OverBudget { state, limit } => write!(
                f,
                "keyed state would grow past limits.state_mib = {} MiB in this subtask (writing state {state:?}); \
                 raise the limit, or keep less state per key",
                limit >> 20
            ),
        }
    }
}

/// What an entry costs besides its key and value bytes: its table slot with the hash and the
/// inline buffers, or a map entry's tree node.
const ENTRY_BYTES: usize = 64;

/// The bytes a subtask's state holds, against its budget.
#[derive(Debug)]
struct Budget {
    used: usize,
    limit: usize,
}

impl Budget {
    fn charge(&mut self, bytes: usize, state: &str) -> Result<(), StateAccessError> {
        let used = self.used.saturating_add(bytes);
        if used > self.limit {
            return Err(over_budget(state, self.limit));
        }
        self.used = used;
        Ok(())
    }

    fn release(&mut self, bytes: usize) {
        self.used = self.used.saturating_sub(bytes);
    }

    /// Charges or releases the change of a value's length from `old` to `new` bytes.
    fn resize(&mut self, old: usize, new: usize, state: &str) -> Result<(), StateAccessError> {
        if new > old {
            self.charge(new - old, state)
        } else {
            self.release(old - new);
            Ok(())
        }
    }
}

#[cold]
#[inline(never)]
fn over_budget(state: &str, limit: usize) -> StateAccessError {
    StateAccessError::OverBudget {
        state: state.to_string(),
        limit,
    }
}

/// The cost of one key's entry.
fn entry_cost(key: &[u8], value_len: usize) -> usize {
    ENTRY_BYTES + key.len() + value_len
}

/// The cost of a whole map-state entry: the key's entry and every map entry.
fn map_cost(key: &[u8], entries: &MapEntries) -> usize {
    entries
        .iter()
        .map(|(k, v)| entry_cost(k, v.len()))
        .sum::<usize>()
        + entry_cost(key, 0)
}

/// Per state name; lookups by name happen once per state call, not per key.
type Names<V> = hashbrown::HashMap<String, Table<V>, foldhash::fast::RandomState>;
/// Keys and values: held inline up to 16 bytes (most keys and counters), so that a lookup reads
/// one table entry instead of chasing two heap pointers.
type Bytes = SmallVec<[u8; 16]>;
/// The entries of one key's map state, ordered by map key.
type MapEntries = BTreeMap<Vec<u8>, Vec<u8>>;
/// Key-value pairs as map-state calls return them.
pub type EntryList = Vec<(Vec<u8>, Vec<u8>)>;

/// One key's entry: the key, its key-group hash (computed once, reused as the table's hash) and
/// its value.
#[derive(Debug, Clone)]
struct Entry<V> {
    hash: u64,
    key: Bytes,
    value: V,
}

/// One named state: a hash table per key group of the subtask.
#[derive(Debug)]
struct Table<V> {
    groups: Vec<Group<V>>,
}

/// One key group's entries of a state. A snapshot shares them (copy-on-write, as Flink's
/// `CopyOnWriteStateMap` does per entry, here per key group): the first write to a shared group
/// after a snapshot copies it, unless the checkpoint has already written it out.
#[derive(Debug)]
enum Group<V> {
    Owned(HashTable<Entry<V>>),
    Shared(Arc<HashTable<Entry<V>>>),
}

/// The table's hash of a key, from its key-group hash. The keys of one key group share the
/// key-group hash's residue modulo max parallelism, which for a power of two is its low bits:
/// the very bits a hash table picks buckets by. The high half is independent of the key group.
fn table_hash(hash: u64) -> u64 {
    hash.rotate_left(32)
}

/// Where a key's entry lives: its key-group hash and its key group's index in the subtask.
#[derive(Clone, Copy, Debug)]
pub(super) struct Slot {
    pub(super) hash: u64,
    pub(super) group: usize,
}

impl<V: Clone> Table<V> {
    fn new(groups: usize) -> Self {
        Table {
            groups: (0..groups)
                .map(|_| Group::Owned(HashTable::new()))
                .collect(),
        }
    }

    fn group(&self, g: usize) -> &HashTable<Entry<V>> {
        match &self.groups[g] {
            Group::Owned(t) => t,
            Group::Shared(t) => t,
        }
    }

    /// Key group `g`'s entries, to change: copied first if a snapshot still holds them.
    #[inline]
    fn group_mut(&mut self, g: usize) -> &mut HashTable<Entry<V>> {
        if matches!(self.groups[g], Group::Shared(_)) {
            self.unshare(g);
        }
        match &mut self.groups[g] {
            Group::Owned(t) => t,
            Group::Shared(_) => unreachable!("unshared above"),
        }
    }

    #[cold]
    #[inline(never)]
    fn unshare(&mut self, g: usize) {
        let owned = Group::Owned(HashTable::new());
        if let Group::Shared(t) = std::mem::replace(&mut self.groups[g], owned) {
            self.groups[g] = Group::Owned(Arc::try_unwrap(t).unwrap_or_else(|t| (*t).clone()));
        }
    }

    /// Shares every key group with a snapshot: its tables, by key group.
    fn share(&mut self) -> SharedGroups<V> {
        self.groups
            .iter_mut()
            .map(|group| {
                let shared = match std::mem::replace(group, Group::Owned(HashTable::new())) {
                    Group::Owned(t) => Arc::new(t),
                    Group::Shared(t) => t,
                };
                *group = Group::Shared(shared.clone());
                shared
            })
            .collect()
    }

    fn get(&self, slot: Slot, key: &[u8]) -> Option<&V> {
        self.group(slot.group)
            .find(table_hash(slot.hash), |e| same_key(&e.key, key))
            .map(|e| &e.value)
    }

    fn get_mut(&mut self, slot: Slot, key: &[u8]) -> Option<&mut V> {
        self.group_mut(slot.group)
            .find_mut(table_hash(slot.hash), |e| same_key(&e.key, key))
            .map(|e| &mut e.value)
    }

    /// The value of `key`, inserted with `init` if missing.
    fn entry(&mut self, slot: Slot, key: &[u8], init: impl FnOnce() -> V) -> &mut V {
        let entry = self
            .group_mut(slot.group)
            .entry(
                table_hash(slot.hash),
                |e| same_key(&e.key, key),
                |e| table_hash(e.hash),
            )
            .or_insert_with(|| Entry {
                hash: slot.hash,
                key: Bytes::from_slice(key),
                value: init(),
            });
        &mut entry.into_mut().value
    }

    /// Removes `key`'s entry, returning its value.
    fn remove(&mut self, slot: Slot, key: &[u8]) -> Option<V> {
        let e = self
            .group_mut(slot.group)
            .find_entry(table_hash(slot.hash), |e| same_key(&e.key, key))
            .ok()?;
        Some(e.remove().0.value)
    }
}

/// The keyed state of one subtask: named value and map states, each stored per key group of the
/// subtask.
#[derive(Debug)]
pub struct KeyedState {
    range: Range<u32>,
    max_parallelism: u32,
    values: Names<Bytes>,
    maps: Names<MapEntries>,
    budget: Budget,
}

fn preview(key: &[u8]) -> String {
    let shown = &key[..key.len().min(32)];
    let text = String::from_utf8_lossy(shown);
    if key.len() > 32 {
        format!("{text:?}...")
    } else {
        format!("{text:?}")
    }
}

/// The table called `name`, created empty on first use (the name is copied only then).
fn table<'a, V: Clone>(names: &'a mut Names<V>, name: &str, groups: usize) -> &'a mut Table<V> {
    names.entry_ref(name).or_insert_with(|| Table::new(groups))
}

impl KeyedState {
    /// Empty state for the key groups `range` (of `max_parallelism`), holding at most
    /// `budget_bytes` (see [`ENTRY_BYTES`]).
    pub fn new(range: Range<u32>, max_parallelism: u32, budget_bytes: usize) -> Self {
        KeyedState {
            range,
            max_parallelism,
            values: Names::default(),
            maps: Names::default(),
            budget: Budget {
                used: 0,
                limit: budget_bytes,
            },
        }
    }

    /// The bytes counted against the budget.
    pub fn used_bytes(&self) -> usize {
        self.budget.used
    }

    fn slot(&self, key: &[u8]) -> Result<Slot, StateAccessError> {
        slot_in(&self.range, self.max_parallelism, key)
    }

    /// The value state `name`, for any number of calls on it (the name is looked up once).
    pub fn value_state<'a>(&'a mut self, name: &'a str) -> ValueStateMut<'a> {
        let groups = self.range.len();
        ValueStateMut {
            name,
            table: table(&mut self.values, name, groups),
            range: &self.range,
            max_parallelism: self.max_parallelism,
            budget: &mut self.budget,
        }
    }

    pub fn value_get(&mut self, name: &str, key: &[u8]) -> Result<Option<&[u8]>, StateAccessError> {
        let slot = self.slot(key)?;
        Ok(self
            .values
            .get(name)
            .and_then(|t| t.get(slot, key))
            .map(Bytes::as_slice))
    }

    pub fn value_set(
        &mut self,
        name: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), StateAccessError> {
        self.value_state(name).set(key, value)
    }

    pub fn value_clear(&mut self, name: &str, key: &[u8]) -> Result<(), StateAccessError> {
        self.value_state(name).clear(key)
    }

    pub fn map_get(
        &mut self,
        name: &str,
        key: &[u8],
        map_key: &[u8],
    ) -> Result<Option<&[u8]>, StateAccessError> {
        let slot = self.slot(key)?;
        Ok(self
            .maps
            .get(name)
            .and_then(|t| t.get(slot, key))
            .and_then(|m| m.get(map_key))
            .map(Vec::as_slice))
    }

    pub fn map_put(
        &mut self,
        name: &str,
        key: Vec<u8>,
        map_key: Vec<u8>,
        value: Vec<u8>,
    ) -> Result<(), StateAccessError> {
        let slot = self.slot(&key)?;
        let groups = self.range.len();
        let table = table(&mut self.maps, name, groups);
        let (old, new) = match table.get(slot, &key) {
            None => (0, entry_cost(&key, 0) + entry_cost(&map_key, value.len())),
            Some(m) => match m.get(&map_key) {
                None => (0, entry_cost(&map_key, value.len())),
                Some(v) => (v.len(), value.len()),
            },
        };
        self.budget.resize(old, new, name)?;
        table
            .entry(slot, &key, MapEntries::new)
            .insert(map_key, value);
        Ok(())
    }

    pub fn map_remove(
        &mut self,
        name: &str,
        key: &[u8],
        map_key: &[u8],
    ) -> Result<(), StateAccessError> {
        let slot = self.slot(key)?;
        if let Some(t) = self.maps.get_mut(name)
            && let Some(m) = t.get_mut(slot, key)
        {
            if let Some(v) = m.remove(map_key) {
                self.budget.release(entry_cost(map_key, v.len()));
            }
            if m.is_empty() {
                t.remove(slot, key);
                self.budget.release(entry_cost(key, 0));
            }
        }
        Ok(())
    }

    pub fn map_entries(&mut self, name: &str, key: &[u8]) -> Result<EntryList, StateAccessError> {
        let slot = self.slot(key)?;
        let m = self.maps.get(name).and_then(|t| t.get(slot, key));
        Ok(
            m.map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
        )
    }

    pub fn map_clear(&mut self, name: &str, key: &[u8]) -> Result<(), StateAccessError> {
        let slot = self.slot(key)?;
        if let Some(t) = self.maps.get_mut(name)
            && let Some(m) = t.remove(slot, key)
        {
            self.budget.release(map_cost(key, &m));
        }
        Ok(())
    }
}

/// A value-state entry in a snapshot: (state name, key group, key, value).
pub type ValueEntry = (String, u32, Vec<u8>, Vec<u8>);
/// A map-state entry in a snapshot: (state name, key group, key, map key, value).
pub type MapEntry = (String, u32, Vec<u8>, Vec<u8>, Vec<u8>);

/// A copy of one subtask's keyed state, every entry with its key group: what a checkpoint
/// stores, and what a subtask of any parallelism restores the key groups it owns from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyedSnapshot {
    pub values: Vec<ValueEntry>,
    pub maps: Vec<MapEntry>,
    /// In an incremental snapshot: value-state keys cleared since the previous snapshot,
    /// as (state name, key group, key).
    pub removed_values: Vec<KeyRef>,
    /// In an incremental snapshot: map-state keys whose maps changed since the previous
    /// snapshot; each is replaced whole by its entries in `maps` (none: it was cleared).
    pub removed_maps: Vec<KeyRef>,
    /// Entries still to be read from where they live: the redb backend's full snapshot is a
    /// read transaction of its database, read while the checkpoint file is written, so the task
    /// pauses only to commit and goes on writing meanwhile.
    pub deferred: Option<Deferred>,
}

/// Entries a snapshot reads from where they live, when its file is written.
pub trait EntrySource: Send + Sync {
    /// How many entries it holds.
    fn len(&self) -> u64;
    /// Hands its entries to `apply`, in batches.
    fn read(
        &self,
        apply: &mut dyn FnMut(&KeyedSnapshot) -> Result<(), String>,
    ) -> Result<(), String>;
}

/// A shared [`EntrySource`]; snapshots holding one are equal only when they hold the same.
#[derive(Clone)]
pub struct Deferred(pub std::sync::Arc<dyn EntrySource>);

impl PartialEq for Deferred {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Deferred {}

impl fmt::Debug for Deferred {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Deferred({} entries)", self.0.len())
    }
}

/// A state's tables by key group, shared with the state.
type SharedGroups<V> = Vec<Arc<HashTable<Entry<V>>>>;

/// The entries of a [`KeyedState`] as of a snapshot: its key groups' tables, shared.
struct MemoryView {
    /// The first key group and how many there are.
    start: u32,
    groups: usize,
    /// Per state name (in name order): its tables by key group.
    values: Vec<(String, SharedGroups<Bytes>)>,
    maps: Vec<(String, SharedGroups<MapEntries>)>,
    entries: u64,
}

/// Entries handed over at once when a snapshot's entries are read in batches (from the working
/// state, or from a checkpoint file).
pub(crate) const BATCH: usize = 8192;

impl EntrySource for MemoryView {
    fn len(&self) -> u64 {
        self.entries
    }

    /// By key group, then state name (the file's chunks need no other order).
    fn read(
        &self,
        apply: &mut dyn FnMut(&KeyedSnapshot) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut batch = KeyedSnapshot::default();
        let mut flush = |batch: &mut KeyedSnapshot, at_least: usize| {
            if batch.values.len() + batch.maps.len() >= at_least.max(1) {
                apply(batch)?;
                batch.values.clear();
                batch.maps.clear();
            }
            Ok::<_, String>(())
        };
        for g in 0..self.groups {
            let kg = self.start + g as u32;
            for (name, groups) in &self.values {
                for e in groups[g].iter() {
                    batch
                        .values
                        .push((name.clone(), kg, e.key.to_vec(), e.value.to_vec()));
                    flush(&mut batch, BATCH)?;
                }
            }
            for (name, groups) in &self.maps {
                for e in groups[g].iter() {
                    for (mk, v) in &e.value {
                        batch
                            .maps
                            .push((name.clone(), kg, e.key.to_vec(), mk.clone(), v.clone()));
                        flush(&mut batch, BATCH)?;
                    }
                }
            }
        }
        flush(&mut batch, 1)
    }
}

/// A key of some state in a snapshot: (state name, key group, key).
pub type KeyRef = (String, u32, Vec<u8>);

impl KeyedSnapshot {
    /// Whether it holds nothing at all.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
            && self.maps.is_empty()
            && self.removed_values.is_empty()
            && self.removed_maps.is_empty()
            && self.deferred.as_ref().is_none_or(|d| d.0.len() == 0)
    }

    /// How many entries (values and map entries) it holds, deferred ones included.
    pub fn entries(&self) -> u64 {
        (self.values.len() + self.maps.len()) as u64
            + self.deferred.as_ref().map_or(0, |d| d.0.len())
    }

    /// Hands the deferred entries, if any, to `restore` in batches.
    pub fn read_deferred(
        &self,
        mut restore: impl FnMut(&KeyedSnapshot) -> Result<(), StateAccessError>,
    ) -> Result<(), StateAccessError> {
        match &self.deferred {
            Some(d) => {
                d.0.read(&mut |batch| restore(batch).map_err(|e| e.to_string()))
                    .map_err(StateAccessError::Storage)
            }
            None => Ok(()),
        }
    }

    /// The same entries, the deferred ones read out into `values` and `maps`.
    pub fn collected(&self) -> Result<KeyedSnapshot, StateAccessError> {
        let mut all = KeyedSnapshot {
            deferred: None,
            ..self.clone()
        };
        self.read_deferred(|batch| {
            all.values.extend_from_slice(&batch.values);
            all.maps.extend_from_slice(&batch.maps);
            Ok(())
        })?;
        Ok(all)
    }
}

impl KeyedState {
    /// A snapshot of every entry (the synchronous part of a checkpoint): it shares the key
    /// groups' tables, copy-on-write, and reads them when the checkpoint file is written, so
    /// the task pauses for a pointer per key group and state, whatever the state's size.
    pub fn snapshot(&mut self) -> KeyedSnapshot {
        let mut view = MemoryView {
            start: self.range.start,
            groups: self.range.len(),
            values: Vec::new(),
            maps: Vec::new(),
            entries: 0,
        };
        let mut values: Vec<_> = self.values.iter_mut().collect();
        values.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (name, table) in values {
            let shared = table.share();
            view.entries += shared.iter().map(|g| g.len() as u64).sum::<u64>();
            view.values.push((name.clone(), shared));
        }
        let mut maps: Vec<_> = self.maps.iter_mut().collect();
        maps.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (name, table) in maps {
            let shared = table.share();
            view.entries += shared
                .iter()
                .flat_map(|g| g.iter())
                .map(|e| e.value.len() as u64)
                .sum::<u64>();
            view.maps.push((name.clone(), shared));
        }
        KeyedSnapshot {
            deferred: (view.entries > 0).then(|| Deferred(Arc::new(view))),
            ..KeyedSnapshot::default()
        }
    }

    /// Loads the entries of `snapshot` that fall in this subtask's key groups (a snapshot of
    /// another parallelism holds others too), counting them against the budget.
    pub fn restore(&mut self, snapshot: &KeyedSnapshot) -> Result<(), StateAccessError> {
        for (name, kg, key) in &snapshot.removed_values {
            if self.range.contains(kg) {
                self.value_clear(name, key)?;
            }
        }
        for (name, kg, key) in &snapshot.removed_maps {
            if self.range.contains(kg) {
                self.map_clear(name, key)?;
            }
        }
        for (name, kg, key, value) in &snapshot.values {
            if self.range.contains(kg) {
                self.value_state(name).set(key, value)?;
            }
        }
        for (name, kg, key, map_key, value) in &snapshot.maps {
            if self.range.contains(kg) {
                self.map_put(name, key.clone(), map_key.clone(), value.clone())?;
            }
        }
        snapshot.read_deferred(|batch| self.restore(batch))
    }
}

/// Where `key` lives among the key groups `range` (of `max_parallelism`), or why it cannot.
#[inline]
pub(super) fn slot_in(
    range: &Range<u32>,
    max_parallelism: u32,
    key: &[u8],
) -> Result<Slot, StateAccessError> {
    let hash = key_groups::hash(key);
    let kg = key_groups::key_group_of_hash(hash, max_parallelism);
    if !range.contains(&kg) {
        return Err(outside(range, kg, key));
    }
    Ok(Slot {
        hash,
        group: (kg - range.start) as usize,
    })
}

/// The error for a key outside the subtask's key groups (apart, so that the lookup stays small).
#[cold]
#[inline(never)]
fn outside(range: &Range<u32>, key_group: u32, key: &[u8]) -> StateAccessError {
    StateAccessError::KeyOutsideKeyGroups {
        key_group,
        range: range.clone(),
        key_preview: preview(key),
    }
}

/// One value state of a subtask, its name resolved: for the batched calls, which touch the same
/// state for many keys.
pub struct ValueStateMut<'a> {
    name: &'a str,
    table: &'a mut Table<Bytes>,
    range: &'a Range<u32>,
    max_parallelism: u32,
    budget: &'a mut Budget,
}

impl ValueStateMut<'_> {
    fn slot(&self, key: &[u8]) -> Result<Slot, StateAccessError> {
        slot_in(self.range, self.max_parallelism, key)
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<&[u8]>, StateAccessError> {
        let slot = self.slot(key)?;
        Ok(self.table.get(slot, key).map(Bytes::as_slice))
    }

    /// Sets a value, reusing the stored key and buffer when the key already has one.
    pub fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), StateAccessError> {
        let slot = self.slot(key)?;
        let entry = self.table.group_mut(slot.group).entry(
            table_hash(slot.hash),
            |e| same_key(&e.key, key),
            |e| table_hash(e.hash),
        );
        match entry {
            hash_table::Entry::Occupied(mut e) => {
                let stored = &mut e.get_mut().value;
                if stored.len() == value.len() {
                    // The usual update (a counter, a fixed-size value): in place, nothing to count.
                    stored.copy_from_slice(value);
                } else {
                    self.budget.resize(stored.len(), value.len(), self.name)?;
                    stored.clear();
                    stored.extend_from_slice(value);
                }
            }
            hash_table::Entry::Vacant(e) => {
                self.budget
                    .charge(entry_cost(key, value.len()), self.name)?;
                e.insert(Entry {
                    hash: slot.hash,
                    key: Bytes::from_slice(key),
                    value: Bytes::from_slice(value),
                });
            }
        }
        Ok(())
    }

    pub fn clear(&mut self, key: &[u8]) -> Result<(), StateAccessError> {
        let slot = self.slot(key)?;
        if let Some(v) = self.table.remove(slot, key) {
            self.budget.release(entry_cost(key, v.len()));
        }
        Ok(())
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn owned_key(state: &KeyedState, prefix: &str) -> Vec<u8> {
        (0..)
            .map(|i| format!("{prefix}{i}").into_bytes())
            .find(|k| {
                state
                    .range
                    .contains(&key_groups::key_group(k, state.max_parallelism))
            })
            .unwrap()
    }

    #[test]
    fn keeps_values_and_maps_per_name_and_key() {
        let mut s = KeyedState::new(0..128, 128, usize::MAX);
        s.value_set("count", b"a", b"1").unwrap();
        s.value_set("other", b"a", b"x").unwrap();
        assert_eq!(s.value_get("count", b"a").unwrap(), Some(&b"1"[..]));
        assert_eq!(s.value_get("count", b"b").unwrap(), None);
        s.value_clear("count", b"a").unwrap();
        assert_eq!(s.value_get("count", b"a").unwrap(), None);
        assert_eq!(s.value_get("other", b"a").unwrap(), Some(&b"x"[..]));

        s.map_put("m", b"k".to_vec(), b"2".to_vec(), b"two".to_vec())
            .unwrap();
        s.map_put("m", b"k".to_vec(), b"1".to_vec(), b"one".to_vec())
            .unwrap();
        assert_eq!(s.map_get("m", b"k", b"1").unwrap(), Some(&b"one"[..]));
        let entries = s.map_entries("m", b"k").unwrap();
        assert_eq!(
            entries,
            vec![
                (b"1".to_vec(), b"one".to_vec()),
                (b"2".to_vec(), b"two".to_vec())
            ]
        );
        s.map_remove("m", b"k", b"1").unwrap();
        assert_eq!(s.map_entries("m", b"k").unwrap().len(), 1);
        s.map_clear("m", b"k").unwrap();
        assert!(s.map_entries("m", b"k").unwrap().is_empty());
    }

    #[test]
    fn keys_of_every_length_compare_by_every_byte() {
        let a: Vec<u8> = (0..20).collect();
        for n in 0..=20 {
            assert!(same_key(&a[..n], &a[..n]));
            assert!(!same_key(&a[..n], &a[..n.saturating_sub(1)]) || n == 0);
            for i in 0..n {
                let mut b = a[..n].to_vec();
                b[i] ^= 1;
                assert!(!same_key(&a[..n], &b), "n {n} i {i}");
            }
        }
    }

    #[test]
    fn many_keys_per_key_group_through_one_state_handle() {
        let range = key_groups::range_of(0, 2, 128);
        let mut s = KeyedState::new(range.clone(), 128, usize::MAX);
        let mut keys: Vec<Vec<u8>> = (0..20_000)
            .map(|i| format!("w{i}").into_bytes())
            .filter(|k| range.contains(&key_groups::key_group(k, 128)))
            .collect();
        keys.truncate(keys.len() & !1);
        let mut counts = s.value_state("count");
        for (i, k) in keys.iter().enumerate() {
            counts.set(k, &i.to_le_bytes()).unwrap();
        }
        for (i, k) in keys.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
            counts.set(k, &(i + 1).to_le_bytes()).unwrap();
            counts.clear(&keys[i + 1]).unwrap();
        }
        for (i, k) in keys.iter().enumerate() {
            let want = (i % 2 == 0).then(|| (i + 1).to_le_bytes());
            assert_eq!(
                s.value_get("count", k).unwrap(),
                want.as_ref().map(|w| &w[..])
            );
        }
        assert_eq!(s.value_get("other", &keys[0]).unwrap(), None);
    }

    #[test]
    fn counts_what_it_holds_against_its_budget() {
        let cost = |key: &[u8], value: usize| ENTRY_BYTES + key.len() + value;
        let limit = 4 * cost(b"k0", 100);
        let mut s = KeyedState::new(0..128, 128, limit);
        let mut v = s.value_state("v");
        for k in [b"k0", b"k1", b"k2"] {
            v.set(k, &[1; 100]).unwrap();
        }
        // Overwriting in place, shrinking and growing back cost nothing new.
        v.set(b"k0", &[2; 100]).unwrap();
        v.set(b"k0", &[3; 10]).unwrap();
        v.set(b"k0", &[4; 100]).unwrap();
        assert_eq!(s.used_bytes(), 3 * cost(b"k0", 100));
        // Map state counts the key's entry and each map entry.
        s.map_put("m", b"k".to_vec(), b"a".to_vec(), vec![0; 20])
            .unwrap();
        assert_eq!(
            s.used_bytes(),
            3 * cost(b"k0", 100) + cost(b"k", 0) + cost(b"a", 20)
        );
        // The next value would pass the budget: refused, naming the state, nothing changed.
        let before = s.used_bytes();
        let e = s.value_set("big", b"k3", &[0; 100]).unwrap_err();
        assert_eq!(
            e,
            StateAccessError::OverBudget {
                state: "big".into(),
                limit
            }
        );
        assert!(e.to_string().contains("writing state \"big\""), "{e}");
        assert_eq!(s.value_get("big", b"k3").unwrap(), None);
        assert_eq!(s.used_bytes(), before);
        // Clearing gives the bytes back, to the last one.
        s.map_remove("m", b"k", b"a").unwrap();
        s.value_clear("v", b"k1").unwrap();
        s.value_set("big", b"k3", &[0; 100]).unwrap();
        s.map_put("m", b"k".to_vec(), b"a".to_vec(), vec![0; 5])
            .unwrap();
        s.map_clear("m", b"k").unwrap();
        for k in [b"k0", b"k2"] {
            s.value_clear("v", k).unwrap();
        }
        s.value_clear("big", b"k3").unwrap();
        assert_eq!(s.used_bytes(), 0);
    }

    #[test]
    fn a_snapshot_keeps_the_state_as_of_its_taking_while_the_state_changes() {
        let mut s = KeyedState::new(0..128, 128, usize::MAX);
        for i in 0..1000u32 {
            s.value_set("count", format!("k{i}").as_bytes(), &i.to_le_bytes())
                .unwrap();
        }
        s.map_put("m", b"k".to_vec(), b"a".to_vec(), b"1".to_vec())
            .unwrap();
        let snap = s.snapshot();
        // Every kind of change after it: updates in place, inserts, clears, map changes.
        for i in 0..1000u32 {
            s.value_set("count", format!("k{i}").as_bytes(), &(i + 1).to_le_bytes())
                .unwrap();
        }
        s.value_set("count", b"new", b"x").unwrap();
        s.value_clear("count", b"k7").unwrap();
        s.map_put("m", b"k".to_vec(), b"b".to_vec(), b"2".to_vec())
            .unwrap();
        let mut then = snap.collected().unwrap();
        assert_eq!((then.values.len(), then.maps.len()), (1000, 1));
        then.values.sort();
        for (name, kg, key, value) in &then.values {
            let i: u32 = std::str::from_utf8(&key[1..]).unwrap().parse().unwrap();
            assert_eq!(
                (name.as_str(), value.as_slice()),
                ("count", &i.to_le_bytes()[..])
            );
            assert_eq!(*kg, key_groups::key_group(key, 128));
        }
        // The state went on: a later snapshot sees the changes.
        let now = s.snapshot().collected().unwrap();
        assert_eq!((now.values.len(), now.maps.len()), (1000, 2));
        assert_eq!(
            s.value_get("count", b"k8").unwrap(),
            Some(&9u32.to_le_bytes()[..])
        );
        // Dropping the snapshots leaves the state whole.
        drop((snap, then, now));
        s.value_set("count", b"k8", b"y").unwrap();
        assert_eq!(s.value_get("count", b"k8").unwrap(), Some(&b"y"[..]));
    }

    #[test]
    fn a_snapshot_restores_by_key_group_at_any_parallelism() {
        let mut whole = KeyedState::new(0..128, 128, usize::MAX);
        for i in 0..500u32 {
            let key = format!("k{i}").into_bytes();
            whole.value_set("count", &key, &i.to_le_bytes()).unwrap();
            whole
                .map_put("seen", key, b"at".to_vec(), i.to_be_bytes().to_vec())
                .unwrap();
        }
        let snap = whole.snapshot();
        assert_eq!(snap.entries(), 1000);
        let copy = snap.collected().unwrap();
        assert_eq!((copy.values.len(), copy.maps.len()), (500, 500));
        // Three subtasks take the snapshot apart; together they hold all of it, once.
        let mut parts: Vec<KeyedState> = (0..3)
            .map(|s| KeyedState::new(key_groups::range_of(s, 3, 128), 128, usize::MAX))
            .collect();
        for p in &mut parts {
            p.restore(&snap).unwrap();
        }
        for i in 0..500u32 {
            let key = format!("k{i}").into_bytes();
            let owner = key_groups::subtask_of(key_groups::key_group(&key, 128), 3, 128) as usize;
            let p = &mut parts[owner];
            assert_eq!(
                p.value_get("count", &key).unwrap(),
                Some(&i.to_le_bytes()[..])
            );
            assert_eq!(
                p.map_get("seen", &key, b"at").unwrap(),
                Some(&i.to_be_bytes()[..])
            );
        }
        let total: usize = (parts.iter_mut())
            .map(|p| p.snapshot().collected().unwrap().values.len())
            .sum();
        assert_eq!(total, 500);
        assert_eq!(
            parts.iter().map(KeyedState::used_bytes).sum::<usize>(),
            whole.used_bytes()
        );
    }

    #[test]
    fn refuses_keys_outside_its_key_groups() {
        let range = key_groups::range_of(1, 4, 128);
        let mut s = KeyedState::new(range.clone(), 128, usize::MAX);
        let mine = owned_key(&s, "k");
        s.value_set("c", &mine, b"1").unwrap();
        let foreign = (0..)
            .map(|i| format!("f{i}").into_bytes())
            .find(|k| !range.contains(&key_groups::key_group(k, 128)))
            .unwrap();
        let err = s.value_get("c", &foreign).unwrap_err();
        assert!(matches!(err, StateAccessError::KeyOutsideKeyGroups { .. }));
        assert!(err.to_string().contains("partitioned by hash"), "{err}");
        assert!(s.map_put("m", foreign, vec![], vec![]).is_err());
    }
}
