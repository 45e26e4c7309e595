//! `file` source: a text file read line by line, split across subtasks by byte range (a line
//! belongs to the subtask whose range holds its first byte), as text or as JSON lines. The
//! ranges come from the file's size when the job starts, so the file must be a regular file whose
//! size is its length, and must not shrink while it is read: either is an error, never records
//! silently missing.

use super::{ConnectorError, Poll, Source, share};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use weir_batch::Record;

/// A longer line is an error rather than unbounded memory.
const MAX_LINE_BYTES: u64 = 16 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LineFormat {
    /// Each line is a record value.
    Text,
    /// Each non-empty line must be a JSON document; it is the record value.
    Json,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileSourceConfig {
    pub path: PathBuf,
    pub format: LineFormat,
    /// With JSON lines: the top-level field whose value becomes the record key.
    pub key_field: Option<String>,
    /// With JSON lines: the top-level field holding the record's timestamp.
    #[serde(default)]
    pub timestamp: Option<TimestampField>,
}

/// A timestamp read from a JSON field: an integer, milliseconds since the epoch.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TimestampField {
    pub field: String,
    /// The side output a line without a usable timestamp goes to; `None`: the job fails,
    /// naming the field and the line's offset.
    pub invalid: Option<String>,
}

pub(super) struct FileSource {
    config: FileSourceConfig,
    reader: BufReader<File>,
    /// Offset of the next line's first byte in the split being read.
    pos: u64,
    /// Where that split ends: it holds the lines starting before this byte.
    end: u64,
    /// Further splits to read: (first line's offset, end).
    more: VecDeque<(u64, u64)>,
    /// The file's size when it was opened.
    len: u64,
    line: Vec<u8>,
    /// Lines without a usable timestamp, for the side output that takes them.
    rejected: Vec<u8>,
}

/// Opens `path` as a file source's input: a regular file whose size tells its length (files
/// under `/proc` report 0 and have content; they cannot be split by size, so they are refused).
pub fn open_input(path: &Path) -> Result<(File, u64), ConnectorError> {
    let (mut file, len) = crate::files::open_regular(path)?;
    if len == 0 {
        let mut probe = [0u8; 1];
        let got = file.read(&mut probe).map_err(|source| ConnectorError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if got > 0 {
            return Err(ConnectorError::Failed(format!(
                "{} reports a size of 0 bytes but has content (a file under /proc or /sys?); \
                 a file source splits its input among subtasks by size, so copy it to a regular file first",
                path.display()
            )));
        }
    }
    Ok((file, len))
}

impl FileSource {
    pub(super) fn open(
        config: &FileSourceConfig,
        subtask: u32,
        parallelism: u32,
    ) -> Result<Self, ConnectorError> {
        let io = |source| ConnectorError::Io {
            path: config.path.clone(),
            source,
        };
        let (file, len) = open_input(&config.path)?;
        let start = len * u64::from(subtask) / u64::from(parallelism);
        let end = len * (u64::from(subtask) + 1) / u64::from(parallelism);
        let mut reader = BufReader::with_capacity(256 * 1024, file);
        let mut pos = start;
        if start > 0 {
            // The line holding byte start-1 belongs to the previous range: skip through its end.
            reader.seek(SeekFrom::Start(start - 1)).map_err(io)?;
            pos = start - 1 + reader.skip_until(b'\n').map_err(io)? as u64;
        }
        Ok(FileSource {
            rejected: Vec::new(),
            config: config.clone(),
            reader,
            pos,
            end,
            more: VecDeque::new(),
            len,
            line: Vec::new(),
        })
    }

    /// The error for input that ended at byte `at` of a file that had `len` bytes.
    fn shrank(&self, at: u64) -> ConnectorError {
        ConnectorError::Malformed {
            path: self.config.path.clone(),
            offset: at,
            message: format!(
                "the file ended here, but it had {} bytes when the job started: it shrank while being read, and its records past this point are missing",
                self.len
            ),
        }
    }

    /// The timestamp of a JSON line (`Ok(None)` without a timestamp field), or why it has none.
    fn timestamp_of(&self, value: &serde_json::Value) -> Result<Option<i64>, String> {
        let Some(t) = &self.config.timestamp else {
            return Ok(None);
        };
        match value.get(&t.field) {
            None => Err(format!("timestamp field `{}` is missing", t.field)),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| {
                format!(
                    "timestamp field `{}` is {v}, not an integer (milliseconds)",
                    t.field
                )
            }),
        }
    }

    fn key_of(&self, value: &serde_json::Value) -> Vec<u8> {
        match self.config.key_field.as_deref().and_then(|f| value.get(f)) {
            Some(serde_json::Value::String(s)) => s.as_bytes().to_vec(),
            Some(other) => other.to_string().into_bytes(),
            None => Vec::new(),
        }
    }
}

/// A file source's position: the splits it has left, each as the offset of its next line and
/// its end, and the file's size (a restore into a file of another size refuses rather than read
/// other lines).
#[derive(serde::Serialize, serde::Deserialize)]
struct Position {
    len: u64,
    splits: Vec<(u64, u64)>,
}

impl FileSource {
    /// Moves on to the next split with lines left; `false` when none is left.
    fn next_split(&mut self) -> Result<bool, ConnectorError> {
        while self.pos >= self.end {
            let Some((pos, end)) = self.more.pop_front() else {
                return Ok(false);
            };
            self.reader
                .seek(SeekFrom::Start(pos))
                .map_err(|source| ConnectorError::Io {
                    path: self.config.path.clone(),
                    source,
                })?;
            (self.pos, self.end) = (pos, end);
        }
        Ok(true)
    }
}

impl Source for FileSource {
    fn position(&mut self) -> Result<Vec<u8>, ConnectorError> {
        let splits = std::iter::once((self.pos, self.end))
            .chain(self.more.iter().copied())
            .filter(|(pos, end)| pos < end)
            .collect();
        Ok(serde_json::to_vec(&Position {
            len: self.len,
            splits,
        })
        .expect("a position serializes"))
    }

    fn restore(
        &mut self,
        positions: &[&[u8]],
        subtask: u32,
        parallelism: u32,
    ) -> Result<(), ConnectorError> {
        let bad = |message: String| ConnectorError::Malformed {
            path: self.config.path.clone(),
            offset: 0,
            message,
        };
        let mut splits = Vec::new();
        for position in positions {
            let p: Position = serde_json::from_slice(position)
                .map_err(|e| bad(format!("unreadable position in the checkpoint: {e}")))?;
            if p.len != self.len {
                return Err(bad(format!(
                    "the file has {} bytes, but {} when the checkpoint was taken; restore needs the same input",
                    self.len, p.len
                )));
            }
            splits.extend(p.splits);
        }
        self.more = share(splits, subtask, parallelism).into();
        (self.pos, self.end) = (0, 0);
        self.next_split()?;
        Ok(())
    }

    fn rejected(&mut self) -> Option<(&str, Vec<u8>)> {
        let output = self.config.timestamp.as_ref()?.invalid.as_deref()?;
        (!self.rejected.is_empty()).then(|| (output, std::mem::take(&mut self.rejected)))
    }

    fn poll(&mut self, batch: &mut Vec<u8>, max_bytes: usize) -> Result<Poll, ConnectorError> {
        while batch.len() + self.rejected.len() < max_bytes {
            if !self.next_split()? {
                return Ok(Poll::Ended);
            }
            self.line.clear();
            let limit = MAX_LINE_BYTES + 1;
            let n = (&mut self.reader)
                .take(limit)
                .read_until(b'\n', &mut self.line)
                .map_err(|source| ConnectorError::Io {
                    path: self.config.path.clone(),
                    source,
                })?;
            if n == 0 {
                // Only a file that shrank ends before its range does.
                return Err(self.shrank(self.pos));
            }
            if n as u64 == limit && self.line.last() != Some(&b'\n') {
                return Err(ConnectorError::Malformed {
                    path: self.config.path.clone(),
                    offset: self.pos,
                    message: format!("a line is longer than {} MiB", MAX_LINE_BYTES >> 20),
                });
            }
            if self.line.last() != Some(&b'\n') && self.pos + (n as u64) < self.len {
                // A last line without a newline, but short of the file's length: cut off.
                return Err(self.shrank(self.pos + n as u64));
            }
            let offset = self.pos;
            self.pos += n as u64;
            let mut text: &[u8] = &self.line;
            if let Some(t) = text.strip_suffix(b"\n") {
                text = t.strip_suffix(b"\r").unwrap_or(t);
            }
            match self.config.format {
                LineFormat::Text => weir_batch::push(batch, &Record::new(b"", text)),
                LineFormat::Json => {
                    if text.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let value: serde_json::Value =
                        serde_json::from_slice(text).map_err(|e| ConnectorError::Malformed {
                            path: self.config.path.clone(),
                            offset,
                            message: format!("not a JSON line: {e}"),
                        })?;
                    let key = self.key_of(&value);
                    match self.timestamp_of(&value) {
                        Ok(timestamp) => weir_batch::push(
                            batch,
                            &Record {
                                key: &key,
                                value: text,
                                timestamp,
                            },
                        ),
                        Err(why) => match self
                            .config
                            .timestamp
                            .as_ref()
                            .and_then(|t| t.invalid.as_ref())
                        {
                            Some(_) => {
                                weir_batch::push(&mut self.rejected, &Record::new(&key, text))
                            }
                            None => {
                                return Err(ConnectorError::Malformed {
                                    path: self.config.path.clone(),
                                    offset,
                                    message: why,
                                });
                            }
                        },
                    }
                }
            }
        }
        Ok(Poll::More)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read_all(config: &FileSourceConfig, parallelism: u32) -> Vec<(Vec<u8>, String)> {
        let mut out = Vec::new();
        for k in 0..parallelism {
            let mut s = FileSource::open(config, k, parallelism).unwrap();
            loop {
                let mut batch = Vec::new();
                let poll = s.poll(&mut batch, 7).unwrap();
                out.extend(weir_batch::iter(&batch).map(|r| {
                    let r = r.unwrap();
                    (r.key.to_vec(), String::from_utf8(r.value.to_vec()).unwrap())
                }));
                if poll == Poll::Ended {
                    break;
                }
            }
        }
        out
    }

    #[test]
    fn every_line_is_read_once_whatever_the_parallelism() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let lines: Vec<String> = (0..200)
            .map(|i| "x".repeat(i % 13) + &i.to_string())
            .collect();
        write!(f, "{}\r\n\nlast-without-newline", lines.join("\n")).unwrap();
        let config = FileSourceConfig {
            path: f.path().to_path_buf(),
            format: LineFormat::Text,
            key_field: None,
            timestamp: None,
        };
        let mut expected: Vec<String> = lines.clone();
        expected.push(String::new());
        expected.push("last-without-newline".into());
        for p in [1, 2, 3, 7, 64] {
            let got: Vec<String> = read_all(&config, p).into_iter().map(|(_, v)| v).collect();
            assert_eq!(got, expected, "parallelism {p}");
        }
    }

    #[test]
    fn positions_restore_at_any_parallelism_reading_every_line_once() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let lines: Vec<String> = (0..500).map(|i| format!("line {i}")).collect();
        writeln!(f, "{}", lines.join("\n")).unwrap();
        let config = FileSourceConfig {
            path: f.path().to_path_buf(),
            format: LineFormat::Text,
            key_field: None,
            timestamp: None,
        };
        let drain = |s: &mut FileSource, polls: usize, got: &mut Vec<String>| {
            for _ in 0..polls {
                let mut batch = Vec::new();
                let poll = s.poll(&mut batch, 64).unwrap();
                got.extend(
                    weir_batch::iter(&batch)
                        .map(|r| String::from_utf8(r.unwrap().value.to_vec()).unwrap()),
                );
                if poll == Poll::Ended {
                    break;
                }
            }
        };
        // Three subtasks read a little, then their positions go to 2, then to 5.
        let mut got = Vec::new();
        let mut positions = Vec::new();
        for k in 0..3 {
            let mut s = FileSource::open(&config, k, 3).unwrap();
            drain(&mut s, 2, &mut got);
            positions.push(s.position().unwrap());
        }
        let mut next = Vec::new();
        for k in 0..2 {
            let mut s = FileSource::open(&config, k, 2).unwrap();
            let refs: Vec<&[u8]> = positions.iter().map(Vec::as_slice).collect();
            s.restore(&refs, k, 2).unwrap();
            drain(&mut s, 3, &mut got);
            next.push(s.position().unwrap());
        }
        for k in 0..5 {
            let mut s = FileSource::open(&config, k, 5).unwrap();
            let refs: Vec<&[u8]> = next.iter().map(Vec::as_slice).collect();
            s.restore(&refs, k, 5).unwrap();
            drain(&mut s, usize::MAX, &mut got);
        }
        got.sort();
        let mut want = lines.clone();
        want.sort();
        assert_eq!(got, want);
        // Another file is refused.
        let other = tempfile::NamedTempFile::new().unwrap();
        let mut s = FileSource::open(
            &FileSourceConfig {
                path: other.path().to_path_buf(),
                ..config.clone()
            },
            0,
            1,
        )
        .unwrap();
        let e = s.restore(&[next[0].as_slice()], 0, 1).unwrap_err();
        assert!(
            e.to_string().contains("restore needs the same input"),
            "{e}"
        );
    }

    #[test]
    fn a_line_past_the_limit_is_an_error() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "short").unwrap();
        f.write_all(&vec![b'x'; MAX_LINE_BYTES as usize + 1])
            .unwrap();
        let config = FileSourceConfig {
            path: f.path().to_path_buf(),
            format: LineFormat::Text,
            key_field: None,
            timestamp: None,
        };
        let mut s = FileSource::open(&config, 0, 1).unwrap();
        let err = s.poll(&mut Vec::new(), 1 << 30).unwrap_err();
        assert!(
            err.to_string()
                .contains("at byte 6: a line is longer than 16 MiB"),
            "{err}"
        );
    }

    #[test]
    fn json_lines_take_their_timestamp_from_a_field_and_set_aside_or_fail_without() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            f,
            "{{\"ts\":5}}\n{{\"ts\":\"x\"}}\n{{\"n\":1}}\n{{\"ts\":-7}}"
        )
        .unwrap();
        let mut config = FileSourceConfig {
            path: f.path().to_path_buf(),
            format: LineFormat::Json,
            key_field: None,
            timestamp: Some(TimestampField {
                field: "ts".into(),
                invalid: Some("bad".into()),
            }),
        };
        let mut s = FileSource::open(&config, 0, 1).unwrap();
        let mut batch = Vec::new();
        assert_eq!(s.poll(&mut batch, 1 << 20).unwrap(), Poll::Ended);
        let stamps: Vec<Option<i64>> = weir_batch::iter(&batch)
            .map(|r| r.unwrap().timestamp)
            .collect();
        assert_eq!(stamps, [Some(5), Some(-7)]);
        let (output, rejected) = s.rejected().unwrap();
        assert_eq!(output, "bad");
        assert_eq!(weir_batch::count(&rejected).unwrap(), 2);
        assert!(s.rejected().is_none(), "taken once");

        config.timestamp = Some(TimestampField {
            field: "ts".into(),
            invalid: None,
        });
        let mut s = FileSource::open(&config, 0, 1).unwrap();
        let err = s.poll(&mut Vec::new(), 1 << 20).unwrap_err().to_string();
        assert!(
            err.contains("at byte 9: timestamp field `ts` is \"x\", not an integer"),
            "{err}"
        );
    }

    #[test]
    fn json_lines_take_their_key_from_a_field_and_bad_lines_fail() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "{{\"user\":\"ann\",\"n\":1}}\n\n{{\"user\":7}}").unwrap();
        let config = FileSourceConfig {
            path: f.path().to_path_buf(),
            format: LineFormat::Json,
            key_field: Some("user".into()),
            timestamp: None,
        };
        let got = read_all(&config, 1);
        assert_eq!(
            got.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
            [b"ann".to_vec(), b"7".to_vec()]
        );

        let mut bad = tempfile::NamedTempFile::new().unwrap();
        writeln!(bad, "{{\"ok\":1}}\nnot json").unwrap();
        let config = FileSourceConfig {
            path: bad.path().to_path_buf(),
            format: LineFormat::Json,
            key_field: None,
            timestamp: None,
        };
        let mut s = FileSource::open(&config, 0, 1).unwrap();
        let err = s.poll(&mut Vec::new(), 1 << 20).unwrap_err();
        assert!(
            err.to_string().contains("at byte 9: not a JSON line"),
            "{err}"
        );
    }
}
