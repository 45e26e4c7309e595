//! Keyed state of one subtask in a redb database on local disk (`checkpoint.backend = "redb"`),
//! for state larger than memory: redb keeps a bounded page cache and the rest on disk. The
//! database is working state only — it is rebuilt from a checkpoint on restore — so its commits
//! are not durable but for one now and then, which lets redb reuse the pages that earlier
//! commits freed.

use super::keyed::{EntryList, KeyedSnapshot, StateAccessError, slot_in};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Value state: (state name, key group, key) -> value.
const VALUES: TableDefinition<(&str, u32, &[u8]), &[u8]> = TableDefinition::new("values");
/// The key of a map-state entry: (state name, key group, key, map key).
type MapKey<'a> = (&'a str, u32, &'a [u8], &'a [u8]);
/// Map state, by [`MapKey`] -> value.
const MAPS: TableDefinition<MapKey<'static>, &[u8]> = TableDefinition::new("maps");

/// Page cache of one subtask's database.
const CACHE_BYTES: usize = 32 << 20;
/// Non-durable commits between two durable ones (which let redb reuse freed pages).
const DURABLE_EVERY: u32 = 256;

/// The keyed state of one subtask, on disk.
pub struct RedbState {
    db: Database,
    path: PathBuf,
    range: Range<u32>,
    max_parallelism: u32,
    commits: u32,
}

impl std::fmt::Debug for RedbState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbState")
            .field("path", &self.path)
            .finish()
    }
}

fn storage(path: &Path) -> impl Fn(&dyn std::fmt::Display) -> StateAccessError + '_ {
    move |e| StateAccessError::Storage(format!("{}: {e}", path.display()))
}

impl RedbState {
    /// A new, empty database at `path` (an old one there is replaced) for the key groups
    /// `range` of `max_parallelism`.
    pub fn create(
        path: &Path,
        range: Range<u32>,
        max_parallelism: u32,
    ) -> Result<Self, StateAccessError> {
        let fail = storage(path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| fail(&e))?;
        }
        let _ = std::fs::remove_file(path);
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| fail(&e))?;
        Ok(RedbState {
            db,
            path: path.to_path_buf(),
            range,
            max_parallelism,
            commits: 0,
        })
    }

    fn fail(&self) -> impl Fn(&dyn std::fmt::Display) -> StateAccessError + '_ {
        storage(&self.path)
    }

    /// Runs `f` in a write transaction and commits it.
    fn write<R>(
        &mut self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<R, StateAccessError>,
    ) -> Result<R, StateAccessError> {
        let mut txn = self.db.begin_write().map_err(|e| self.fail()(&e))?;
        self.commits += 1;
        let durable = self.commits.is_multiple_of(DURABLE_EVERY);
        txn.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        })
        .map_err(|e| self.fail()(&e))?;
        let r = f(&txn)?;
        txn.commit().map_err(|e| self.fail()(&e))?;
        Ok(r)
    }

    fn key_group(&self, key: &[u8]) -> Result<u32, StateAccessError> {
        slot_in(&self.range, self.max_parallelism, key).map(|s| self.range.start + s.group as u32)
    }

    pub fn value_get(&self, name: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StateAccessError> {
        let kg = self.key_group(key)?;
        let fail = self.fail();
        let txn = self.db.begin_read().map_err(|e| fail(&e))?;
        let table = match txn.open_table(VALUES) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(fail(&e)),
        };
        Ok(table
            .get((name, kg, key))
            .map_err(|e| fail(&e))?
            .map(|v| v.value().to_vec()))
    }

    /// The values of `keys`, in order, each pushed to `out` by `push`.
    pub fn value_get_many<'k>(
        &self,
        name: &str,
        keys: impl Iterator<Item = Result<&'k [u8], StateAccessError>>,
        mut push: impl FnMut(Option<&[u8]>),
    ) -> Result<(), StateAccessError> {
        let fail = self.fail();
        let txn = self.db.begin_read().map_err(|e| fail(&e))?;
        let table = match txn.open_table(VALUES) {
            Ok(t) => Some(t),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(fail(&e)),
        };
        for key in keys {
            let key = key?;
            let kg = self.key_group(key)?;
            match &table {
                None => push(None),
                Some(t) => {
                    let v = t.get((name, kg, key)).map_err(|e| fail(&e))?;
                    push(v.as_ref().map(|v| v.value()));
                }
            }
        }
        Ok(())
    }

    /// Sets (`Some`) or clears (`None`) many keys in one transaction.
    pub fn value_set_many<'k>(
        &mut self,
        name: &str,
        entries: impl Iterator<Item = Result<(&'k [u8], Option<&'k [u8]>), StateAccessError>>,
    ) -> Result<(), StateAccessError> {
        let (range, max_parallelism, path) =
            (self.range.clone(), self.max_parallelism, self.path.clone());
        self.write(|txn| {
            let fail = storage(&path);
            let mut table = txn.open_table(VALUES).map_err(|e| fail(&e))?;
            for entry in entries {
                let (key, value) = entry?;
                let kg =
                    slot_in(&range, max_parallelism, key).map(|s| range.start + s.group as u32)?;
                match value {
                    Some(v) => table.insert((name, kg, key), v).map(|_| ()),
                    None => table.remove((name, kg, key)).map(|_| ()),
                }
                .map_err(|e| fail(&e))?;
            }
            Ok(())
        })
    }

    pub fn map_get(
        &self,
        name: &str,
        key: &[u8],
        map_key: &[u8],
    ) -> Result<Option<Vec<u8>>, StateAccessError> {
        let kg = self.key_group(key)?;
        let fail = self.fail();
        let txn = self.db.begin_read().map_err(|e| fail(&e))?;
        let table = match txn.open_table(MAPS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(fail(&e)),
        };
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
        let path = self.path.clone();
        self.write(|txn| {
            let fail = storage(&path);
            let mut table = txn.open_table(MAPS).map_err(|e| fail(&e))?;
            table
                .insert((name, kg, key, map_key), value)
                .map_err(|e| fail(&e))?;
            Ok(())
        })
    }

    pub fn map_remove(
        &mut self,
        name: &str,
        key: &[u8],
        map_key: &[u8],
    ) -> Result<(), StateAccessError> {
        let kg = self.key_group(key)?;
        let path = self.path.clone();
        self.write(|txn| {
            let fail = storage(&path);
            let mut table = txn.open_table(MAPS).map_err(|e| fail(&e))?;
            table
                .remove((name, kg, key, map_key))
                .map_err(|e| fail(&e))?;
            Ok(())
        })
    }

    /// A key's map entries, ordered by map key.
    pub fn map_entries(&self, name: &str, key: &[u8]) -> Result<EntryList, StateAccessError> {
        let kg = self.key_group(key)?;
        let fail = self.fail();
        let txn = self.db.begin_read().map_err(|e| fail(&e))?;
        let table = match txn.open_table(MAPS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(fail(&e)),
        };
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
        let path = self.path.clone();
        self.write(|txn| {
            let fail = storage(&path);
            let mut table = txn.open_table(MAPS).map_err(|e| fail(&e))?;
            for (map_key, _) in &entries {
                table
                    .remove((name, kg, key, map_key.as_slice()))
                    .map_err(|e| fail(&e))?;
            }
            Ok(())
        })
    }

    /// Copies every entry out, for a checkpoint.
    pub fn snapshot(&self) -> Result<KeyedSnapshot, StateAccessError> {
        let fail = self.fail();
        let txn = self.db.begin_read().map_err(|e| fail(&e))?;
        let mut snap = KeyedSnapshot::default();
        if let Ok(table) = txn.open_table(VALUES) {
            for entry in table.iter().map_err(|e| fail(&e))? {
                let (k, v) = entry.map_err(|e| fail(&e))?;
                let (name, kg, key) = k.value();
                snap.values
                    .push((name.to_string(), kg, key.to_vec(), v.value().to_vec()));
            }
        }
        if let Ok(table) = txn.open_table(MAPS) {
            for entry in table.iter().map_err(|e| fail(&e))? {
                let (k, v) = entry.map_err(|e| fail(&e))?;
                let (name, kg, key, map_key) = k.value();
                snap.maps.push((
                    name.to_string(),
                    kg,
                    key.to_vec(),
                    map_key.to_vec(),
                    v.value().to_vec(),
                ));
            }
        }
        Ok(snap)
    }

    /// Loads the entries of `snapshot` in this subtask's key groups.
    pub fn restore(&mut self, snapshot: &KeyedSnapshot) -> Result<(), StateAccessError> {
        let range = self.range.clone();
        let path = self.path.clone();
        self.write(|txn| {
            let fail = storage(&path);
            let mut values = txn.open_table(VALUES).map_err(|e| fail(&e))?;
            for (name, kg, key, value) in snapshot.values.iter().filter(|e| range.contains(&e.1)) {
                values
                    .insert((name.as_str(), *kg, key.as_slice()), value.as_slice())
                    .map_err(|e| fail(&e))?;
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
            }
            Ok(())
        })
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
        assert_eq!(snap.values.len(), keys.len() - 1);
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
}
