//! What an operator emits through, and the config it is opened with.

use crate::{Error, Record, backend};
use serde::{Serialize, de::DeserializeOwned};

/// Emitted records are handed to the host once this many bytes are pending, and at the end of
/// every batch: one host call per batch, not per record.
const FLUSH_BYTES: usize = 64 * 1024;

/// The operator's link to its outputs: the main output and named side outputs.
#[derive(Default)]
pub struct Context {
    main: Vec<u8>,
    side: Vec<(String, Vec<u8>)>,
}

impl Context {
    /// Emits a record without a timestamp to the main output.
    pub fn emit(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.emit_record(Record::new(key.as_ref(), value.as_ref()));
    }

    /// Emits a record (keeping its timestamp) to the main output.
    pub fn emit_record(&mut self, record: Record<'_>) {
        push(&mut self.main, record);
        self.flush_if_full();
    }

    #[inline]
    fn flush_if_full(&mut self) {
        if self.main.len() >= FLUSH_BYTES {
            flush_one(None, &mut self.main);
        }
    }

    /// Emits a record whose value is `value` encoded as JSON.
    pub fn emit_json<T: Serialize + ?Sized>(
        &mut self,
        key: impl AsRef<[u8]>,
        value: &T,
    ) -> Result<(), Error> {
        self.emit_encoded(key, |buf| {
            serde_json::to_writer(buf, value).map_err(Error::from)
        })
    }

    /// Emits a record whose value is `value` in the compact binary encoding (postcard).
    pub fn emit_bin<T: Serialize + ?Sized>(
        &mut self,
        key: impl AsRef<[u8]>,
        value: &T,
    ) -> Result<(), Error> {
        self.emit_encoded(key, |buf| {
            postcard::serialize_with_flavor(value, Appender(buf))?;
            Ok(())
        })
    }

    /// Emits a record whose value `encode` appends, straight into the output batch.
    fn emit_encoded(
        &mut self,
        key: impl AsRef<[u8]>,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let pending = weir_batch::begin(&mut self.main, key.as_ref(), None);
        match encode(&mut self.main) {
            Ok(()) => {
                weir_batch::finish(&mut self.main, pending);
                self.flush_if_full();
                Ok(())
            }
            Err(e) => {
                self.main.truncate(pending.start());
                Err(e)
            }
        }
    }

    /// Emits a record to the side output `output` (connected in the manifest as `uid.output`).
    pub fn emit_to(&mut self, output: &str, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        let index = match self.side.iter().position(|(name, _)| name == output) {
            Some(i) => i,
            None => {
                self.side.push((output.to_string(), Vec::new()));
                self.side.len() - 1
            }
        };
        let (name, buf) = &mut self.side[index];
        push(buf, Record::new(key.as_ref(), value.as_ref()));
        if buf.len() >= FLUSH_BYTES {
            flush_one(Some(name), buf);
        }
    }

    /// Hands everything pending to the host.
    pub(crate) fn flush(&mut self) {
        flush_one(None, &mut self.main);
        for (name, buf) in &mut self.side {
            flush_one(Some(name), buf);
        }
    }
}

fn push(buf: &mut Vec<u8>, r: Record<'_>) {
    weir_batch::push(
        buf,
        &weir_batch::Record {
            key: r.key,
            value: r.value,
            timestamp: r.timestamp,
        },
    );
}

/// Postcard's output, appended straight to the batch (and the batch left intact when encoding
/// fails: the caller truncates).
struct Appender<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for Appender<'_> {
    type Output = ();
    #[inline]
    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }
    #[inline]
    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        weir_batch::extend(self.0, bytes);
        Ok(())
    }
    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

fn flush_one(output: Option<&str>, buf: &mut Vec<u8>) {
    if !buf.is_empty() {
        backend::with(|b| b.emit(output, buf));
        buf.clear();
    }
}

/// The operator's `config` table from the manifest.
#[derive(Clone, Debug)]
pub struct Config {
    json: String,
}

impl Config {
    /// A config from JSON text (what the host passes to `open`).
    pub fn from_json(json: impl Into<String>) -> Self {
        Config { json: json.into() }
    }

    /// The config as JSON text.
    pub fn as_json(&self) -> &str {
        &self.json
    }

    /// The whole config decoded into `T` (use `#[serde(default)]` for optional fields).
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, Error> {
        let text = if self.json.trim().is_empty() {
            "{}"
        } else {
            &self.json
        };
        serde_json::from_str(text).map_err(|e| Error::msg(format!("invalid operator config: {e}")))
    }
}
