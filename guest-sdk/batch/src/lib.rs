//! The flat batch format: how records cross the host/guest boundary and travel through channels.
//!
//! A batch is one byte buffer with records laid end to end. Each record is
//!
//! ```text
//! flags: u8          bit 0 set = a timestamp follows
//! key-len: u32 LE
//! value-len: u32 LE
//! timestamp: i64 LE  only when flags bit 0 is set
//! key, value         the bytes themselves
//! ```
//!
//! One flat buffer per call is what makes the WASM boundary cheap (see `wit/operator.wit`), and the
//! same buffer is what a channel carries, so a batch moves from guest to channel to guest without
//! being re-encoded. Host and guests share this crate so both sides read and write it the same way.

#![no_std]
extern crate alloc;

use alloc::vec::Vec;
use core::fmt;

pub mod lengths;

const HAS_TIMESTAMP: u8 = 1;
const HEADER: usize = 1 + 4 + 4;

/// One record, borrowed from a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// The record's key: what `hash` partitioning and keyed state use.
    pub key: &'a [u8],
    /// The record's value; its encoding is the operators' business.
    pub value: &'a [u8],
    /// Event time in milliseconds since the epoch, if the record has one.
    pub timestamp: Option<i64>,
}

impl<'a> Record<'a> {
    /// A record without a timestamp.
    pub fn new(key: &'a [u8], value: &'a [u8]) -> Self {
        Record {
            key,
            value,
            timestamp: None,
        }
    }

    /// How many bytes this record takes in a batch.
    pub fn encoded_len(&self) -> usize {
        encoded_len(self.key.len(), self.value.len(), self.timestamp.is_some())
    }
}

/// How many bytes a record with these lengths takes in a batch.
pub fn encoded_len(key_len: usize, value_len: usize, has_timestamp: bool) -> usize {
    HEADER + if has_timestamp { 8 } else { 0 } + key_len + value_len
}

/// Appends one record to `buf`.
///
/// Keys and values longer than `u32::MAX` bytes cannot be represented; callers bound record sizes
/// far below that.
#[inline(always)]
pub fn push(buf: &mut Vec<u8>, record: &Record<'_>) {
    let start = buf.len();
    let len = record.encoded_len();
    buf.reserve(len);
    // SAFETY: `reserve` made room for `len` bytes past `start`, and exactly `len` are written
    // before the length is set.
    unsafe {
        let at = buf.as_mut_ptr().add(start);
        let body = write_header(at, record.key.len(), record.value.len(), record.timestamp);
        copy_short(record.key, body);
        copy_short(record.value, body.add(record.key.len()));
        buf.set_len(start + len);
    }
}

/// Appends `bytes` to `buf`, as `extend_from_slice` does, but without a call for short slices:
/// in WASM a general copy is `memory.copy`, which leaves the guest's code for the runtime's and
/// costs more than copying a few bytes.
#[inline]
pub fn extend(buf: &mut Vec<u8>, bytes: &[u8]) {
    let start = buf.len();
    buf.reserve(bytes.len());
    // SAFETY: `reserve` made room for `bytes.len()` bytes past `start`, all of which are written.
    unsafe {
        copy_short(bytes, buf.as_mut_ptr().add(start));
        buf.set_len(start + bytes.len());
    }
}

/// Writes a record header (flags, lengths, timestamp) at `at`; returns where the key goes.
///
/// # Safety
/// `at` must be valid for writing the header's bytes.
#[inline(always)]
unsafe fn write_header(at: *mut u8, key_len: usize, value_len: usize, ts: Option<i64>) -> *mut u8 {
    unsafe {
        at.write(if ts.is_some() { HAS_TIMESTAMP } else { 0 });
        at.add(1)
            .cast::<[u8; 4]>()
            .write_unaligned((key_len as u32).to_le_bytes());
        at.add(5)
            .cast::<[u8; 4]>()
            .write_unaligned((value_len as u32).to_le_bytes());
        match ts {
            Some(ts) => {
                at.add(HEADER)
                    .cast::<[u8; 8]>()
                    .write_unaligned(ts.to_le_bytes());
                at.add(HEADER + 8)
            }
            None => at.add(HEADER),
        }
    }
}

/// Copies `src` to `dst`. Keys and values are mostly a few bytes long: fixed-size (possibly
/// overlapping) loads and stores copy them in a handful of instructions, where a general copy
/// costs a call (in WASM, `memory.copy` leaves the guest's code for the runtime's).
///
/// # Safety
/// `dst` must be valid for writing `src.len()` bytes, and not overlap `src`.
#[inline(always)]
unsafe fn copy_short(src: &[u8], dst: *mut u8) {
    let (n, s) = (src.len(), src.as_ptr());
    // SAFETY (all arms): every load reads within `src` and every store writes within the
    // `n` bytes at `dst`; overlapping stores write the same bytes twice.
    unsafe {
        if n > 32 {
            core::ptr::copy_nonoverlapping(s, dst, n);
        } else if n > 16 {
            copy_words::<u64>(s, dst, 0);
            copy_words::<u64>(s, dst, 8);
            copy_words::<u64>(s, dst, n - 16);
            copy_words::<u64>(s, dst, n - 8);
        } else if n >= 8 {
            copy_words::<u64>(s, dst, 0);
            copy_words::<u64>(s, dst, n - 8);
        } else if n >= 4 {
            copy_words::<u32>(s, dst, 0);
            copy_words::<u32>(s, dst, n - 4);
        } else if n > 0 {
            // 1 to 3 bytes: first, middle and last (not a loop, which LLVM turns back into a
            // general copy).
            dst.write(*s);
            dst.add(n / 2).write(*s.add(n / 2));
            dst.add(n - 1).write(*s.add(n - 1));
        }
    }
}

/// Copies one `W` from `src + at` to `dst + at`.
///
/// # Safety
/// Both ranges must be valid for `size_of::<W>()` bytes.
#[inline(always)]
unsafe fn copy_words<W: Copy>(src: *const u8, dst: *mut u8, at: usize) {
    unsafe {
        let word = src.add(at).cast::<W>().read_unaligned();
        dst.add(at).cast::<W>().write_unaligned(word);
    }
}

/// Whether two byte strings are equal, comparing keys of up to 16 bytes (most keys) by words:
/// cheaper than a `memcmp` call natively, and than `memcmp`'s byte loop in a component. Host
/// and guests share it for key lookups.
#[inline]
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if a.len() <= 16 {
        // Overlapping reads of the first and last word (or half word) cover every byte.
        if let (Some(a0), Some(a1), Some(b0), Some(b1)) = (
            a.first_chunk::<8>(),
            a.last_chunk::<8>(),
            b.first_chunk::<8>(),
            b.last_chunk::<8>(),
        ) {
            return a0 == b0 && a1 == b1;
        }
        if let (Some(a0), Some(a1), Some(b0), Some(b1)) = (
            a.first_chunk::<4>(),
            a.last_chunk::<4>(),
            b.first_chunk::<4>(),
            b.last_chunk::<4>(),
        ) {
            return a0 == b0 && a1 == b1;
        }
    }
    a == b
}

/// A record appended by [`begin`] whose value is still being written.
#[must_use = "finish the record with `finish`, or drop it by truncating the buffer"]
pub struct Unfinished {
    /// Where the record starts in the buffer.
    start: usize,
    /// Where its value starts.
    value: usize,
}

impl Unfinished {
    /// Where the record starts: truncate the buffer to this to drop it.
    pub fn start(&self) -> usize {
        self.start
    }
}

/// Appends the header and key of a record whose value the caller then appends to `buf` itself,
/// in place (an encoder writing straight into the batch, with no copy through a scratch buffer);
/// [`finish`] then sets the value's length.
#[inline]
pub fn begin(buf: &mut Vec<u8>, key: &[u8], timestamp: Option<i64>) -> Unfinished {
    let start = buf.len();
    let len = encoded_len(key.len(), 0, timestamp.is_some());
    buf.reserve(len);
    // SAFETY: as in `push`: room for `len` bytes was reserved and `len` are written.
    unsafe {
        let body = write_header(buf.as_mut_ptr().add(start), key.len(), 0, timestamp);
        copy_short(key, body);
        buf.set_len(start + len);
    }
    Unfinished {
        start,
        value: start + len,
    }
}

/// Completes a record begun with [`begin`]: everything appended since is its value.
#[inline]
pub fn finish(buf: &mut [u8], record: Unfinished) {
    let value_len = (buf.len() - record.value) as u32;
    buf[record.start + 5..record.start + HEADER].copy_from_slice(&value_len.to_le_bytes());
}

/// A batch that does not follow the format: truncated, or with unknown flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormatError {
    /// Byte offset of the record that could not be read.
    pub offset: usize,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "malformed batch at byte {}: {}",
            self.offset, self.reason
        )
    }
}

impl core::error::Error for FormatError {}

/// Iterates over the records of a batch, with the raw bytes of each.
#[derive(Clone, Debug)]
pub struct Iter<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// Iterates over the records of `batch`.
pub fn iter(batch: &[u8]) -> Iter<'_> {
    Iter { buf: batch, pos: 0 }
}

impl<'a> Iter<'a> {
    /// The next record and its encoded bytes (for copying it into another batch unchanged).
    #[inline]
    pub fn next_raw(&mut self) -> Option<Result<(Record<'a>, &'a [u8]), FormatError>> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let start = self.pos;
        let result = self.read(start);
        match &result {
            Ok((_, raw)) => self.pos += raw.len(),
            // Stop after an error: the rest of the buffer cannot be framed.
            Err(_) => self.pos = self.buf.len(),
        }
        Some(result)
    }

    #[inline(always)]
    fn read(&self, start: usize) -> Result<(Record<'a>, &'a [u8]), FormatError> {
        let err = |reason| FormatError {
            offset: start,
            reason,
        };
        let rest = &self.buf[start..];
        if rest.len() < HEADER {
            return Err(err("truncated record header"));
        }
        let flags = rest[0];
        if flags & !HAS_TIMESTAMP != 0 {
            return Err(err("unknown flag bits"));
        }
        let key_len = u32::from_le_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        let value_len = u32::from_le_bytes([rest[5], rest[6], rest[7], rest[8]]) as usize;
        let mut at = HEADER;
        let timestamp = if flags & HAS_TIMESTAMP != 0 {
            let bytes = rest
                .get(at..at + 8)
                .ok_or_else(|| err("truncated timestamp"))?;
            at += 8;
            let mut ts = [0u8; 8];
            ts.copy_from_slice(bytes);
            Some(i64::from_le_bytes(ts))
        } else {
            None
        };
        let end = at
            .checked_add(key_len)
            .and_then(|k| k.checked_add(value_len))
            .filter(|&end| end <= rest.len())
            .ok_or_else(|| err("key or value runs past the end of the batch"))?;
        let key = &rest[at..at + key_len];
        let value = &rest[at + key_len..end];
        Ok((
            Record {
                key,
                value,
                timestamp,
            },
            &rest[..end],
        ))
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = Result<Record<'a>, FormatError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        self.next_raw().map(|r| r.map(|(record, _)| record))
    }
}

/// Counts the records of a batch, checking its framing.
pub fn count(batch: &[u8]) -> Result<usize, FormatError> {
    let mut it = iter(batch);
    let mut n = 0;
    while let Some(r) = it.next_raw() {
        r?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn round_trips_records_with_and_without_timestamps() {
        let records = [
            Record::new(b"k1", b"hello"),
            Record {
                key: b"",
                value: b"",
                timestamp: Some(-5),
            },
            Record {
                key: b"key",
                value: &[0, 1, 2],
                timestamp: Some(i64::MAX),
            },
        ];
        let mut buf = Vec::new();
        for r in &records {
            push(&mut buf, r);
        }
        assert_eq!(
            buf.len(),
            records.iter().map(Record::encoded_len).sum::<usize>()
        );
        let back: Vec<_> = iter(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(back, records);
        assert_eq!(count(&buf), Ok(3));
    }

    #[test]
    fn copies_keys_and_values_of_every_short_length() {
        let bytes: Vec<u8> = (0..40).collect();
        for k in 0..=20 {
            for v in [0, 1, 3, 4, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 40] {
                let mut buf = vec![0xAA];
                let r = Record::new(&bytes[..k], &bytes[40 - v..]);
                push(&mut buf, &r);
                let mut appended = vec![0xAA];
                extend(&mut appended, r.key);
                assert_eq!(appended[1..], *r.key);
                assert_eq!(buf.len(), 1 + r.encoded_len());
                assert_eq!(iter(&buf[1..]).next().unwrap().unwrap(), r);
            }
        }
    }

    #[test]
    fn same_bytes_compares_every_byte_of_every_length() {
        let a: Vec<u8> = (0..40).collect();
        for n in 0..=40 {
            assert!(same_bytes(&a[..n], &a[..n]));
            assert!(n == 0 || !same_bytes(&a[..n], &a[..n - 1]));
            for i in 0..n {
                let mut b = a[..n].to_vec();
                b[i] ^= 0x80;
                assert!(!same_bytes(&a[..n], &b), "n {n} i {i}");
            }
        }
    }

    #[test]
    fn a_begun_record_takes_what_was_appended_as_its_value() {
        let mut buf = Vec::new();
        push(&mut buf, &Record::new(b"a", b"1"));
        let pending = begin(&mut buf, b"key", Some(9));
        buf.extend_from_slice(b"value");
        finish(&mut buf, pending);
        let dropped = begin(&mut buf, b"gone", None);
        buf.truncate(dropped.start());
        let records: Vec<_> = iter(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            records,
            [
                Record::new(b"a", b"1"),
                Record {
                    key: b"key",
                    value: b"value",
                    timestamp: Some(9)
                }
            ]
        );
    }

    #[test]
    fn raw_bytes_copy_a_record_unchanged() {
        let mut buf = Vec::new();
        push(&mut buf, &Record::new(b"a", b"1"));
        push(
            &mut buf,
            &Record {
                key: b"b",
                value: b"22",
                timestamp: Some(7),
            },
        );
        let mut it = iter(&buf);
        let (_, first) = it.next_raw().unwrap().unwrap();
        let (second, raw) = it.next_raw().unwrap().unwrap();
        assert_eq!(first.len() + raw.len(), buf.len());
        let copy = raw.to_vec();
        assert_eq!(iter(&copy).next().unwrap().unwrap(), second);
    }

    #[test]
    fn malformed_batches_are_errors_not_panics() {
        let mut buf = Vec::new();
        push(&mut buf, &Record::new(b"key", b"value"));
        for cut in 1..buf.len() {
            let r = count(&buf[..cut]);
            assert!(r.is_err(), "cut at {cut} should fail");
        }
        assert_eq!(
            count(&[2, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap_err().reason,
            "unknown flag bits"
        );
        let huge = vec![0, 255, 255, 255, 255, 255, 255, 255, 255];
        assert!(count(&huge).is_err());
    }
}
