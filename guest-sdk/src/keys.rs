//! The distinct keys of a batch, for keyed operators that read and write their state once per
//! batch (`ValueState::get_many` / `set_many` in [`Operator::process_batch`](crate::Operator::process_batch)).

use crate::Record;
use crate::text::load;

/// The distinct keys of a batch in first-seen order, and for each record the position of its key
/// among them.
///
/// ```
/// use weir_guest_sdk::{Record, keys::Distinct};
/// let records = [Record::new("a", "1"), Record::new("b", "2"), Record::new("a", "3")];
/// let distinct = Distinct::of(&records);
/// assert_eq!(distinct.keys(), [&b"a"[..], b"b"]);
/// assert_eq!(distinct.positions(), [0, 1, 0]);
/// ```
///
/// It does what a `HashMap<&[u8], usize>` would, several times cheaper inside a component: keys
/// are hashed and compared a 64-bit word at a time, where the standard hasher and slice equality
/// go byte by byte (and slice equality calls `memcmp`, a byte loop in WASM), and the table is a
/// flat array probed inline.
#[derive(Debug, Clone, Default)]
pub struct Distinct<'a> {
    keys: Vec<&'a [u8]>,
    positions: Vec<u32>,
}

impl<'a> Distinct<'a> {
    /// The distinct keys of `records`.
    pub fn of(records: &[Record<'a>]) -> Self {
        // Open addressing with linear probing over a table at most half full: slots hold a
        // position in `keys` (or EMPTY), and `hashes` the full hash of each distinct key, so a
        // probe compares keys only when their hashes are equal.
        const EMPTY: u32 = u32::MAX;
        let mask = (records.len() * 2).next_power_of_two().max(16) - 1;
        let mut slots = vec![EMPTY; mask + 1];
        let mut keys: Vec<&'a [u8]> = Vec::with_capacity(records.len());
        let mut hashes: Vec<u64> = Vec::with_capacity(records.len());
        let positions = records
            .iter()
            .map(|r| {
                let h = hash(r.key);
                let mut i = h as usize & mask;
                loop {
                    let slot = slots[i];
                    if slot == EMPTY {
                        slots[i] = keys.len() as u32;
                        keys.push(r.key);
                        hashes.push(h);
                        return slot_of(&keys);
                    }
                    if hashes[slot as usize] == h
                        && weir_batch::same_bytes(keys[slot as usize], r.key)
                    {
                        return slot;
                    }
                    i = (i + 1) & mask;
                }
            })
            .collect();
        Distinct { keys, positions }
    }

    /// The distinct keys, in the order they first appear.
    pub fn keys(&self) -> &[&'a [u8]] {
        &self.keys
    }

    /// For each record, in order, the position of its key in [`Distinct::keys`].
    pub fn positions(&self) -> &[u32] {
        &self.positions
    }
}

/// The position of the key just pushed.
#[inline(always)]
fn slot_of(keys: &[&[u8]]) -> u32 {
    (keys.len() - 1) as u32
}

/// A key's hash, a word at a time, mixed into every bit (the low bits pick the slot). Keys of
/// up to 16 bytes, the usual ones, take no loop.
#[inline(always)]
fn hash(key: &[u8]) -> u64 {
    let n = key.len();
    let h = match n {
        0..=8 => step((n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15), load(key, 0)),
        9..=16 => step(
            step((n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15), load(key, 0)),
            load(&key[n - 8..], 0),
        ),
        _ => hash_long(key),
    };
    let h = h.wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^ (h >> 29)
}

#[inline(always)]
fn step(h: u64, word: u64) -> u64 {
    let h = (h ^ word).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^ (h >> 31)
}

#[inline(never)]
fn hash_long(key: &[u8]) -> u64 {
    let mut h = (key.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for chunk in key.chunks(8) {
        h = step(h, load(chunk, 0));
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_distinct_keys_of_every_length_in_first_seen_order() {
        let words: Vec<Vec<u8>> = (0..40)
            .flat_map(|len| {
                [vec![b'x'; len], {
                    let mut v = vec![b'x'; len];
                    if let Some(last) = v.last_mut() {
                        *last = b'y';
                    }
                    v
                }]
            })
            .collect();
        let records: Vec<Record<'_>> = words
            .iter()
            .chain(words.iter().rev())
            .map(|w| Record::new(w, ""))
            .collect();
        let distinct = Distinct::of(&records);
        let mut expected: Vec<&[u8]> = Vec::new();
        for w in &words {
            if !expected.contains(&w.as_slice()) {
                expected.push(w);
            }
        }
        assert_eq!(distinct.keys(), expected);
        for (r, &p) in records.iter().zip(distinct.positions()) {
            assert_eq!(distinct.keys()[p as usize], r.key);
        }
    }
}
