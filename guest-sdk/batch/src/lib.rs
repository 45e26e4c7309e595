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
pub fn push(buf: &mut Vec<u8>, record: &Record<'_>) {
    buf.reserve(record.encoded_len());
    let flags = if record.timestamp.is_some() {
        HAS_TIMESTAMP
    } else {
        0
    };
    buf.push(flags);
    buf.extend_from_slice(&(record.key.len() as u32).to_le_bytes());
    buf.extend_from_slice(&(record.value.len() as u32).to_le_bytes());
    if let Some(ts) = record.timestamp {
        buf.extend_from_slice(&ts.to_le_bytes());
    }
    buf.extend_from_slice(record.key);
    buf.extend_from_slice(record.value);
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
