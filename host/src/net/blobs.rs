//! Components travel by content: named by the SHA-256 of their bytes, uploaded once to the
//! coordinator by `weir run --coordinator`, fetched once by each worker that runs them, and
//! kept by both in a directory of files named by hash. A blob that does not match its hash is
//! refused, so a store holds nothing but what its name says.

use std::io::Write as _;
use std::path::PathBuf;

/// The SHA-256 of `bytes`, hex.
pub fn content_hash(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `hash` looks like a content hash (64 lowercase hex digits): safe as a file name.
pub fn is_hash(hash: &str) -> bool {
    hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Why a blob was refused.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("{0:?} is not a content hash (64 hex digits)")]
    NotAHash(String),
    #[error("the bytes sent as {expected} hash to {actual}")]
    Mismatch { expected: String, actual: String },
    #[error("{size} bytes, over the limit of {limit}")]
    TooLarge { size: u64, limit: u64 },
    #[error("cannot store it in {dir}: {source}")]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("the stream broke: {0}")]
    Stream(String),
}

/// A directory of blobs named by hash.
#[derive(Debug, Clone)]
pub struct Blobs {
    dir: PathBuf,
}

impl Blobs {
    /// The store in `dir` (created when the first blob is stored).
    pub fn new(dir: PathBuf) -> Self {
        Blobs { dir }
    }

    /// Where blob `hash` is (or would be) kept.
    pub fn path(&self, hash: &str) -> Result<PathBuf, BlobError> {
        if !is_hash(hash) {
            return Err(BlobError::NotAHash(hash.to_string()));
        }
        Ok(self.dir.join(format!("{hash}.wasm")))
    }

    /// Whether blob `hash` is here.
    pub fn has(&self, hash: &str) -> bool {
        self.path(hash).is_ok_and(|p| p.is_file())
    }

    /// Stores `bytes` as `hash`, after checking that they hash to it; written to a temporary
    /// file and renamed, so that a reader never sees half a blob.
    pub fn put(&self, hash: &str, bytes: &[u8]) -> Result<PathBuf, BlobError> {
        let path = self.path(hash)?;
        let actual = content_hash(bytes);
        if actual != hash {
            return Err(BlobError::Mismatch {
                expected: hash.to_string(),
                actual,
            });
        }
        let io = |source| BlobError::Io {
            dir: self.dir.clone(),
            source,
        };
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(io)?;
        tmp.write_all(bytes).map_err(io)?;
        tmp.persist(&path).map_err(|e| io(e.error))?;
        Ok(path)
    }

    /// Removes blob `hash`; whether it was here.
    pub fn remove(&self, hash: &str) -> Result<bool, BlobError> {
        match std::fs::remove_file(self.path(hash)?) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(BlobError::Io {
                dir: self.dir.clone(),
                source,
            }),
        }
    }

    /// Reads blob `hash`, up to `limit` bytes.
    pub fn get(&self, hash: &str, limit: u64) -> Result<Vec<u8>, BlobError> {
        let path = self.path(hash)?;
        crate::files::read_limited(&path, limit, None).map_err(|e| BlobError::Io {
            dir: self.dir.clone(),
            source: std::io::Error::other(e.to_string()),
        })
    }
}

/// Reads a whole blob from `recv`, refusing more than `limit` bytes.
pub async fn receive(recv: &mut quinn::RecvStream, limit: u64) -> Result<Vec<u8>, BlobError> {
    recv.read_to_end(limit as usize).await.map_err(|e| match e {
        quinn::ReadToEndError::TooLong => BlobError::TooLarge {
            size: limit + 1,
            limit,
        },
        other => BlobError::Stream(other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_is_stored_under_its_hash_and_nothing_else_is() {
        let dir = tempfile::tempdir().unwrap();
        let store = Blobs::new(dir.path().join("components"));
        let hash = content_hash(b"component bytes");
        assert!(is_hash(&hash));
        assert!(!store.has(&hash));
        store.put(&hash, b"component bytes").unwrap();
        assert!(store.has(&hash));
        assert_eq!(store.get(&hash, 1024).unwrap(), b"component bytes");
        // Other bytes under that name, and names that are not hashes, are refused.
        let other = content_hash(b"other");
        assert!(matches!(
            store.put(&other, b"component bytes"),
            Err(BlobError::Mismatch { .. })
        ));
        assert!(!store.has(&other));
        for name in ["../escape", "ABC", &hash[..63]] {
            assert!(matches!(store.put(name, b"x"), Err(BlobError::NotAHash(_))));
        }
    }
}
