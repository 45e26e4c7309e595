//! Keyed state of one subtask in a redb database on local disk (`checkpoint.backend = "redb"`),
//! for state larger than memory: redb keeps a bounded page cache and the rest on disk. The
//! database is working state only — it is rebuilt from a checkpoint on restore — so its commits
//! are not durable but for one now and then, which lets redb reuse the pages that earlier
//! commits freed.

use super::keyed::{
    BATCH, Deferred, EntryList, EntrySource, KeyedSnapshot, StateAccessError, slot_in,
};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Value state: [`value_key`] -> value. One byte string compares as fast as a B-tree can (a
/// tuple key decodes its parts at every comparison).
const VALUES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("values");

/// A value-state entry's key: the key group (big-endian, so entries sort by it), the state
/// name's length and bytes, then the key.
fn value_key(buf: &mut Vec<u8>, name: &str, kg: u32, key: &[u8]) {
    buf.clear();
    buf.extend_from_slice(&kg.to_be_bytes());
    buf.extend_from_slice(&(name.len() as u16).to_be_bytes());
    buf.extend_from_slice(name.as_bytes());
    buf.extend_from_slice(key);
}

/// The parts of a [`value_key`]: (state name, key group, key).
fn split_value_key(k: &[u8]) -> Option<(&str, u32, &[u8])> {
    let kg = u32::from_be_bytes(k.get(..4)?.try_into().ok()?);
    let n = u16::from_be_bytes(k.get(4..6)?.try_into().ok()?) as usize;
    let name = std::str::from_utf8(k.get(6..6 + n)?).ok()?;
    Some((name, kg, k.get(6 + n..)?))
}
/// The key of a map-state entry: (state name, key group, key, map key).
type MapKey<'a> = (&'a str, u32, &'a [u8], &'a [u8]);
/// Map state, by [`MapKey`] -> value.
const MAPS: TableDefinition<MapKey<'static>, &[u8]> = TableDefinition::new("maps");

/// Page cache of one subtask's database.
const CACHE_BYTES: usize = 32 << 20;
/// Writes in one transaction before it is committed: large enough that commits are rare, small
/// enough that the pages it dirties stay a few tens of MiB.
const COMMIT_EVERY: usize = 8192;
/// Non-durable commits between two durable ones (which let redb reuse freed pages).
const DURABLE_EVERY: u32 = 64;

/// The keyed state of one subtask, on disk. Every call goes through one open write
/// transaction (so reads see the writes before them), committed every [`COMMIT_EVERY`] writes
/// and before a snapshot.
pub struct RedbState {
    db: Arc<Database>,
    path: PathBuf,
    range: Range<u32>,
    max_parallelism: u32,
    txn: Option<redb::WriteTransaction>,
    writes: usize,
    commits: u32,
}

impl std::fmt::Debug for RedbState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbState")
            .field("path", &self.path)
            .finish()
    }
}

/// Turns a redb error into the state error that names the database.
#[derive(Clone)]
struct Storage(PathBuf);

impl Storage {
    fn clone_fn(self) -> impl Fn(&dyn std::fmt::Display) -> StateAccessError {
        move |e| StateAccessError::Storage(format!("{}: {e}", self.0.display()))
    }
}

fn storage(path: &Path) -> Storage {
    Storage(path.to_path_buf())
}

impl RedbState {
    /// A new, empty database at `path` (an old one there is replaced) for the key groups
    /// `range` of `max_parallelism`.
    pub fn create(
        path: &Path,
        range: Range<u32>,
        max_parallelism: u32,
    ) -> Result<Self, StateAccessError> {
        let fail = storage(path).clone_fn();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| fail(&e))?;
        }
        let _ = std::fs::remove_file(path);
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| fail(&e))?;
        Ok(RedbState {
            db: Arc::new(db),
            path: path.to_path_buf(),
            range,
            max_parallelism,
            txn: None,
            writes: 0,
            commits: 0,
        })
    }

    /// The open write transaction (begun if none is).
    fn txn(&mut self) -> Result<&redb::WriteTransaction, StateAccessError> {
        if self.txn.is_none() {
            let txn = self
                .db
                .begin_write()
                .map_err(|e| storage(&self.path).clone_fn()(&e))?;
            self.txn = Some(txn);
        }
        Ok(self.txn.as_ref().expect("just begun"))
    }

    /// Runs `f`, which writes `n` entries, in the open transaction; commits every
    /// [`COMMIT_EVERY`] writes.
    fn write<R>(
        &mut self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(R, usize), StateAccessError>,
    ) -> Result<R, StateAccessError> {
        let (r, n) = f(self.txn()?)?;
        self.writes += n;
        if self.writes >= COMMIT_EVERY {
            self.commit()?;
        }
        Ok(r)
    }

    /// Commits the open transaction, durably now and then.
    fn commit(&mut self) -> Result<(), StateAccessError> {
        let Some(mut txn) = self.txn.take() else {
            return Ok(());
        };
        self.writes = 0;
        self.commits += 1;
        let durability = if self.commits.is_multiple_of(DURABLE_EVERY) {
            Durability::Immediate
        } else {
            Durability::None
        };
        let fail = storage(&self.path).clone_fn();
        txn.set_durability(durability).map_err(|e| fail(&e))?;
        txn.commit().map_err(|e| fail(&e))
    }

    fn key_group(&self, key: &[u8]) -> Result<u32, StateAccessError> {
        slot_in(&self.range, self.max_parallelism, key).map(|s| self.range.start + s.group as u32)
    }

    pub fn value_get(
        &mut self,
        name: &str,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StateAccessError> {
        let kg = self.key_group(key)?;
        let fail = storage(&self.path).clone_fn();
        let table = self.txn()?.open_table(VALUES).map_err(|e| fail(&e))?;
        let mut k = Vec::new();
        value_key(&mut k, name, kg, key);
        Ok(table
            .get(k.as_slice())
            .map_err(|e| fail(&e))?
            .map(|v| v.value().to_vec()))
    }

    /// The values of `keys`, in order, each handed to `push`.
    pub fn value_get_many<'k>(
        &mut self,
        name: &str,
        keys: impl Iterator<Item = Result<&'k [u8], StateAccessError>>,
        mut push: impl FnMut(Option<&[u8]>),
    ) -> Result<(), StateAccessError> {
        let (range, max_parallelism) = (self.range.clone(), self.max_parallelism);
        let fail = storage(&self.path).clone_fn();
        let table = self.txn()?.open_table(VALUES).map_err(|e| fail(&e))?;
        let mut k = Vec::new();
        for key in keys {
            let key = key?;
            let kg = slot_in(&range, max_parallelism, key).map(|s| range.start + s.group as u32)?;
            value_key(&mut k, name, kg, key);
            let v = table.get(k.as_slice()).map_err(|e| fail(&e))?;
            push(v.as_ref().map(|v| v.value()));
        }
        Ok(())
    }

    /// Sets (`Some`) or clears (`None`) many keys, in key order (a B-tree likes neighbours).
    pub fn value_set_many<'k>(
        &mut self,
        name: &str,
        entries: impl Iterator<Item = Result<(&'k [u8], Option<&'k [u8]>), StateAccessError>>,
    ) -> Result<(), StateAccessError> {
        let (range, max_parallelism) = (self.range.clone(), self.max_parallelism);
        let mut sorted = Vec::new();
        for entry in entries {
            let (key, value) = entry?;
            let kg = slot_in(&range, max_parallelism, key).map(|s| range.start + s.group as u32)?;
            sorted.push((kg, key, value));
        }
        // The table's order: key group, then (one state name) key.
        sorted.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let fail = storage(&self.path).clone_fn();
        self.write(|txn| {
            let mut table = txn.open_table(VALUES).map_err(|e| fail(&e))?;
            let mut k = Vec::new();
            for &(kg, key, value) in &sorted {
                value_key(&mut k, name, kg, key);
                match value {
                    Some(v) => table.insert(k.as_slice(), v).map(|_| ()),
                    None => table.remove(k.as_slice()).map(|_| ()),
                }
                .map_err(|e| fail(&e))?;
            }
            Ok(((), sorted.len()))
        })
    }

    pub fn map_get(
        &mut self,
        name: &str,
        key: &[u8],
        map_key: &[u8],
    ) -> Result<Option<Vec<u8>>, StateAccessError> {
        let kg = self.key_group(key)?;
        let fail = storage(&self.path).clone_fn();
        let table = self.txn()?.open_table(MAPS).map_err(|e| fail(&e))?;
        Ok(table
            .get((name, kg, key, map_key))
            .map_err(|e| fail(&e))?
            .map(|v| v.value().to_vec()))
    }

    pub fn map_put(
        &mut self,
        name: &str,
        key: &[u8],
        map_key: &[u8],
        value: &[u8],
    ) -> Result<(), StateAccessError> {
        let kg = self.key_group(key)?;
        let fail = storage(&self.path).clone_fn();
        self.write(|txn| {
            let mut table = txn.open_table(MAPS).map_err(|e| fail(&e))?;
            table
                .insert((name, kg, key, map_key), value)
                .map_err(|e| fail(&e))?;
            Ok(((), 1))
        })
    }

    pub fn map_remove(
        &mut self,
        name: &str,
        key: &[u8],
        map_key: &[u8],
    ) -> Result<(), StateAccessError> {
        let kg = self.key_group(key)?;
        let fail = storage(&self.path).clone_fn();
        self.write(|txn| {
            let mut table = txn.open_table(MAPS).map_err(|e| fail(&e))?;
            table
                .remove((name, kg, key, map_key))
                .map_err(|e| fail(&e))?;
            Ok(((), 1))
        })
    }

    /// A key's map entries, ordered by map key.
    pub fn map_entries(&mut self, name: &str, key: &[u8]) -> Result<EntryList, StateAccessError> {
        let kg = self.key_group(key)?;
        let fail = storage(&self.path).clone_fn();
        let table = self.txn()?.open_table(MAPS).map_err(|e| fail(&e))?;
        let mut out = Vec::new();
        let from: MapKey<'_> = (name, kg, key, &[]);
        for entry in table.range(from..).map_err(|e| fail(&e))? {
            let (k, v) = entry.map_err(|e| fail(&e))?;
            let (n, g, k2, map_key) = k.value();
            if n != name || g != kg || k2 != key {
                break;
            }
            out.push((map_key.to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }

    pub fn map_clear(&mut self, name: &str, key: &[u8]) -> Result<(), StateAccessError> {
        let entries = self.map_entries(name, key)?;
        let kg = self.key_group(key)?;
        let fail = storage(&self.path).clone_fn();
        self.write(|txn| {
            let mut table = txn.open_table(MAPS).map_err(|e| fail(&e))?;
            for (map_key, _) in &entries {
                table
                    .remove((name, kg, key, map_key.as_slice()))
                    .map_err(|e| fail(&e))?;
            }
            Ok(((), entries.len()))
        })
    }

    /// A snapshot of every entry, for a checkpoint: what is pending is committed, and the
    /// entries are left in a read transaction (redb's copy-on-write keeps them as they are while
    /// the task writes on), read when the checkpoint file is written.
    pub fn snapshot(&mut self) -> Result<KeyedSnapshot, StateAccessError> {
        self.commit()?;
        let fail = storage(&self.path).clone_fn();
        let txn = self.db.begin_read().map_err(|e| fail(&e))?;
        let len = |t: Result<u64, redb::StorageError>| t.map_err(|e| fail(&e));
        let entries = match txn.open_table(VALUES) {
            Ok(t) => len(t.len())?,
            Err(_) => 0,
        } + match txn.open_table(MAPS) {
            Ok(t) => len(t.len())?,
            Err(_) => 0,
        };
        Ok(KeyedSnapshot {
            deferred: Some(Deferred(Arc::new(View {
                txn,
                _db: self.db.clone(),
                path: self.path.clone(),
                entries,
            }))),
            ..KeyedSnapshot::default()
        })
    }

    /// Loads the entries of `snapshot` in this subtask's key groups.
    pub fn restore(&mut self, snapshot: &KeyedSnapshot) -> Result<(), StateAccessError> {
        for (name, kg, key) in &snapshot.removed_values {
            if self.range.contains(kg) {
                self.value_set_many(name, std::iter::once(Ok((key.as_slice(), None))))?;
            }
        }
        for (name, kg, key) in &snapshot.removed_maps {
            if self.range.contains(kg) {
                self.map_clear(name, key)?;
            }
        }
        let range = self.range.clone();
        let fail = storage(&self.path).clone_fn();
        self.write(|txn| {
            let mut n = 0;
            let mut values = txn.open_table(VALUES).map_err(|e| fail(&e))?;
            let mut k = Vec::new();
            for (name, kg, key, value) in snapshot.values.iter().filter(|e| range.contains(&e.1)) {
                value_key(&mut k, name, *kg, key);
                values
                    .insert(k.as_slice(), value.as_slice())
                    .map_err(|e| fail(&e))?;
                n += 1;
            }
            let mut maps = txn.open_table(MAPS).map_err(|e| fail(&e))?;
            for (name, kg, key, map_key, value) in
                snapshot.maps.iter().filter(|e| range.contains(&e.1))
            {
                maps.insert(
                    (name.as_str(), *kg, key.as_slice(), map_key.as_slice()),
                    value.as_slice(),
                )
                .map_err(|e| fail(&e))?;
                n += 1;
            }
            Ok(((), n))
        })?;
        snapshot.read_deferred(|batch| self.restore(batch))?;
        self.commit()
    }
}

/// The entries of a [`RedbState`] as of a snapshot: a read transaction of its database.
struct View {
    txn: redb::ReadTransaction,
    /// The database stays open while the view is read, even if its subtask has ended (its
    /// file is unlinked then, and freed when this goes).
    _db: Arc<Database>,
    path: PathBuf,
    entries: u64,
}

impl EntrySource for View {
    fn len(&self) -> u64 {
        self.entries
    }

    fn read(
        &self,
        apply: &mut dyn FnMut(&KeyedSnapshot) -> Result<(), String>,
    ) -> Result<(), String> {
        let fail = |e: &dyn std::fmt::Display| format!("{}: {e}", self.path.display());
        let mut batch = KeyedSnapshot::default();
        if let Ok(table) = self.txn.open_table(VALUES) {
            for entry in table.iter().map_err(|e| fail(&e))? {
                let (k, v) = entry.map_err(|e| fail(&e))?;
                let (name, kg, key) =
                    split_value_key(k.value()).ok_or_else(|| fail(&"a malformed entry key"))?;
                batch
                    .values
                    .push((name.to_string(), kg, key.to_vec(), v.value().to_vec()));
                if batch.values.len() >= BATCH {
                    apply(&std::mem::take(&mut batch))?;
                }
            }
        }
        if let Ok(table) = self.txn.open_table(MAPS) {
            for entry in table.iter().map_err(|e| fail(&e))? {
                let (k, v) = entry.map_err(|e| fail(&e))?;
                let (name, kg, key, map_key) = k.value();
                batch.maps.push((
                    name.to_string(),
                    kg,
                    key.to_vec(),
                    map_key.to_vec(),
                    v.value().to_vec(),
                ));
                if batch.values.len() + batch.maps.len() >= BATCH {
                    apply(&std::mem::take(&mut batch))?;
                }
            }
        }
        if !batch.is_empty() {
            apply(&batch)?;
        }
        Ok(())
    }
}

impl Drop for RedbState {
    fn drop(&mut self) {
        // Working state only: the next run rebuilds it from a checkpoint.
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::key_groups;

    #[test]
    fn keeps_values_and_maps_on_disk_and_snapshots_them_by_key_group() {
        let dir = tempfile::tempdir().unwrap();
        let range = key_groups::range_of(0, 2, 128);
        let mut s = RedbState::create(&dir.path().join("s.redb"), range.clone(), 128).unwrap();
        let keys: Vec<Vec<u8>> = (0..2000)
            .map(|i| format!("k{i}").into_bytes())
            .filter(|k| range.contains(&key_groups::key_group(k, 128)))
            .collect();
        let entries: Vec<(&[u8], Option<&[u8]>)> = keys
            .iter()
            .map(|k| (k.as_slice(), Some(k.as_slice())))
            .collect();
        s.value_set_many("v", entries.into_iter().map(Ok)).unwrap();
        s.value_set_many("v", std::iter::once(Ok((keys[0].as_slice(), None))))
            .unwrap();
        assert_eq!(s.value_get("v", &keys[0]).unwrap(), None);
        assert_eq!(s.value_get("v", &keys[1]).unwrap(), Some(keys[1].clone()));
        let mut got = Vec::new();
        s.value_get_many("v", keys[..3].iter().map(|k| Ok(k.as_slice())), |v| {
            got.push(v.map(<[u8]>::to_vec))
        })
        .unwrap();
        assert_eq!(got, [None, Some(keys[1].clone()), Some(keys[2].clone())]);
        s.map_put("m", &keys[1], b"b", b"2").unwrap();
        s.map_put("m", &keys[1], b"a", b"1").unwrap();
        s.map_put("m", &keys[2], b"a", b"x").unwrap();
        assert_eq!(
            s.map_entries("m", &keys[1]).unwrap(),
            [
                (b"a".to_vec(), b"1".to_vec()),
                (b"b".to_vec(), b"2".to_vec())
            ]
        );
        s.map_remove("m", &keys[1], b"a").unwrap();
        assert_eq!(s.map_get("m", &keys[1], b"a").unwrap(), None);
        s.map_clear("m", &keys[2]).unwrap();
        assert!(s.map_entries("m", &keys[2]).unwrap().is_empty());
        // A foreign key is refused as in memory.
        let foreign = (0..)
            .map(|i| format!("f{i}").into_bytes())
            .find(|k| !range.contains(&key_groups::key_group(k, 128)))
            .unwrap();
        assert!(matches!(
            s.value_get("v", &foreign),
            Err(StateAccessError::KeyOutsideKeyGroups { .. })
        ));
        // The snapshot restores into the memory backend, and back.
        let snap = s.snapshot().unwrap();
        assert_eq!(
            snap.entries() as usize,
            keys.len() - 1 + 1,
            "values and the map entry"
        );
        let mut memory = crate::state::KeyedState::new(range.clone(), 128, usize::MAX);
        memory.restore(&snap).unwrap();
        assert_eq!(
            memory.value_get("v", &keys[5]).unwrap(),
            Some(keys[5].as_slice())
        );
        let mut again = RedbState::create(&dir.path().join("t.redb"), range, 128).unwrap();
        again.restore(&memory.snapshot()).unwrap();
        assert_eq!(
            again.map_get("m", &keys[1], b"b").unwrap(),
            Some(b"2".to_vec())
        );
        let path = dir.path().join("t.redb");
        drop(again);
        assert!(!path.exists(), "working state is removed with its subtask");
    }

    #[test]
    fn a_snapshot_holds_the_state_of_its_time_while_writes_go_on_and_after_its_subtask() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = RedbState::create(&dir.path().join("s.redb"), 0..128, 128).unwrap();
        let keys: Vec<Vec<u8>> = (0..20_000).map(|i| format!("k{i}").into_bytes()).collect();
        let set = |s: &mut RedbState, keys: &[Vec<u8>], v: Option<&[u8]>| {
            s.value_set_many("v", keys.iter().map(|k| Ok((k.as_slice(), v))))
                .unwrap()
        };
        set(&mut s, &keys, Some(b"a"));
        let snap = s.snapshot().unwrap();
        assert_eq!(snap.entries(), 20_000);
        // Writes after the snapshot, committed, and the subtask gone: the snapshot still reads
        // what it held.
        set(&mut s, &keys[..10_000], Some(b"b"));
        set(&mut s, &keys[10_000..], None);
        s.commit().unwrap();
        drop(s);
        let mut memory = crate::state::KeyedState::new(0..128, 128, usize::MAX);
        memory.restore(&snap).unwrap();
        let values = memory.snapshot().collected().unwrap().values;
        assert_eq!(values.len(), 20_000);
        assert!(values.iter().all(|(_, _, _, v)| v == b"a"));
    }
}
