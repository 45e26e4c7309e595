//! Opening the files a user names (manifests, components, source input): only regular files,
//! never blocking on a FIFO or a device, and never read past a size limit. A path that turned
//! into a FIFO, `/dev/zero`, a directory or a 6 GB file is refused with a message that says
//! what it is, before anything large is read.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Why a file was refused.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{} does not exist", path.display())]
    Missing { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a regular file (it is {what})", path.display())]
    NotRegular { path: PathBuf, what: &'static str },
    #[error("{} is {} MiB, over the limit of {} MiB{}", path.display(), size.div_ceil(1 << 20), limit >> 20, limit_name.map_or(String::new(), |n| format!(" ({n})")))]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
        /// The setting that raises the limit, if there is one.
        limit_name: Option<&'static str>,
    },
}

/// What kind of file `ty` is, in words.
fn describe(ty: std::fs::FileType) -> &'static str {
    if ty.is_dir() {
        "a directory"
    } else if ty.is_fifo() {
        "a FIFO"
    } else if ty.is_char_device() {
        "a character device"
    } else if ty.is_block_device() {
        "a block device"
    } else if ty.is_socket() {
        "a socket"
    } else {
        "not a plain file"
    }
}

/// Checks that `path` names a regular file, without opening it (for validation).
pub fn check_regular(path: &Path) -> Result<u64, FileError> {
    let meta = std::fs::metadata(path).map_err(|source| io_error(path, source))?;
    if !meta.file_type().is_file() {
        return Err(FileError::NotRegular {
            path: path.to_path_buf(),
            what: describe(meta.file_type()),
        });
    }
    Ok(meta.len())
}

fn io_error(path: &Path, source: std::io::Error) -> FileError {
    if source.kind() == std::io::ErrorKind::NotFound {
        FileError::Missing {
            path: path.to_path_buf(),
        }
    } else {
        FileError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Opens `path` for reading if it is a regular file, and returns it with its size. Opening does
/// not wait for a FIFO's writer (`O_NONBLOCK`, which has no effect on regular files), and the
/// type is checked on the opened file, so a path swapped after validation is caught too.
pub fn open_regular(path: &Path) -> Result<(File, u64), FileError> {
    regular(path, OpenOptions::new().read(true))
}

/// Creates (or truncates) `path` for writing, refusing anything but a regular file: a FIFO
/// without a reader fails at once instead of blocking.
pub fn create_regular(path: &Path) -> Result<File, FileError> {
    regular(
        path,
        OpenOptions::new().write(true).create(true).truncate(true),
    )
    .map(|(f, _)| f)
}

/// Reads a small text file the process keeps (a key, a certificate, a token, an id): a regular
/// file of at most 1 MiB, in UTF-8.
pub fn read_small_text(path: &Path) -> Result<String, FileError> {
    let bytes = read_limited(path, 1 << 20, None)?;
    String::from_utf8(bytes).map_err(|_| {
        io_error(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"),
        )
    })
}

/// Writes `text` to `path` as a regular file readable by its owner only (keys, tokens), and
/// syncs it.
pub fn write_private(path: &Path, text: &str) -> Result<(), FileError> {
    use std::io::Write as _;
    let mut file = regular(
        path,
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600),
    )?
    .0;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|source| io_error(path, source))
}

/// Opens `path` with `options` and `O_NONBLOCK`, if what it opens is a regular file.
fn regular(path: &Path, options: &mut OpenOptions) -> Result<(File, u64), FileError> {
    let file = options
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|source| io_error(path, source))?;
    let meta = file.metadata().map_err(|source| io_error(path, source))?;
    if !meta.file_type().is_file() {
        return Err(FileError::NotRegular {
            path: path.to_path_buf(),
            what: describe(meta.file_type()),
        });
    }
    Ok((file, meta.len()))
}

/// Opens a regular file of at most `limit` bytes for reading; a larger one is refused from its
/// size, before anything is read. The reader stops one byte past the limit, so that a file
/// growing meanwhile is caught by [`LimitedFile::finish`].
pub fn open_limited(
    path: &Path,
    limit: u64,
    limit_name: Option<&'static str>,
) -> Result<LimitedFile, FileError> {
    let (file, size) = open_regular(path)?;
    let file = LimitedFile {
        reader: file.take(limit.saturating_add(1)),
        path: path.to_path_buf(),
        size,
        limit,
        limit_name,
    };
    if size > limit {
        return Err(file.too_large(size));
    }
    Ok(file)
}

/// A regular file being read within a size limit.
pub struct LimitedFile {
    reader: std::io::Take<File>,
    path: PathBuf,
    /// The size when it was opened.
    pub size: u64,
    limit: u64,
    limit_name: Option<&'static str>,
}

impl LimitedFile {
    fn too_large(&self, size: u64) -> FileError {
        FileError::TooLarge {
            path: self.path.clone(),
            size,
            limit: self.limit,
            limit_name: self.limit_name,
        }
    }

    /// Reads into `buf` until it holds `n` bytes or the file ends.
    pub fn read_up_to(&mut self, buf: &mut Vec<u8>, n: usize) -> Result<(), FileError> {
        let want = n.saturating_sub(buf.len()) as u64;
        (&mut self.reader)
            .take(want)
            .read_to_end(buf)
            .map_err(|source| io_error(&self.path, source))?;
        Ok(())
    }

    /// Reads the rest of the file into `buf`, refusing it if it grew past the limit.
    pub fn finish(mut self, buf: &mut Vec<u8>) -> Result<(), FileError> {
        self.reader
            .read_to_end(buf)
            .map_err(|source| io_error(&self.path, source))?;
        // What the reader let through: the limit plus one, less what it has left.
        let read = self.limit.saturating_add(1) - self.reader.limit();
        if read > self.limit {
            return Err(self.too_large(read));
        }
        Ok(())
    }
}

/// Reads a whole regular file of at most `limit` bytes (see [`open_limited`]).
pub fn read_limited(
    path: &Path,
    limit: u64,
    limit_name: Option<&'static str>,
) -> Result<Vec<u8>, FileError> {
    let file = open_limited(path, limit, limit_name)?;
    let mut bytes = Vec::with_capacity(file.size as usize);
    file.finish(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fifo(dir: &Path) -> PathBuf {
        let path = dir.join("fifo");
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo only reads the NUL-terminated path it is given.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        path
    }

    #[test]
    fn refuses_what_is_not_a_regular_file_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = fifo(dir.path());
        let e = open_regular(&fifo).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("is not a regular file (it is a FIFO)"),
            "{e}"
        );
        let e = create_regular(&fifo).unwrap_err();
        // No reader: opening for writing fails at once (ENXIO) rather than waiting for one.
        assert!(matches!(e, FileError::Io { .. }), "{e}");
        let e = open_regular(dir.path()).unwrap_err();
        assert!(e.to_string().ends_with("(it is a directory)"), "{e}");
        let e = open_regular(Path::new("/dev/zero")).unwrap_err();
        assert!(e.to_string().ends_with("(it is a character device)"), "{e}");
        let e = check_regular(Path::new("/dev/zero")).unwrap_err();
        assert!(e.to_string().ends_with("(it is a character device)"), "{e}");
        let e = open_regular(&dir.path().join("nothing")).unwrap_err();
        assert!(e.to_string().ends_with("does not exist"), "{e}");
    }

    #[test]
    fn a_file_over_the_limit_is_refused_from_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        // Sparse: 6 GiB long, nothing written.
        File::create(&path).unwrap().set_len(6 << 30).unwrap();
        let e = read_limited(&path, 256 << 20, Some("limits.component_mib")).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("is 6144 MiB, over the limit of 256 MiB (limits.component_mib)"),
            "{e}"
        );
        std::fs::write(&path, b"small").unwrap();
        assert_eq!(read_limited(&path, 5, None).unwrap(), b"small");
        assert!(read_limited(&path, 4, None).is_err());
    }
}
