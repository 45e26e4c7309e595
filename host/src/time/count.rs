//! Count windows, as Flink's `countWindow`: a key's records in a global window whose trigger
//! counts them.
//!
//! - `countWindow(size)`: every `size`-th record of a key fires the window with those `size`
//!   records, then empties it.
//! - `countWindow(size, slide)`: every `slide`-th record fires it with the key's last `size`
//!   records (older ones are evicted first, so a key keeps at most `size`).
//!
//! Either way the last, partial window of a key never fires. Without I/O: fed a key, it says
//! what the caller does with the records it keeps for the key.

use std::collections::BTreeMap;

/// What the caller does, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CountAction<K> {
    /// Keep the record for `key`.
    Add { key: K },
    /// Keep only the newest `keep` records of `key`.
    Evict { key: K, keep: u64 },
    /// Emit the result over `key`'s records.
    Fire { key: K },
    /// Forget `key`'s records.
    Purge { key: K },
}

/// The count windows of one operator subtask.
#[derive(Debug)]
pub struct CountWindows<K: Ord + Clone> {
    size: u64,
    slide: u64,
    /// Per key: records since its last firing.
    counts: BTreeMap<K, u64>,
}

impl<K: Ord + Clone> CountWindows<K> {
    /// Windows of `size` records every `slide` records (`slide == size`: tumbling).
    pub fn new(size: u64, slide: u64) -> Result<Self, String> {
        if size == 0 || slide == 0 {
            return Err("a count window's size and slide must be positive".into());
        }
        if slide > size {
            return Err(format!(
                "the slide ({slide}) is larger than the size ({size}): records between windows would be in none"
            ));
        }
        Ok(CountWindows {
            size,
            slide,
            counts: BTreeMap::new(),
        })
    }

    /// A record of `key`.
    pub fn on_record(&mut self, key: K) -> Vec<CountAction<K>> {
        let mut out = vec![CountAction::Add { key: key.clone() }];
        let count = self.counts.entry(key.clone()).or_default();
        *count += 1;
        if *count < self.slide {
            return out;
        }
        *count = 0;
        if self.slide == self.size {
            out.push(CountAction::Fire { key: key.clone() });
            out.push(CountAction::Purge { key: key.clone() });
            self.counts.remove(&key);
        } else {
            out.push(CountAction::Evict {
                key: key.clone(),
                keep: self.size,
            });
            out.push(CountAction::Fire { key });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `records` keys through windows of `size` every `slide`, keeping each key's records
    /// as the actions say; the windows fired, each as the records it held.
    fn run(
        size: u64,
        slide: u64,
        records: &[(&'static str, u32)],
    ) -> Vec<(&'static str, Vec<u32>)> {
        let mut windows = CountWindows::new(size, slide).unwrap();
        let mut kept: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
        let mut fired = Vec::new();
        for &(key, value) in records {
            for action in windows.on_record(key) {
                match action {
                    CountAction::Add { key } => kept.entry(key).or_default().push(value),
                    CountAction::Evict { key, keep } => {
                        let v = kept.entry(key).or_default();
                        let drop = v.len().saturating_sub(keep as usize);
                        v.drain(..drop);
                    }
                    CountAction::Fire { key } => fired.push((key, kept[key].clone())),
                    CountAction::Purge { key } => {
                        kept.remove(key);
                    }
                }
            }
        }
        fired
    }

    #[test]
    fn tumbling_count_windows_fire_every_size_records_and_never_the_partial_last() {
        let records: Vec<(&str, u32)> = (1..=7).map(|v| ("a", v)).chain([("b", 100)]).collect();
        assert_eq!(
            run(3, 3, &records),
            [("a", vec![1, 2, 3]), ("a", vec![4, 5, 6])]
        );
    }

    #[test]
    fn sliding_count_windows_fire_every_slide_records_with_the_last_size() {
        let records: Vec<(&str, u32)> = (1..=7).map(|v| ("a", v)).collect();
        assert_eq!(
            run(4, 2, &records),
            [
                ("a", vec![1, 2]),
                ("a", vec![1, 2, 3, 4]),
                ("a", vec![3, 4, 5, 6])
            ]
        );
    }

    #[test]
    fn bad_count_windows_are_refused() {
        assert!(CountWindows::<u8>::new(0, 1).is_err());
        assert!(CountWindows::<u8>::new(3, 0).is_err());
        assert!(CountWindows::<u8>::new(3, 4).is_err());
    }
}
