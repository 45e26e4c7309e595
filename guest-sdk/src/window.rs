//! Window functions: what the host's window operator (`[windows.X]` in a manifest) runs on
//! the contents of its windows. The host keeps the windows and decides when they fire; a
//! function only folds records and computes results.
//!
//! ```
//! use weir_guest_sdk::prelude::*;
//!
//! /// Sum and count of the (decimal) values of a window.
//! struct SumCount;
//!
//! impl Aggregate for SumCount {
//!     type Acc = (u64, u64);
//!     fn open(_config: Config) -> Result<Self, Error> {
//!         Ok(SumCount)
//!     }
//!     fn create(&self) -> Self::Acc {
//!         (0, 0)
//!     }
//!     fn add(&self, acc: &mut Self::Acc, record: Record<'_>) -> Result<(), Error> {
//!         acc.0 += record.value_str()?.parse::<u64>().map_err(Error::msg)?;
//!         acc.1 += 1;
//!         Ok(())
//!     }
//!     fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) -> Result<(), Error> {
//!         (acc.0, acc.1) = (acc.0 + other.0, acc.1 + other.1);
//!         Ok(())
//!     }
//!     fn result(&self, key: &[u8], window: Window, acc: &Self::Acc) -> Result<Vec<u8>, Error> {
//!         let key = String::from_utf8_lossy(key);
//!         Ok(format!("{key},{},{},{},{}", window.start, window.end, acc.0, acc.1).into_bytes())
//!     }
//! }
//!
//! export_aggregate!(SumCount);
//! # fn main() {}
//! ```

use crate::{Config, Error, Record};
use serde::{Serialize, de::DeserializeOwned};
use weir_batch::lengths;

/// A window: from `start` (included) to `end` (excluded), in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

/// Folds a window's records into an accumulator, as Flink's `AggregateFunction`. The
/// accumulator is kept by the host (in keyed state, so in checkpoints) in the compact binary
/// encoding (postcard).
pub trait Aggregate: Sized + 'static {
    type Acc: Serialize + DeserializeOwned;

    /// Builds the function from its manifest `config` table. An error fails the job.
    fn open(config: Config) -> Result<Self, Error>;

    /// A new, empty accumulator.
    fn create(&self) -> Self::Acc;

    /// Adds one record to `acc`.
    fn add(&self, acc: &mut Self::Acc, record: Record<'_>) -> Result<(), Error>;

    /// Folds `other` into `acc`, when session windows merge. By default an error: a function
    /// used only with tumbling and sliding windows needs none.
    fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) -> Result<(), Error> {
        let _ = (acc, other);
        Err(Error::msg(
            "this aggregate function does not merge accumulators (session windows need `merge`)",
        ))
    }

    /// The value the window emits when it fires (with `key` and the timestamp `end - 1`).
    fn result(&self, key: &[u8], window: Window, acc: &Self::Acc) -> Result<Vec<u8>, Error>;
}

/// Folds a window's records into one value of their own type, as Flink's `ReduceFunction`:
/// the window emits its value as it stands.
pub trait Reduce: Sized + 'static {
    /// Builds the function from its manifest `config` table. An error fails the job.
    fn open(config: Config) -> Result<Self, Error>;

    /// Folds `record`'s value into `value`.
    fn reduce(&self, value: &[u8], record: Record<'_>) -> Result<Vec<u8>, Error>;
}

/// Computes a window's output from all its records at once, as Flink's
/// `ProcessWindowFunction` (the host keeps every record of the window).
pub trait ProcessWindow: Sized + 'static {
    /// Builds the function from its manifest `config` table. An error fails the job.
    fn open(config: Config) -> Result<Self, Error>;

    /// The window of `key` fires with `records` (in arrival order): emit into `out` (records
    /// without a timestamp get `window.end - 1`).
    fn process(
        &self,
        key: &[u8],
        window: Window,
        records: &[Record<'_>],
        out: &mut WindowOutput,
    ) -> Result<(), Error>;
}

/// What a [`ProcessWindow`] emits for one window.
#[derive(Default)]
pub struct WindowOutput {
    batch: Vec<u8>,
}

impl WindowOutput {
    /// Emits a record (without a timestamp: it gets the window's end - 1).
    pub fn emit(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.emit_record(Record::new(key.as_ref(), value.as_ref()));
    }

    /// The values emitted so far, as text (lossy): for tests.
    pub fn values(&self) -> Vec<String> {
        weir_batch::iter(&self.batch)
            .map(|r| String::from_utf8_lossy(r.expect("written by emit").value).into_owned())
            .collect()
    }

    /// Emits a record, with its timestamp if it has one.
    pub fn emit_record(&mut self, record: Record<'_>) {
        weir_batch::push(
            &mut self.batch,
            &weir_batch::Record {
                key: record.key,
                value: record.value,
                timestamp: record.timestamp,
            },
        );
    }
}

fn bad(e: impl std::fmt::Display) -> String {
    format!("the host passed a malformed window batch: {e}")
}

/// Reads one length-prefixed item at `*pos` (`None`: absent).
fn item<'a>(buf: &'a [u8], pos: &mut usize) -> Result<Option<&'a [u8]>, String> {
    let mut it = lengths::iter(&buf[*pos..]);
    let v = it
        .next()
        .ok_or_else(|| bad("an item is missing"))?
        .map_err(bad)?;
    *pos += 4 + v.map_or(0, <[u8]>::len);
    Ok(v)
}

fn u32_at(buf: &[u8], pos: &mut usize) -> Result<u32, String> {
    let b = buf
        .get(*pos..*pos + 4)
        .ok_or_else(|| bad("a count is cut off"))?;
    *pos += 4;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// A window's key and bounds at `*pos`, as the host passes windows that fire.
fn window_at<'a>(buf: &'a [u8], pos: &mut usize) -> Result<(&'a [u8], Window), String> {
    let key = item(buf, pos)?.unwrap_or_default();
    let start = i64_at(buf, pos)?;
    let end = i64_at(buf, pos)?;
    Ok((key, Window { start, end }))
}

fn i64_at(buf: &[u8], pos: &mut usize) -> Result<i64, String> {
    let b: [u8; 8] = (buf.get(*pos..*pos + 8))
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad("a time is cut off"))?;
    *pos += 8;
    Ok(i64::from_le_bytes(b))
}

/// The length-prefixed items of `buf` (`None`: absent).
fn all_items(buf: &[u8]) -> Result<Vec<Option<&[u8]>>, String> {
    lengths::iter(buf).map(|i| i.map_err(bad)).collect()
}

/// Calls `f(group, record)` for each (record index, group index) pair of `pairs`, in order,
/// with the records of `records`; `groups` is how many there are.
fn for_pairs(
    records: &[u8],
    pairs: &[u32],
    groups: usize,
    mut f: impl FnMut(usize, Record<'_>) -> Result<(), String>,
) -> Result<(), String> {
    if !pairs.len().is_multiple_of(2) {
        return Err(bad("an odd number of pair items"));
    }
    let mut iter = weir_batch::iter(records);
    let mut current: Option<(u32, Record<'_>)> = None;
    let mut next_index = 0u32;
    for pair in pairs.chunks_exact(2) {
        let (r, g) = (pair[0], pair[1] as usize);
        if g >= groups {
            return Err(bad(format!("group {g} of {groups}")));
        }
        while current.is_none_or(|(i, _)| i < r) {
            let record = iter
                .next()
                .ok_or_else(|| bad(format!("record {r} is past the batch's end")))?
                .map_err(bad)?;
            current = Some((next_index, Record::from(record)));
            next_index += 1;
        }
        match current {
            Some((i, record)) if i == r => f(g, record)?,
            _ => return Err(bad("pairs are not in record order")),
        }
    }
    Ok(())
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    postcard::to_allocvec(value).map_err(|e| format!("the accumulator does not encode: {e}"))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    postcard::from_bytes(bytes).map_err(|e| format!("an accumulator does not decode: {e}"))
}

/// The glue between the exports and an [`Aggregate`] or a [`Reduce`].
#[doc(hidden)]
pub mod runtime {
    use super::*;
    use std::any::Any;
    use std::cell::RefCell;

    thread_local! {
        static FUNCTION: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
    }

    fn with<T: 'static, R>(f: impl FnOnce(&T) -> Result<R, String>) -> Result<R, String> {
        FUNCTION.with(|slot| {
            let slot = slot.borrow();
            let function = (slot.as_ref())
                .and_then(|b| b.downcast_ref::<T>())
                .ok_or_else(|| "window function called before open".to_string())?;
            f(function)
        })
    }

    fn install<T: 'static>(function: Result<T, Error>) -> Result<(), String> {
        if cfg!(target_family = "wasm") {
            std::panic::set_hook(Box::new(|info| {
                crate::log::log(
                    crate::log::Level::Error,
                    &format!("operator panicked: {info}"),
                );
            }));
        }
        let function = function.map_err(|e| e.to_string())?;
        FUNCTION.with(|slot| *slot.borrow_mut() = Some(Box::new(function)));
        Ok(())
    }

    pub fn aggregate_open<T: Aggregate>(config: String) -> Result<(), String> {
        install(T::open(Config::from_json(config)))
    }

    pub fn aggregate_add<T: Aggregate>(
        accumulators: &[u8],
        records: &[u8],
        pairs: &[u32],
    ) -> Result<Vec<u8>, String> {
        with::<T, _>(|f| {
            let mut accs = Vec::new();
            for acc in all_items(accumulators)? {
                accs.push(match acc {
                    Some(bytes) => decode(bytes)?,
                    None => f.create(),
                });
            }
            for_pairs(records, pairs, accs.len(), |g, r| {
                f.add(&mut accs[g], r).map_err(|e| e.to_string())
            })?;
            let mut out = Vec::with_capacity(accs.len() * 16);
            for acc in &accs {
                lengths::push(&mut out, Some(&encode(acc)?));
            }
            Ok(out)
        })
    }

    pub fn aggregate_merge<T: Aggregate>(sets: &[u8]) -> Result<Vec<u8>, String> {
        with::<T, _>(|f| {
            let mut out = Vec::new();
            let mut pos = 0;
            while pos < sets.len() {
                let n = u32_at(sets, &mut pos)?;
                let mut acc: Option<T::Acc> = None;
                for _ in 0..n {
                    let bytes =
                        item(sets, &mut pos)?.ok_or_else(|| bad("an absent accumulator"))?;
                    let other = decode(bytes)?;
                    match &mut acc {
                        None => acc = Some(other),
                        Some(a) => f.merge(a, other).map_err(|e| e.to_string())?,
                    }
                }
                let acc = acc.unwrap_or_else(|| f.create());
                lengths::push(&mut out, Some(&encode(&acc)?));
            }
            Ok(out)
        })
    }

    pub fn aggregate_result<T: Aggregate>(windows: &[u8]) -> Result<Vec<u8>, String> {
        with::<T, _>(|f| {
            let mut out = Vec::new();
            let mut pos = 0;
            while pos < windows.len() {
                let (key, window) = window_at(windows, &mut pos)?;
                let acc = item(windows, &mut pos)?.ok_or_else(|| bad("an absent accumulator"))?;
                let value = f
                    .result(key, window, &decode(acc)?)
                    .map_err(|e| e.to_string())?;
                lengths::push(&mut out, Some(&value));
            }
            Ok(out)
        })
    }

    pub fn process_open<T: ProcessWindow>(config: String) -> Result<(), String> {
        install(T::open(Config::from_json(config)))
    }

    pub fn process<T: ProcessWindow>(windows: &[u8]) -> Result<Vec<u8>, String> {
        with::<T, _>(|f| {
            let mut out = Vec::new();
            let mut pos = 0;
            while pos < windows.len() {
                let (key, window) = window_at(windows, &mut pos)?;
                let count = u32_at(windows, &mut pos)?;
                let mut iter = weir_batch::iter(&windows[pos..]);
                let mut records = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    let (r, raw) = iter
                        .next_raw()
                        .ok_or_else(|| bad("a window has fewer records than it says"))?
                        .map_err(bad)?;
                    pos += raw.len();
                    records.push(Record::from(r));
                }
                let mut emitted = WindowOutput::default();
                f.process(key, window, &records, &mut emitted)
                    .map_err(|e| e.to_string())?;
                lengths::push(&mut out, Some(&emitted.batch));
            }
            Ok(out)
        })
    }

    pub fn reduce_open<T: Reduce>(config: String) -> Result<(), String> {
        install(T::open(Config::from_json(config)))
    }

    pub fn reduce<T: Reduce>(
        values: &[u8],
        records: &[u8],
        pairs: &[u32],
    ) -> Result<Vec<u8>, String> {
        with::<T, _>(|f| {
            let mut values: Vec<Option<Vec<u8>>> = all_items(values)?
                .into_iter()
                .map(|v| v.map(<[u8]>::to_vec))
                .collect();
            for_pairs(records, pairs, values.len(), |g, r| {
                values[g] = Some(match values[g].take() {
                    None => r.value.to_vec(),
                    Some(v) => f.reduce(&v, r).map_err(|e| e.to_string())?,
                });
                Ok(())
            })?;
            let mut out = Vec::new();
            for v in &values {
                let v = v
                    .as_deref()
                    .ok_or_else(|| bad("a group with no value and no records"))?;
                lengths::push(&mut out, Some(v));
            }
            Ok(out)
        })
    }
}

/// Exports a type implementing [`Aggregate`] as the component's
/// `weir:operator/window-aggregate` world.
#[macro_export]
macro_rules! export_aggregate {
    ($ty:ty) => {
        #[doc(hidden)]
        #[cfg(target_family = "wasm")]
        struct __WeirAggregateExports;

        #[cfg(target_family = "wasm")]
        impl $crate::bindings::aggregate::exports::weir::operator::aggregate_handler::Guest for __WeirAggregateExports {
            fn open(config: ::std::string::String) -> ::std::result::Result<(), ::std::string::String> {
                $crate::window::runtime::aggregate_open::<$ty>(config)
            }
            fn add(
                accumulators: ::std::vec::Vec<u8>,
                records: ::std::vec::Vec<u8>,
                pairs: ::std::vec::Vec<u32>,
            ) -> ::std::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                $crate::window::runtime::aggregate_add::<$ty>(&accumulators, &records, &pairs)
            }
            fn merge(sets: ::std::vec::Vec<u8>) -> ::std::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                $crate::window::runtime::aggregate_merge::<$ty>(&sets)
            }
            fn get_result(windows: ::std::vec::Vec<u8>) -> ::std::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                $crate::window::runtime::aggregate_result::<$ty>(&windows)
            }
        }

        #[cfg(target_family = "wasm")]
        $crate::bindings::aggregate::__export_aggregate_world!(
            __WeirAggregateExports with_types_in $crate::bindings::aggregate
        );
    };
}

/// Exports a type implementing [`Reduce`] as the component's `weir:operator/window-reduce`
/// world.
#[macro_export]
macro_rules! export_reduce {
    ($ty:ty) => {
        #[doc(hidden)]
        #[cfg(target_family = "wasm")]
        struct __WeirReduceExports;

        #[cfg(target_family = "wasm")]
        impl $crate::bindings::reduce::exports::weir::operator::reduce_handler::Guest for __WeirReduceExports {
            fn open(config: ::std::string::String) -> ::std::result::Result<(), ::std::string::String> {
                $crate::window::runtime::reduce_open::<$ty>(config)
            }
            fn reduce(
                values: ::std::vec::Vec<u8>,
                records: ::std::vec::Vec<u8>,
                pairs: ::std::vec::Vec<u32>,
            ) -> ::std::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                $crate::window::runtime::reduce::<$ty>(&values, &records, &pairs)
            }
        }

        #[cfg(target_family = "wasm")]
        $crate::bindings::reduce::__export_reduce_world!(
            __WeirReduceExports with_types_in $crate::bindings::reduce
        );
    };
}

/// Exports a type implementing [`ProcessWindow`] as the component's
/// `weir:operator/window-process` world.
#[macro_export]
macro_rules! export_process_window {
    ($ty:ty) => {
        #[doc(hidden)]
        #[cfg(target_family = "wasm")]
        struct __WeirProcessExports;

        #[cfg(target_family = "wasm")]
        impl $crate::bindings::process::exports::weir::operator::process_handler::Guest for __WeirProcessExports {
            fn open(config: ::std::string::String) -> ::std::result::Result<(), ::std::string::String> {
                $crate::window::runtime::process_open::<$ty>(config)
            }
            fn process(
                windows: ::std::vec::Vec<u8>,
            ) -> ::std::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                $crate::window::runtime::process::<$ty>(&windows)
            }
        }

        #[cfg(target_family = "wasm")]
        $crate::bindings::process::__export_process_world!(
            __WeirProcessExports with_types_in $crate::bindings::process
        );
    };
}

#[cfg(test)]
mod tests {
    use super::runtime;
    use super::*;

    struct SumCount;

    impl Aggregate for SumCount {
        type Acc = (u64, u64);
        fn open(_config: Config) -> Result<Self, Error> {
            Ok(SumCount)
        }
        fn create(&self) -> Self::Acc {
            (0, 0)
        }
        fn add(&self, acc: &mut Self::Acc, record: Record<'_>) -> Result<(), Error> {
            acc.0 += record.value_str()?.parse::<u64>().map_err(Error::msg)?;
            acc.1 += 1;
            Ok(())
        }
        fn merge(&self, acc: &mut Self::Acc, other: Self::Acc) -> Result<(), Error> {
            (acc.0, acc.1) = (acc.0 + other.0, acc.1 + other.1);
            Ok(())
        }
        fn result(&self, key: &[u8], w: Window, acc: &Self::Acc) -> Result<Vec<u8>, Error> {
            let key = String::from_utf8_lossy(key);
            Ok(format!("{key},{},{},{},{}", w.start, w.end, acc.0, acc.1).into_bytes())
        }
    }

    fn records(values: &[&str]) -> Vec<u8> {
        let mut b = Vec::new();
        for v in values {
            weir_batch::push(&mut b, &weir_batch::Record::new(b"k", v.as_bytes()));
        }
        b
    }

    /// Accumulators (or values), records and pairs for groups of record values.
    fn groups(groups: &[(Option<&[u8]>, &[&str])]) -> (Vec<u8>, Vec<u8>, Vec<u32>) {
        let (mut accs, mut values, mut pairs) = (Vec::new(), Vec::new(), Vec::new());
        for (g, (acc, vs)) in groups.iter().enumerate() {
            lengths::push(&mut accs, *acc);
            for v in *vs {
                pairs.extend([values.len() as u32, g as u32]);
                values.push(*v);
            }
        }
        (accs, records(&values), pairs)
    }

    fn items(buf: &[u8]) -> Vec<Vec<u8>> {
        lengths::iter(buf)
            .map(|i| i.unwrap().unwrap().to_vec())
            .collect()
    }

    #[test]
    fn an_aggregate_adds_merges_and_gives_results_through_the_flat_calls() {
        runtime::aggregate_open::<SumCount>("{}".into()).unwrap();
        let ten = encode(&(10u64, 1u64)).unwrap();
        let (a, r, p) = groups(&[(None, &["1", "2"]), (Some(&ten), &["5"])]);
        let accs = items(&runtime::aggregate_add::<SumCount>(&a, &r, &p).unwrap());
        assert_eq!(accs.len(), 2);
        assert_eq!(decode::<(u64, u64)>(&accs[0]).unwrap(), (3, 2));
        assert_eq!(decode::<(u64, u64)>(&accs[1]).unwrap(), (15, 2));

        let mut sets = 2u32.to_le_bytes().to_vec();
        lengths::push(&mut sets, Some(&accs[0]));
        lengths::push(&mut sets, Some(&accs[1]));
        let merged = items(&runtime::aggregate_merge::<SumCount>(&sets).unwrap());
        assert_eq!(decode::<(u64, u64)>(&merged[0]).unwrap(), (18, 4));

        let mut windows = Vec::new();
        lengths::push(&mut windows, Some(b"770"));
        windows.extend_from_slice(&0i64.to_le_bytes());
        windows.extend_from_slice(&10_000i64.to_le_bytes());
        lengths::push(&mut windows, Some(&merged[0]));
        let results = items(&runtime::aggregate_result::<SumCount>(&windows).unwrap());
        assert_eq!(results, [b"770,0,10000,18,4".to_vec()]);

        // Record 1 alone (record 0 in no window) is fine; a pair past the batch's end, a
        // group that is not there, pairs out of order or an odd count are not.
        let (a, r, _) = groups(&[(None, &["1", "2"])]);
        let only_second = items(&runtime::aggregate_add::<SumCount>(&a, &r, &[1, 0]).unwrap());
        assert_eq!(decode::<(u64, u64)>(&only_second[0]).unwrap(), (2, 1));
        for pairs in [&[2u32, 0][..], &[0, 1], &[1, 0, 0, 0], &[0]] {
            let e = runtime::aggregate_add::<SumCount>(&a, &r, pairs).unwrap_err();
            assert!(e.contains("malformed window batch"), "{pairs:?}: {e}");
        }
    }

    struct Longest;

    impl Reduce for Longest {
        fn open(_config: Config) -> Result<Self, Error> {
            Ok(Longest)
        }
        fn reduce(&self, value: &[u8], record: Record<'_>) -> Result<Vec<u8>, Error> {
            Ok(if record.value.len() > value.len() {
                record.value
            } else {
                value
            }
            .to_vec())
        }
    }

    #[test]
    fn a_reduce_starts_from_the_first_record_or_the_value_it_had() {
        runtime::reduce_open::<Longest>("{}".into()).unwrap();
        let (v, r, p) = groups(&[(None, &["ab", "abcd", "a"]), (Some(b"xyz"), &["q"])]);
        let values = items(&runtime::reduce::<Longest>(&v, &r, &p).unwrap());
        assert_eq!(values, [b"abcd".to_vec(), b"xyz".to_vec()]);
    }
}
