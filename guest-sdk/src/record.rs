//! A record as an operator sees it, with typed views of its key and value.

use crate::Error;
use serde::Deserialize;

/// One input record, borrowed from the batch the host passed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// The key (what `hash` partitioning and keyed state use).
    pub key: &'a [u8],
    /// The value, in whatever encoding the upstream operator chose.
    pub value: &'a [u8],
    /// Event time in milliseconds, if the record has one.
    pub timestamp: Option<i64>,
}

impl<'a> Record<'a> {
    /// A record without a timestamp.
    pub fn new(
        key: &'a (impl AsRef<[u8]> + ?Sized),
        value: &'a (impl AsRef<[u8]> + ?Sized),
    ) -> Self {
        Record {
            key: key.as_ref(),
            value: value.as_ref(),
            timestamp: None,
        }
    }

    /// The key as UTF-8 text.
    pub fn key_str(&self) -> Result<&'a str, Error> {
        std::str::from_utf8(self.key)
            .map_err(|e| Error::msg(format!("record key is not UTF-8: {e}")))
    }

    /// The value as UTF-8 text.
    pub fn value_str(&self) -> Result<&'a str, Error> {
        std::str::from_utf8(self.value)
            .map_err(|e| Error::msg(format!("record value is not UTF-8: {e}")))
    }

    /// The value decoded from JSON (`T` may borrow from the record, e.g. `&str` fields).
    pub fn value_json<T: Deserialize<'a>>(&self) -> Result<T, Error> {
        serde_json::from_slice(self.value)
            .map_err(|e| Error::msg(format!("record value is not the expected JSON: {e}")))
    }

    /// The value decoded from the compact binary encoding (postcard), as written by
    /// [`Context::emit_bin`](crate::Context::emit_bin). `T` may borrow from the record (`&str`
    /// fields decode without allocating).
    pub fn value_bin<T: Deserialize<'a>>(&self) -> Result<T, Error> {
        postcard::from_bytes(self.value).map_err(|e| {
            Error::msg(format!(
                "record value is not the expected binary encoding: {e}"
            ))
        })
    }
}

impl<'a> From<weir_batch::Record<'a>> for Record<'a> {
    fn from(r: weir_batch::Record<'a>) -> Self {
        Record {
            key: r.key,
            value: r.value,
            timestamp: r.timestamp,
        }
    }
}
