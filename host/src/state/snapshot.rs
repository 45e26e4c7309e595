//! One task's part of a checkpoint, and its file: a redb database holding each operator's keyed
//! state by operator uid, key group and state name (so that key groups can move to subtasks of
//! another parallelism), the sources' positions and the sinks' pending commits.

use super::KeyedSnapshot;
use super::keyed::BATCH;
use redb::{
    Builder, ReadOnlyDatabase, ReadableDatabase, ReadableTable, StorageBackend, TableDefinition,
};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Where a chunk of keyed state lives: (operator uid, key group, state name, chunk number).
/// A chunk holds up to [`CHUNK`] entries of one state in one key group, encoded as
/// length-prefixed fields (see [`encode`]): one redb entry per chunk rather than per key keeps
/// writing a snapshot cheap (a redb insert costs ~1 us; encoding an entry a few ns).
type ChunkKey<'a> = (&'a str, u32, &'a str, u32);
/// Value state: chunks of (key, value).
const VALUES: TableDefinition<ChunkKey<'static>, &[u8]> = TableDefinition::new("values");
/// Map state: chunks of (key, map key, value).
const MAPS: TableDefinition<ChunkKey<'static>, &[u8]> = TableDefinition::new("maps");
/// In a delta: chunks of value-state keys removed, (key).
const REMOVED_VALUES: TableDefinition<ChunkKey<'static>, &[u8]> =
    TableDefinition::new("removed_values");
/// In a delta: chunks of map-state keys whose maps are replaced whole, (key).
const REMOVED_MAPS: TableDefinition<ChunkKey<'static>, &[u8]> =
    TableDefinition::new("removed_maps");
/// Entries in a chunk, at most.
const CHUNK: usize = 8192;
/// Source uid -> its position.
const SOURCES: TableDefinition<&str, &[u8]> = TableDefinition::new("sources");
/// Sink uid -> what it pre-committed at this checkpoint.
const SINKS: TableDefinition<&str, &[u8]> = TableDefinition::new("sinks");
/// Operator uid -> its private state (`weir:operator/checkpoint-hooks`).
const PRIVATE: TableDefinition<&str, &[u8]> = TableDefinition::new("private");
/// Facts about the task: `finished` -> [] when it had finished its input.
const TASK: TableDefinition<&str, &[u8]> = TableDefinition::new("task");

/// What one task holds at a checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskSnapshot {
    /// Each operator's keyed state, by uid.
    pub operators: Vec<(String, KeyedSnapshot)>,
    /// Each source's position, by uid.
    pub sources: Vec<(String, Vec<u8>)>,
    /// Each sink's pending commit, by uid.
    pub sinks: Vec<(String, Vec<u8>)>,
    /// Each operator's private state, by uid (operators that export checkpoint hooks).
    pub private: Vec<(String, Vec<u8>)>,
    /// The task had finished: restored, it ends its outputs at once instead of running again.
    pub finished: bool,
}

/// A snapshot file that cannot be written or read.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct SnapshotError {
    pub path: PathBuf,
    pub message: String,
}

fn fail(path: &Path) -> impl Fn(&dyn std::fmt::Display) -> SnapshotError + '_ {
    move |e| SnapshotError {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// A checkpoint file as redb's storage, never synced while redb builds it: redb's own file
/// backend syncs its header and pages at every commit (6-7 ms a file here); this one is synced
/// once, whole, after the last commit. The bounded page cache keeps memory small whatever the
/// snapshot's size.
#[derive(Debug)]
struct UnsyncedFile(std::fs::File);

impl StorageBackend for UnsyncedFile {
    fn len(&self) -> std::io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        self.0.read_exact_at(out, offset)
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.0.set_len(len)
    }

    fn sync_data(&self) -> std::io::Result<()> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.0.write_all_at(data, offset)
    }
}

/// redb's page cache while a checkpoint file is built: past half of it, written pages go to
/// the file.
const WRITE_CACHE: usize = 16 << 20;

/// The keyed-state tables of a snapshot file being written, and each chunk's next number.
struct Chunks<'t> {
    values: redb::Table<'t, ChunkKey<'static>, &'static [u8]>,
    maps: redb::Table<'t, ChunkKey<'static>, &'static [u8]>,
    removed_values: redb::Table<'t, ChunkKey<'static>, &'static [u8]>,
    removed_maps: redb::Table<'t, ChunkKey<'static>, &'static [u8]>,
    /// Per (table, operator uid, key group, state name): the next chunk's number.
    next: std::collections::HashMap<(u8, String, u32, String), u32>,
    buf: Vec<u8>,
}

impl Chunks<'_> {
    /// Writes `state`'s entries, one chunk per run of up to [`CHUNK`] entries of a state in
    /// a key group.
    fn insert(&mut self, uid: &str, state: &KeyedSnapshot) -> Result<(), redb::StorageError> {
        let mut values: Vec<_> = state.values.iter().collect();
        values.sort_unstable_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        for run in runs(&values, |e| (e.1, e.0.as_str())) {
            self.buf.clear();
            for (_, _, key, value) in run {
                encode(&mut self.buf, &[key, value]);
            }
            let (name, kg) = (&run[0].0, run[0].1);
            let n = self.number(0, uid, kg, name);
            self.values
                .insert((uid, kg, name.as_str(), n), self.buf.as_slice())?;
        }
        let mut maps: Vec<_> = state.maps.iter().collect();
        maps.sort_unstable_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        for run in runs(&maps, |e| (e.1, e.0.as_str())) {
            self.buf.clear();
            for (_, _, key, map_key, value) in run {
                encode(&mut self.buf, &[key, map_key, value]);
            }
            let (name, kg) = (&run[0].0, run[0].1);
            let n = self.number(1, uid, kg, name);
            self.maps
                .insert((uid, kg, name.as_str(), n), self.buf.as_slice())?;
        }
        for (table, removed) in [(2, &state.removed_values), (3, &state.removed_maps)] {
            let mut removed: Vec<_> = removed.iter().collect();
            removed.sort_unstable_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
            for run in runs(&removed, |e| (e.1, e.0.as_str())) {
                self.buf.clear();
                for (_, _, key) in run {
                    encode(&mut self.buf, &[key]);
                }
                let (name, kg) = (&run[0].0, run[0].1);
                let n = self.number(table, uid, kg, name);
                let t = if table == 2 {
                    &mut self.removed_values
                } else {
                    &mut self.removed_maps
                };
                t.insert((uid, kg, name.as_str(), n), self.buf.as_slice())?;
            }
        }
        Ok(())
    }

    fn number(&mut self, table: u8, uid: &str, kg: u32, name: &str) -> u32 {
        let n = self
            .next
            .entry((table, uid.to_string(), kg, name.to_string()))
            .or_insert(0);
        *n += 1;
        *n - 1
    }
}

/// The runs of `items` (sorted by `by`) that share `by`, each at most [`CHUNK`] long.
fn runs<'a, T, K: PartialEq>(
    items: &'a [T],
    by: impl Fn(&T) -> K + 'a,
) -> impl Iterator<Item = &'a [T]> + 'a {
    let mut rest = items;
    std::iter::from_fn(move || {
        let first = rest.first()?;
        let k = by(first);
        let len = rest
            .iter()
            .take(CHUNK)
            .position(|e| by(e) != k)
            .unwrap_or(rest.len().min(CHUNK));
        let (run, tail) = rest.split_at(len);
        rest = tail;
        Some(run)
    })
}

/// Appends `fields` to a chunk, each as a LEB128 length and its bytes.
fn encode(out: &mut Vec<u8>, fields: &[&Vec<u8>]) {
    for f in fields {
        let mut n = f.len();
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
        out.extend_from_slice(f);
    }
}

/// Splits a chunk into its fields, `per` to an entry; `None` if it is malformed.
fn decode(mut chunk: &[u8], per: usize) -> Option<Vec<Vec<&[u8]>>> {
    let mut entries = Vec::new();
    while !chunk.is_empty() {
        let mut entry = Vec::with_capacity(per);
        for _ in 0..per {
            let (mut len, mut shift) = (0usize, 0);
            loop {
                let (&b, rest) = chunk.split_first()?;
                chunk = rest;
                if shift > 56 {
                    return None;
                }
                len |= usize::from(b & 0x7f) << shift;
                shift += 7;
                if b < 0x80 {
                    break;
                }
            }
            if len > chunk.len() {
                return None;
            }
            let (field, rest) = chunk.split_at(len);
            entry.push(field);
            chunk = rest;
        }
        entries.push(entry);
    }
    Some(entries)
}

/// A written snapshot file's size and xxh3-64 hash (in hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub bytes: u64,
    pub hash: String,
}

/// Writes `snap` as a new redb file at `path`, durable when this returns.
pub fn write(path: &Path, snap: &TaskSnapshot) -> Result<Written, SnapshotError> {
    let fail = fail(path);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| fail(&e))?;
    let db = Builder::new()
        .set_cache_size(WRITE_CACHE)
        .create_with_backend(UnsyncedFile(file))
        .map_err(|e| fail(&e))?;
    let txn = db.begin_write().map_err(|e| fail(&e))?;
    {
        let mut chunks = Chunks {
            values: txn.open_table(VALUES).map_err(|e| fail(&e))?,
            maps: txn.open_table(MAPS).map_err(|e| fail(&e))?,
            removed_values: txn.open_table(REMOVED_VALUES).map_err(|e| fail(&e))?,
            removed_maps: txn.open_table(REMOVED_MAPS).map_err(|e| fail(&e))?,
            next: std::collections::HashMap::new(),
            buf: Vec::new(),
        };
        for (uid, state) in &snap.operators {
            chunks.insert(uid, state).map_err(|e| fail(&e))?;
            // Entries read from the working state now, in batches.
            if let Some(deferred) = &state.deferred {
                deferred
                    .0
                    .read(&mut |batch| chunks.insert(uid, batch).map_err(|e| e.to_string()))
                    .map_err(|e| fail(&e))?;
            }
        }
        let mut sources = txn.open_table(SOURCES).map_err(|e| fail(&e))?;
        for (uid, position) in &snap.sources {
            sources
                .insert(uid.as_str(), position.as_slice())
                .map_err(|e| fail(&e))?;
        }
        let mut sinks = txn.open_table(SINKS).map_err(|e| fail(&e))?;
        for (uid, pending) in &snap.sinks {
            sinks
                .insert(uid.as_str(), pending.as_slice())
                .map_err(|e| fail(&e))?;
        }
        let mut private = txn.open_table(PRIVATE).map_err(|e| fail(&e))?;
        for (uid, state) in &snap.private {
            private
                .insert(uid.as_str(), state.as_slice())
                .map_err(|e| fail(&e))?;
        }
        let mut task = txn.open_table(TASK).map_err(|e| fail(&e))?;
        if snap.finished {
            task.insert("finished", [].as_slice())
                .map_err(|e| fail(&e))?;
        }
    }
    txn.commit().map_err(|e| fail(&e))?;
    drop(db);
    // One sync of the whole file, then its hash, read back a MiB at a time.
    let mut file = std::fs::File::open(path).map_err(|e| fail(&e))?;
    file.sync_all().map_err(|e| fail(&e))?;
    let (bytes, hash) = hash_file(&mut file).map_err(|e| fail(&e))?;
    Ok(Written { bytes, hash })
}

/// The size and xxh3-64 hash (in hex) of what `file` holds from its current position on.
pub fn hash_file(file: &mut impl std::io::Read) -> std::io::Result<(u64, String)> {
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut buf = vec![0; 1 << 20];
    let mut bytes = 0;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((bytes, format!("{:016x}", hasher.digest())))
}

/// Reads the snapshot file at `path` whole; `operators` lists the operators whose state it
/// holds (an operator may have no entry at all). A restore streams the keyed state instead
/// ([`read_task`] and [`read_keyed`]); this is for tools and tests.
pub fn read(path: &Path, operators: &[String]) -> Result<TaskSnapshot, SnapshotError> {
    let mut snap = read_task(path)?;
    for uid in operators {
        let mut state = KeyedSnapshot::default();
        read_keyed(path, uid, 0..u32::MAX, |batch| {
            state.values.extend_from_slice(&batch.values);
            state.maps.extend_from_slice(&batch.maps);
            state
                .removed_values
                .extend_from_slice(&batch.removed_values);
            state.removed_maps.extend_from_slice(&batch.removed_maps);
            Ok(())
        })?;
        snap.operators.push((uid.clone(), state));
    }
    Ok(snap)
}

/// Reads all but the keyed state of the snapshot file at `path`: the sources' positions, the
/// sinks' pending commits, the private states, whether the task had finished.
pub fn read_task(path: &Path) -> Result<TaskSnapshot, SnapshotError> {
    let fail = fail(path);
    let db = ReadOnlyDatabase::open(path).map_err(|e| fail(&e))?;
    let txn = db.begin_read().map_err(|e| fail(&e))?;
    let read_table =
        |def: TableDefinition<&str, &[u8]>| -> Result<Vec<(String, Vec<u8>)>, SnapshotError> {
            let table = txn.open_table(def).map_err(|e| fail(&e))?;
            let mut out = Vec::new();
            for entry in table.iter().map_err(|e| fail(&e))? {
                let (k, v) = entry.map_err(|e| fail(&e))?;
                out.push((k.value().to_string(), v.value().to_vec()));
            }
            Ok(out)
        };
    Ok(TaskSnapshot {
        operators: Vec::new(),
        sources: read_table(SOURCES)?,
        sinks: read_table(SINKS)?,
        private: read_table(PRIVATE)?,
        finished: read_table(TASK)?.iter().any(|(k, _)| k == "finished"),
    })
}

/// Streams operator `uid`'s keyed state in the key groups `range` from the snapshot file at
/// `path` to `apply`, in batches of about [`BATCH`] entries (whole chunks): every removal (of a delta) before
/// any entry, so a batch applied after the ones before it leaves what the file describes.
/// Memory stays at a batch, whatever the state's size.
pub fn read_keyed(
    path: &Path,
    uid: &str,
    range: std::ops::Range<u32>,
    mut apply: impl FnMut(&KeyedSnapshot) -> Result<(), String>,
) -> Result<(), SnapshotError> {
    let fail = fail(path);
    let db = ReadOnlyDatabase::open(path).map_err(|e| fail(&e))?;
    let txn = db.begin_read().map_err(|e| fail(&e))?;
    let mut batch = KeyedSnapshot::default();
    let mut n = 0;
    let mut flush = |batch: &mut KeyedSnapshot, n: &mut usize, force: bool| {
        if *n > 0 && (force || *n >= BATCH) {
            apply(batch).map_err(|e| fail(&e))?;
            *batch = KeyedSnapshot::default();
            *n = 0;
        }
        Ok::<_, SnapshotError>(())
    };
    let (lo, hi) = ((uid, range.start, "", 0), (uid, range.end, "", 0));
    let malformed = || fail(&"a malformed chunk of keyed state");
    // Removals (of a delta) first: a map's removal (it is replaced whole) must come before
    // its new entries.
    for (def, is_map) in [(REMOVED_VALUES, false), (REMOVED_MAPS, true)] {
        let table = txn.open_table(def).map_err(|e| fail(&e))?;
        for chunk in table.range(lo..hi).map_err(|e| fail(&e))? {
            let (k, v) = chunk.map_err(|e| fail(&e))?;
            let (_, kg, name, _) = k.value();
            for e in decode(v.value(), 1).ok_or_else(malformed)? {
                let removed = (name.to_string(), kg, e[0].to_vec());
                if is_map {
                    batch.removed_maps.push(removed);
                } else {
                    batch.removed_values.push(removed);
                }
                n += 1;
            }
            flush(&mut batch, &mut n, false)?;
        }
    }
    flush(&mut batch, &mut n, true)?;
    let values = txn.open_table(VALUES).map_err(|e| fail(&e))?;
    for chunk in values.range(lo..hi).map_err(|e| fail(&e))? {
        let (k, v) = chunk.map_err(|e| fail(&e))?;
        let (_, kg, name, _) = k.value();
        for e in decode(v.value(), 2).ok_or_else(malformed)? {
            batch
                .values
                .push((name.to_string(), kg, e[0].to_vec(), e[1].to_vec()));
            n += 1;
        }
        flush(&mut batch, &mut n, false)?;
    }
    let maps = txn.open_table(MAPS).map_err(|e| fail(&e))?;
    for chunk in maps.range(lo..hi).map_err(|e| fail(&e))? {
        let (k, v) = chunk.map_err(|e| fail(&e))?;
        let (_, kg, name, _) = k.value();
        for e in decode(v.value(), 3).ok_or_else(malformed)? {
            batch.maps.push((
                name.to_string(),
                kg,
                e[0].to_vec(),
                e[1].to_vec(),
                e[2].to_vec(),
            ));
            n += 1;
        }
        flush(&mut batch, &mut n, false)?;
    }
    flush(&mut batch, &mut n, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_survives_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("task.redb");
        let snap = TaskSnapshot {
            operators: vec![
                (
                    "count".into(),
                    KeyedSnapshot {
                        values: vec![("n".into(), 3, b"k".to_vec(), b"1".to_vec())],
                        maps: vec![("m".into(), 9, b"k".to_vec(), b"a".to_vec(), b"v".to_vec())],
                        removed_values: vec![("n".into(), 4, b"gone".to_vec())],
                        removed_maps: vec![("m".into(), 9, b"k".to_vec())],
                        deferred: None,
                    },
                ),
                ("split".into(), KeyedSnapshot::default()),
            ],
            sources: vec![("lines".into(), b"offset 42".to_vec())],
            sinks: vec![("out".into(), b"[]".to_vec())],
            private: vec![("count".into(), b"tally 7".to_vec())],
            finished: true,
        };
        write(&path, &snap).unwrap();
        let ops = ["count".to_string(), "split".to_string()];
        assert_eq!(read(&path, &ops).unwrap(), snap);
        // One key group's part, in batches.
        let mut got = Vec::new();
        read_keyed(&path, "count", 9..10, |b| {
            got.push(b.clone());
            Ok(())
        })
        .unwrap();
        assert_eq!(got.len(), 2, "the removal, then the entries");
        assert_eq!(got[0].removed_maps.len(), 1);
        assert_eq!((got[1].maps.len(), got[1].values.len()), (1, 0));
        let e = read_keyed(&path, "count", 0..100, |_| Err("over budget".into())).unwrap_err();
        assert!(e.to_string().ends_with("task.redb: over budget"), "{e}");
    }

    #[test]
    fn chunks_round_trip_and_malformed_ones_are_refused() {
        let (a, b, long) = (b"k".to_vec(), Vec::new(), vec![7u8; 300]);
        let mut chunk = Vec::new();
        encode(&mut chunk, &[&a, &long]);
        encode(&mut chunk, &[&b, &a]);
        let entries = decode(&chunk, 2).unwrap();
        assert_eq!(entries, vec![vec![&a[..], &long[..]], vec![&b[..], &a[..]]]);
        // Cut anywhere but between entries, or a field count that does not divide it:
        // refused, never a panic.
        let first = 1 + a.len() + 2 + long.len();
        for cut in (1..chunk.len()).filter(|&c| c != first) {
            assert!(decode(&chunk[..cut], 2).is_none(), "cut at {cut}");
        }
        assert_eq!(decode(&chunk[..first], 2).unwrap().len(), 1);
        assert!(decode(&chunk, 3).is_none());
        assert!(decode(&[0xff; 12], 1).is_none(), "a length past 64 bits");
        // Runs split by state and key group, and at CHUNK entries.
        let items: Vec<(u32, u32)> = (0..CHUNK as u32 + 10)
            .map(|i| (0, i))
            .chain([(1, 0), (2, 0), (2, 1)])
            .collect();
        let lens: Vec<usize> = runs(&items, |e| e.0).map(<[_]>::len).collect();
        assert_eq!(lens, [CHUNK, 10, 1, 2]);
    }
}
