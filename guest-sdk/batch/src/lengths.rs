//! Length-prefixed byte strings, as the batched keyed-state calls pass keys and values: each
//! item is a u32 LE length and its bytes; the length `ABSENT` with no bytes stands for "none".

use crate::FormatError;
use alloc::vec::Vec;

/// The length that marks a missing value.
pub const ABSENT: u32 = u32::MAX;

/// Appends one item (`None` = absent).
#[inline(always)]
pub fn push(buf: &mut Vec<u8>, item: Option<&[u8]>) {
    match item {
        Some(bytes) => {
            crate::extend(buf, &(bytes.len() as u32).to_le_bytes());
            crate::extend(buf, bytes);
        }
        None => crate::extend(buf, &ABSENT.to_le_bytes()),
    }
}

/// Iterates over the items of `buf`.
pub fn iter(buf: &[u8]) -> Items<'_> {
    Items { buf, pos: 0 }
}

/// The items of a length-prefixed buffer.
pub struct Items<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Items<'a> {
    type Item = Result<Option<&'a [u8]>, FormatError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let start = self.pos;
        let err = |reason| {
            Some(Err(FormatError {
                offset: start,
                reason,
            }))
        };
        let Some(len) = self.buf.get(start..start + 4) else {
            self.pos = self.buf.len();
            return err("truncated length");
        };
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]);
        self.pos += 4;
        if len == ABSENT {
            return Some(Ok(None));
        }
        let end = self.pos + len as usize;
        match self.buf.get(self.pos..end) {
            Some(bytes) => {
                self.pos = end;
                Some(Ok(Some(bytes)))
            }
            None => {
                self.pos = self.buf.len();
                err("item runs past the end of the buffer")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_present_absent_and_empty_items() {
        let mut buf = Vec::new();
        push(&mut buf, Some(b"key"));
        push(&mut buf, None);
        push(&mut buf, Some(b""));
        let items: Vec<_> = iter(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(items, [Some(&b"key"[..]), None, Some(&b""[..])]);
        assert!(iter(&buf[..buf.len() - 2]).any(|r| r.is_err()));
        assert!(iter(&[5, 0, 0, 0, 1]).next().unwrap().is_err());
    }
}
