//! Key groups, as Flink's KeyGroupRangeAssignment: a key hashes (xxh3-64 of its bytes, seed 0) to
//! a key group in `[0, max_parallelism)`, and key groups map to subtasks in contiguous ranges.
//! State is stored per key group, so it can be redistributed when the parallelism changes.

use std::ops::Range;
use xxhash_rust::xxh3::xxh3_64;

/// The key group of `key`.
pub fn key_group(key: &[u8], max_parallelism: u32) -> u32 {
    key_group_of_hash(hash(key), max_parallelism)
}

/// The hash that places `key` in a key group (keyed state reuses it rather than hash again).
pub fn hash(key: &[u8]) -> u64 {
    xxh3_64(key)
}

/// The key group of a key whose [`hash`] is `hash`.
pub fn key_group_of_hash(hash: u64, max_parallelism: u32) -> u32 {
    (hash % u64::from(max_parallelism)) as u32
}

/// The subtask (of `parallelism`) that owns `key_group`.
pub fn subtask_of(key_group: u32, parallelism: u32, max_parallelism: u32) -> u32 {
    (u64::from(key_group) * u64::from(parallelism) / u64::from(max_parallelism)) as u32
}

/// The key groups subtask `subtask` of `parallelism` owns.
pub fn range_of(subtask: u32, parallelism: u32, max_parallelism: u32) -> Range<u32> {
    let (i, p, m) = (
        u64::from(subtask),
        u64::from(parallelism),
        u64::from(max_parallelism),
    );
    let start = (i * m).div_ceil(p);
    let end = ((i + 1) * m).div_ceil(p);
    start as u32..end as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_partition_the_key_groups_and_agree_with_subtask_of() {
        for max in [1, 2, 7, 128, 1000] {
            for p in 1..=max.min(40) {
                let mut next = 0;
                for s in 0..p {
                    let r = range_of(s, p, max);
                    assert_eq!(r.start, next, "max {max} p {p} s {s}");
                    assert!(!r.is_empty());
                    for kg in r.clone() {
                        assert_eq!(subtask_of(kg, p, max), s);
                    }
                    next = r.end;
                }
                assert_eq!(next, max);
            }
        }
    }

    #[test]
    fn the_hash_is_stable() {
        // Changing the hash would move every key of every savepoint: pin it.
        assert_eq!(xxh3_64(b"hello"), 0x9555e8555c62dcfd);
        assert_eq!(
            key_group(b"hello", 128),
            (0x9555e8555c62dcfd_u64 % 128) as u32
        );
    }
}
