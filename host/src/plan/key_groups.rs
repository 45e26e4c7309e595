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
#[inline]
pub fn hash(key: &[u8]) -> u64 {
    xxh3_64(key)
}

/// The key group of a key whose [`hash`] is `hash`.
#[inline]
pub fn key_group_of_hash(hash: u64, max_parallelism: u32) -> u32 {
    let m = u64::from(max_parallelism);
    // The same value either way; a mask spares the division when, as usual, m is a power of two.
    if m.is_power_of_two() {
        (hash & (m - 1)) as u32
    } else {
        (hash % m) as u32
    }
}

/// The subtask (of `parallelism`) that owns `key_group`.
#[inline]
pub fn subtask_of(key_group: u32, parallelism: u32, max_parallelism: u32) -> u32 {
    let scaled = u64::from(key_group) * u64::from(parallelism);
    // A shift when max parallelism is a power of two: the same quotient without a division.
    if max_parallelism.is_power_of_two() {
        (scaled >> max_parallelism.trailing_zeros()) as u32
    } else {
        (scaled / u64::from(max_parallelism)) as u32
    }
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
    fn key_groups_and_their_subtasks_are_the_plain_modulo_and_quotient() {
        for max in [1u32, 2, 7, 128, 1000, 32768] {
            for i in 0..1000u64 {
                let h = xxh3_64(&i.to_le_bytes());
                assert_eq!(key_group_of_hash(h, max), (h % u64::from(max)) as u32);
                let kg = (i % u64::from(max)) as u32;
                for p in [1, 2, 3, max.min(5), max] {
                    let want = u64::from(kg) * u64::from(p) / u64::from(max);
                    assert_eq!(u64::from(subtask_of(kg, p, max)), want);
                }
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
