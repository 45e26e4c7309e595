//! Keyed state of one operator subtask, in memory, stored per key group so that a key group's
//! state can move to another subtask when the job is rescaled.

use crate::plan::key_groups;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;

/// A state call the subtask must refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateAccessError {
    /// The key belongs to another subtask's key groups.
    KeyOutsideKeyGroups {
        key_group: u32,
        range: Range<u32>,
        key_preview: String,
    },
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
        }
    }
}

/// Keys are short and trusted to the host's own process: a fast hash beats SipHash here.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type Entries = Map<Vec<u8>, Vec<u8>>;
/// The entries of one key's map state, ordered by map key.
type MapEntries = BTreeMap<Vec<u8>, Vec<u8>>;
/// Key-value pairs as map-state calls return them.
pub type EntryList = Vec<(Vec<u8>, Vec<u8>)>;

#[derive(Default, Debug)]
struct KeyGroupState {
    values: Map<String, Entries>,
    maps: Map<String, Map<Vec<u8>, MapEntries>>,
}

/// The keyed state of one subtask: its key groups and, in each, named value and map states.
#[derive(Debug)]
pub struct KeyedState {
    range: Range<u32>,
    max_parallelism: u32,
    groups: Vec<KeyGroupState>,
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

fn table<'a, V: Default>(tables: &'a mut Map<String, V>, name: &str) -> &'a mut V {
    // Look up by &str first so the common case allocates nothing.
    if !tables.contains_key(name) {
        tables.insert(name.to_string(), V::default());
    }
    tables.get_mut(name).expect("inserted above")
}

impl KeyedState {
    /// Empty state for the key groups `range` (of `max_parallelism`).
    pub fn new(range: Range<u32>, max_parallelism: u32) -> Self {
        let groups = range.clone().map(|_| KeyGroupState::default()).collect();
        KeyedState {
            range,
            max_parallelism,
            groups,
        }
    }

    fn group(&mut self, key: &[u8]) -> Result<&mut KeyGroupState, StateAccessError> {
        let kg = key_groups::key_group(key, self.max_parallelism);
        if !self.range.contains(&kg) {
            return Err(StateAccessError::KeyOutsideKeyGroups {
                key_group: kg,
                range: self.range.clone(),
                key_preview: preview(key),
            });
        }
        Ok(&mut self.groups[(kg - self.range.start) as usize])
    }

    pub fn value_get(&mut self, name: &str, key: &[u8]) -> Result<Option<&[u8]>, StateAccessError> {
        let g = self.group(key)?;
        Ok(g.values
            .get(name)
            .and_then(|t| t.get(key))
            .map(Vec::as_slice))
    }

    /// Sets a value, reusing the stored key and buffer when the key already has one.
    pub fn value_set(
        &mut self,
        name: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), StateAccessError> {
        let g = self.group(key)?;
        let t = table(&mut g.values, name);
        match t.get_mut(key) {
            Some(v) => {
                v.clear();
                v.extend_from_slice(value);
            }
            None => {
                t.insert(key.to_vec(), value.to_vec());
            }
        }
        Ok(())
    }

    pub fn value_clear(&mut self, name: &str, key: &[u8]) -> Result<(), StateAccessError> {
        let g = self.group(key)?;
        if let Some(t) = g.values.get_mut(name) {
            t.remove(key);
        }
        Ok(())
    }

    pub fn map_get(
        &mut self,
        name: &str,
        key: &[u8],
        map_key: &[u8],
    ) -> Result<Option<&[u8]>, StateAccessError> {
        let g = self.group(key)?;
        Ok(g.maps
            .get(name)
            .and_then(|t| t.get(key))
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
        let g = self.group(&key)?;
        table(&mut g.maps, name)
            .entry(key)
            .or_default()
            .insert(map_key, value);
        Ok(())
    }

    pub fn map_remove(
        &mut self,
        name: &str,
        key: &[u8],
        map_key: &[u8],
    ) -> Result<(), StateAccessError> {
        let g = self.group(key)?;
        if let Some(m) = g.maps.get_mut(name).and_then(|t| t.get_mut(key)) {
            m.remove(map_key);
            if m.is_empty() {
                g.maps.get_mut(name).map(|t| t.remove(key));
            }
        }
        Ok(())
    }

    pub fn map_entries(&mut self, name: &str, key: &[u8]) -> Result<EntryList, StateAccessError> {
        let g = self.group(key)?;
        let m = g.maps.get(name).and_then(|t| t.get(key));
        Ok(
            m.map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
        )
    }

    pub fn map_clear(&mut self, name: &str, key: &[u8]) -> Result<(), StateAccessError> {
        let g = self.group(key)?;
        if let Some(t) = g.maps.get_mut(name) {
            t.remove(key);
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
        let mut s = KeyedState::new(0..128, 128);
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
    fn refuses_keys_outside_its_key_groups() {
        let range = key_groups::range_of(1, 4, 128);
        let mut s = KeyedState::new(range.clone(), 128);
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
