//! What an operator emits through, and the config it is opened with.

use crate::{Error, Record, StateError, TimeDomain, backend};
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
    /// How many times the job has restarted before this run of it: 0 on its first attempt
    /// (Flink's `getAttemptNumber`).
    pub fn attempt(&self) -> u32 {
        backend::with(|b| b.attempt())
    }

    /// The operator's current watermark (ms): every record with a smaller or equal timestamp is
    /// expected to have arrived. `i64::MIN` before the first watermark.
    pub fn current_watermark(&self) -> i64 {
        backend::with(|b| b.watermark())
    }

    /// The subtask's wall clock: ms since the Unix epoch.
    pub fn current_processing_time(&self) -> i64 {
        backend::with(|b| b.processing_time())
    }

    /// Calls [`Operator::on_timer`](crate::Operator::on_timer) for `key` once the watermark
    /// reaches `time` (once per key and time, however often it is registered). Timers are
    /// keyed state: they survive failures and move with their key.
    pub fn register_event_timer(
        &mut self,
        key: impl AsRef<[u8]>,
        time: i64,
    ) -> Result<(), StateError> {
        backend::with(|b| b.timer(TimeDomain::Event, key.as_ref(), time, true))
    }

    /// Calls [`Operator::on_timer`](crate::Operator::on_timer) for `key` once the wall clock
    /// reaches `time` (ms since the epoch).
    pub fn register_processing_timer(
        &mut self,
        key: impl AsRef<[u8]>,
        time: i64,
    ) -> Result<(), StateError> {
        backend::with(|b| b.timer(TimeDomain::Processing, key.as_ref(), time, true))
    }

    /// Deletes the event-time timer of `key` at `time`, if there is one.
    pub fn delete_event_timer(
        &mut self,
        key: impl AsRef<[u8]>,
        time: i64,
    ) -> Result<(), StateError> {
        backend::with(|b| b.timer(TimeDomain::Event, key.as_ref(), time, false))
    }

    /// Deletes the processing-time timer of `key` at `time`, if there is one.
    pub fn delete_processing_timer(
        &mut self,
        key: impl AsRef<[u8]>,
        time: i64,
    ) -> Result<(), StateError> {
        backend::with(|b| b.timer(TimeDomain::Processing, key.as_ref(), time, false))
    }

    /// Emits a record without a timestamp to the main output.
    #[inline(always)]
    pub fn emit(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.emit_record(Record::new(key.as_ref(), value.as_ref()));
    }

    /// Emits a record (keeping its timestamp) to the main output.
    #[inline(always)]
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

    /// Emits a record whose value `write` builds in place, straight into the output batch:
    /// no scratch buffer and no copy, for values assembled from pieces.
    ///
    /// ```
    /// # use weir_guest_sdk::Context;
    /// # let mut ctx = Context::default();
    /// let (id, amount) = (7, 250);
    /// ctx.emit_with("user7", None, |v| {
    ///     v.push_u64(id);
    ///     v.push(b',');
    ///     v.push_u64(amount);
    /// });
    /// ```
    pub fn emit_with(
        &mut self,
        key: impl AsRef<[u8]>,
        timestamp: Option<i64>,
        write: impl FnOnce(&mut ValueWriter<'_>),
    ) {
        let pending = weir_batch::begin(&mut self.main, key.as_ref(), timestamp);
        write(&mut ValueWriter(&mut self.main));
        weir_batch::finish(&mut self.main, pending);
        self.flush_if_full();
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

#[inline]
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

/// Appends to the value of a record being emitted by [`Context::emit_with`]: it can only add
/// bytes to that value, never touch the records before it.
pub struct ValueWriter<'a>(&'a mut Vec<u8>);

impl ValueWriter<'_> {
    /// Appends one byte.
    #[inline]
    pub fn push(&mut self, byte: u8) {
        self.0.push(byte);
    }

    /// Appends bytes (short ones without a copy call, as [`crate::bytes::extend`] does).
    #[inline]
    pub fn extend(&mut self, bytes: &[u8]) {
        weir_batch::extend(self.0, bytes);
    }

    /// Appends `n` in decimal (see [`crate::text::push_u64`]).
    #[inline]
    pub fn push_u64(&mut self, n: u64) {
        crate::text::push_u64(self.0, n);
    }
}

/// Postcard's output, appended straight to a buffer (and the buffer left intact when encoding
/// fails: the caller truncates).
pub(crate) struct Appender<'a>(pub(crate) &'a mut Vec<u8>);

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
