//! What a guest's imports do: emit into the subtask's output buffers, keyed state in the
//! subtask's key groups, logging into the host log. One `HostState` per instance (per subtask).
//!
//! Everything a guest hands the host is bounded here: what one call emits (bytes, calls and
//! output names), keyed state (`limits.state_mib`), log lines (`limits.log_lines_per_s`, 4 KB
//! each), the WASI resources it holds, and how long it may block in WASI.

use super::bindings::weir::operator::{context, emit, log, state};
use super::bounds::CallBounds;
use super::guest_log::{GuestLog, GuestOutput, preview, printable};
use crate::plan::is_valid_name;
use crate::state::{StateAccessError, StateBackend};
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// What an emit call costs besides its bytes: the host's bookkeeping of one batch. A guest that
/// emits empty batches in a loop reaches the per-call limit like one that emits data.
const EMIT_CALL_BYTES: usize = 64;

/// The most WASI resources (streams, pollables) an instance may hold at once; an operator needs
/// a handful.
const MAX_RESOURCES: usize = 10_000;

/// Something a guest asked of the host that the host refuses outright (past a bound, or
/// malformed); the call traps with it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct Refused(pub String);

/// Which side outputs an instance may emit to.
#[derive(Debug, Clone)]
pub enum SideOutputs {
    /// Sources have none: emitting to a side output is an error.
    None,
    /// The names edges consume; other valid names are dropped at once, as in Flink.
    Connected(Arc<[String]>),
}

/// What one guest call has emitted so far, against the per-call limit.
#[derive(Debug, Default)]
pub(super) struct Emitted {
    /// Batches by output (`None` = main); empty batches and unconnected outputs are not kept.
    pub(super) outputs: Vec<(Option<String>, Vec<u8>)>,
    calls: u64,
    bytes: usize,
}

/// Who an instance is and what bounds it: for the state, emit and log imports.
pub(super) struct Identity {
    /// The job's restart attempt this instance runs in.
    pub(super) attempt: u32,
    pub(super) side_outputs: SideOutputs,
}

/// The data of one instance's store.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limiter: MemoryLimiter,
    pub(super) emitted: Emitted,
    /// Most a single call may emit (batch bytes, names and [`EMIT_CALL_BYTES`] per call).
    max_output_bytes: usize,
    pub(super) state: StateBackend,
    /// The versions of its state's encoding and its migration hook, when its component
    /// declares a state above version 1.
    pub(super) migration: Option<Box<super::migration::Migration>>,
    /// The watermark, the clock and the timers the instance sees.
    pub(super) time: super::timers::TimeService,
    pub(super) who: Identity,
    pub(super) bounds: CallBounds,
    log: Arc<GuestLog>,
    /// The last error-level log line of the current call: the Rust SDK logs a panic's message
    /// there before trapping.
    pub(super) last_error_log: Option<String>,
}

impl HostState {
    pub(super) fn new(
        who: Identity,
        memory_bytes: usize,
        log: Arc<GuestLog>,
        state: StateBackend,
        bounds: CallBounds,
    ) -> Self {
        // Guests get no filesystem (no preopens), no network, no environment and no wall clock
        // (it reads as the epoch; the monotonic clock stays, for measuring durations). What they
        // print to stdout and stderr is logged line by line, as their `log` calls are, under
        // the same limit.
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .wall_clock(NoWallClock)
            .stdout(GuestStdio(log.clone(), "stdout"))
            .stderr(GuestStdio(log.clone(), "stderr"))
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        HostState {
            wasi,
            table,
            limiter: MemoryLimiter {
                limit: memory_bytes,
                total: 0,
                refused: None,
            },
            emitted: Emitted::default(),
            max_output_bytes: memory_bytes.max(16 << 20),
            state,
            migration: None,
            time: super::timers::TimeService::default(),
            who,
            bounds,
            log,
            last_error_log: None,
        }
    }

    /// Readies the state for a new guest call that may run for `timeout`.
    pub(super) fn start_call(&mut self, timeout: std::time::Duration) {
        self.bounds.start(timeout);
        self.emitted.calls = 0;
        self.emitted.bytes = 0;
        self.last_error_log = None;
    }

    /// `wasi:io/poll` bounded by this call's deadline and the job's cancellation.
    pub(super) fn bounded_poll(&mut self) -> super::bounds::BoundedPoll<'_> {
        super::bounds::BoundedPoll {
            table: &mut self.table,
            bounds: &self.bounds,
        }
    }
}

impl Drop for HostState {
    fn drop(&mut self) {
        self.log.end();
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The wall clock a guest sees: always the epoch, so results cannot depend on when they ran.
struct NoWallClock;

impl wasmtime_wasi::HostWallClock for NoWallClock {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1)
    }
    fn now(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

/// Caps an instance's linear memory (all its memories together), remembering a refused growth
/// so the failure can say so.
pub(super) struct MemoryLimiter {
    pub(super) limit: usize,
    /// Bytes of all memories of the instance.
    total: usize,
    /// Why growth was refused, once it was.
    pub(super) refused: Option<String>,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = (self.total - current.min(self.total)).saturating_add(desired);
        if total > self.limit {
            let why = format!(
                "the operator tried to grow its memory to {} MiB, past its limit of {} MiB (limits.memory_mib)",
                total >> 20,
                self.limit >> 20
            );
            // Trap right here rather than let the guest's allocator fail somewhere less obvious.
            self.refused = Some(why.clone());
            return Err(wasmtime::Error::msg(why));
        }
        self.total = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

impl emit::Host for HostState {
    fn emit(&mut self, output: Option<String>, batch: Vec<u8>) -> wasmtime::Result<()> {
        let e = &mut self.emitted;
        e.calls += 1;
        e.bytes = e
            .bytes
            .saturating_add(batch.len() + EMIT_CALL_BYTES + output.as_ref().map_or(0, String::len));
        if e.bytes > self.max_output_bytes {
            return Err(Refused(format!(
                "the operator emitted more than {} MiB in one call ({} emit calls; each counts its batch, its output's name and {EMIT_CALL_BYTES} bytes)",
                self.max_output_bytes >> 20,
                e.calls
            ))
            .into());
        }
        if let Some(name) = &output {
            let connected = match &self.who.side_outputs {
                SideOutputs::None => {
                    return Err(Refused(format!(
                        "a source has no side outputs, but it emitted to `{}`",
                        preview(name)
                    ))
                    .into());
                }
                SideOutputs::Connected(names) => names,
            };
            if !is_valid_name(name) {
                return Err(Refused(format!(
                    "the operator emitted to a side output named `{}` ({} bytes); side-output names are 1 to {} letters, digits, `_` or `-`",
                    preview(name),
                    name.len(),
                    crate::plan::MAX_NAME_BYTES
                ))
                .into());
            }
            if !connected.iter().any(|c| c == name) {
                // No edge consumes it: dropped now rather than held until the call ends.
                return Ok(());
            }
        }
        weir_batch::count(&batch).map_err(|e| Refused(format!("the operator emitted a {e}")))?;
        if !batch.is_empty() {
            e.outputs.push((output, batch));
        }
        Ok(())
    }
}

/// A state call's outcome for the guest: a key outside the subtask's key groups is the guest's
/// to handle; going past the state budget fails the call.
pub(super) type StateResult<T> = wasmtime::Result<Result<T, state::StateError>>;

fn refused<T>(e: StateAccessError) -> StateResult<T> {
    match e {
        StateAccessError::KeyOutsideKeyGroups { .. } => {
            Ok(Err(state::StateError::KeyOutsideKeyGroups(e.to_string())))
        }
        StateAccessError::OverBudget { .. } | StateAccessError::Storage(_) => {
            Err(Refused(e.to_string()).into())
        }
    }
}

/// A versioned state call's outcome: a value that cannot be migrated fails the call.
fn migrated<T>(r: Result<T, super::migration::Failure>) -> StateResult<T> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(super::migration::Failure::State(e)) => refused(e),
        Err(super::migration::Failure::Refused(r)) => Err(r.into()),
    }
}

/// `r` as a state call's outcome.
pub(super) fn answer<T>(r: Result<T, StateAccessError>) -> StateResult<T> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(e) => refused(e),
    }
}

pub(super) fn invalid<T>(why: impl Into<String>) -> StateResult<T> {
    Ok(Err(state::StateError::Invalid(why.into())))
}

fn malformed<T>(why: impl std::fmt::Display) -> StateResult<T> {
    invalid(format!("malformed keys or entries: {why}"))
}

/// Refuses a state name that is empty, too long or the host's (the call answers with the
/// error).
macro_rules! check_name {
    ($name:expr) => {
        if $name.is_empty() || $name.len() > 256 {
            return invalid("state names are 1 to 256 bytes");
        }
        if $name.starts_with(super::timers::RESERVED_PREFIX) {
            return invalid(format!(
                "state names starting with `{}` are the host's",
                super::timers::RESERVED_PREFIX
            ));
        }
    };
}

/// The migration of state `name` and the version it is written at, when above 1.
fn versioned<'a>(
    migration: &'a mut Option<Box<super::migration::Migration>>,
    name: &str,
) -> Option<(&'a mut super::migration::Migration, u32)> {
    let m = migration.as_deref_mut()?;
    let v = m.version(name)?;
    Some((m, v))
}

impl HostState {
    /// The name map state `name`'s entries of `key` are stored under when it is versioned
    /// (`None`: its own name), the key's map migrated to that version first if an older
    /// version holds it.
    fn map_version(&mut self, name: &str, key: &[u8]) -> StateResult<Option<String>> {
        match versioned(&mut self.migration, name) {
            None => Ok(Ok(None)),
            Some((m, v)) => migrated(m.map_migrate(&mut self.state, name, v, key))
                .map(|r| r.map(|()| Some(super::migration::stored_name(name, v).into_owned()))),
        }
    }
}

impl state::Host for HostState {
    fn value_get(&mut self, name: String, key: Vec<u8>) -> StateResult<Option<Vec<u8>>> {
        check_name!(name);
        if let Some((m, v)) = versioned(&mut self.migration, &name) {
            return migrated(m.value_get(&mut self.state, &name, v, &key));
        }
        answer(self.state.value_get(&name, &key))
    }

    fn value_set(&mut self, name: String, key: Vec<u8>, value: Vec<u8>) -> StateResult<()> {
        check_name!(name);
        if let Some((m, v)) = versioned(&mut self.migration, &name) {
            return migrated(m.value_set(&mut self.state, &name, v, &key, Some(&value)));
        }
        answer(
            self.state
                .value_set_many(&name, &[(key.as_slice(), Some(value.as_slice()))]),
        )
    }

    fn value_get_many(&mut self, name: String, keys: Vec<u8>) -> StateResult<Vec<u8>> {
        check_name!(name);
        let mut list = Vec::new();
        for key in weir_batch::lengths::iter(&keys) {
            match key {
                Ok(Some(key)) => list.push(key),
                Ok(None) => return malformed("a key is marked absent"),
                Err(e) => return malformed(e),
            }
        }
        let mut out = Vec::with_capacity(keys.len());
        if let Some((m, v)) = versioned(&mut self.migration, &name) {
            for key in list {
                let value = m.value_get(&mut self.state, &name, v, key);
                match migrated(value)? {
                    Ok(value) => weir_batch::lengths::push(&mut out, value.as_deref()),
                    Err(e) => return Ok(Err(e)),
                }
            }
            return Ok(Ok(out));
        }
        answer(
            self.state
                .value_get_many(&name, &list, |v| weir_batch::lengths::push(&mut out, v)),
        )
        .map(|r| r.map(|()| out))
    }

    fn value_set_many(&mut self, name: String, entries: Vec<u8>) -> StateResult<()> {
        check_name!(name);
        let mut list = Vec::new();
        let mut items = weir_batch::lengths::iter(&entries);
        while let Some(key) = items.next() {
            let key = match key {
                Ok(Some(key)) => key,
                Ok(None) => return malformed("a key is marked absent"),
                Err(e) => return malformed(e),
            };
            match items.next() {
                None => return malformed("a key has no value"),
                Some(Err(e)) => return malformed(e),
                Some(Ok(value)) => list.push((key, value)),
            }
        }
        if let Some((m, v)) = versioned(&mut self.migration, &name) {
            for (key, value) in list {
                if let Err(e) = migrated(m.value_set(&mut self.state, &name, v, key, value))? {
                    return Ok(Err(e));
                }
            }
            return Ok(Ok(()));
        }
        answer(self.state.value_set_many(&name, &list))
    }

    fn value_clear(&mut self, name: String, key: Vec<u8>) -> StateResult<()> {
        check_name!(name);
        if let Some((m, v)) = versioned(&mut self.migration, &name) {
            return migrated(m.value_set(&mut self.state, &name, v, &key, None));
        }
        answer(self.state.value_set_many(&name, &[(key.as_slice(), None)]))
    }

    fn map_get(
        &mut self,
        name: String,
        key: Vec<u8>,
        map_key: Vec<u8>,
    ) -> StateResult<Option<Vec<u8>>> {
        check_name!(name);
        let stored = match self.map_version(&name, &key)? {
            Ok(stored) => stored,
            Err(e) => return Ok(Err(e)),
        };
        answer(
            self.state
                .map_get(stored.as_deref().unwrap_or(&name), &key, &map_key),
        )
    }

    fn map_put(
        &mut self,
        name: String,
        key: Vec<u8>,
        map_key: Vec<u8>,
        value: Vec<u8>,
    ) -> StateResult<()> {
        check_name!(name);
        let stored = match self.map_version(&name, &key)? {
            Ok(stored) => stored,
            Err(e) => return Ok(Err(e)),
        };
        answer(
            self.state
                .map_put(stored.as_deref().unwrap_or(&name), key, map_key, value),
        )
    }

    fn map_remove(&mut self, name: String, key: Vec<u8>, map_key: Vec<u8>) -> StateResult<()> {
        check_name!(name);
        let stored = match self.map_version(&name, &key)? {
            Ok(stored) => stored,
            Err(e) => return Ok(Err(e)),
        };
        answer(
            self.state
                .map_remove(stored.as_deref().unwrap_or(&name), &key, &map_key),
        )
    }

    fn map_entries(&mut self, name: String, key: Vec<u8>) -> StateResult<Vec<(Vec<u8>, Vec<u8>)>> {
        check_name!(name);
        let stored = match self.map_version(&name, &key)? {
            Ok(stored) => stored,
            Err(e) => return Ok(Err(e)),
        };
        answer(
            self.state
                .map_entries(stored.as_deref().unwrap_or(&name), &key),
        )
    }

    fn map_clear(&mut self, name: String, key: Vec<u8>) -> StateResult<()> {
        check_name!(name);
        let stored = match self.map_version(&name, &key)? {
            Ok(stored) => stored,
            Err(e) => return Ok(Err(e)),
        };
        answer(
            self.state
                .map_clear(stored.as_deref().unwrap_or(&name), &key),
        )
    }
}

impl context::Host for HostState {
    fn attempt(&mut self) -> u32 {
        self.who.attempt
    }
}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) {
        if level == log::Level::Error {
            // Kept whatever the rate: it may be the message of a panic about to trap.
            self.last_error_log = Some(printable(&message, true).into_owned());
        }
        let (name, shown) = match level {
            log::Level::Trace => ("trace", tracing::enabled!(tracing::Level::TRACE)),
            log::Level::Debug => ("debug", tracing::enabled!(tracing::Level::DEBUG)),
            log::Level::Info => ("info", tracing::enabled!(tracing::Level::INFO)),
            log::Level::Warn => ("warn", tracing::enabled!(tracing::Level::WARN)),
            log::Level::Error => ("error", tracing::enabled!(tracing::Level::ERROR)),
        };
        self.log.line(name, &message, shown);
    }
}

/// A guest's stdout or stderr, as WASI hands it out: each stream splits what is written into
/// lines for the subtask's [`GuestLog`].
struct GuestStdio(Arc<GuestLog>, &'static str);

impl wasmtime_wasi::cli::IsTerminal for GuestStdio {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for GuestStdio {
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(GuestStream(GuestOutput::new(self.0.clone(), self.1)))
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Only the synchronous WASIp2 bindings are linked: nothing asks for this one.
        Box::new(tokio::io::sink())
    }
}

struct GuestStream(GuestOutput);

impl wasmtime_wasi::p2::OutputStream for GuestStream {
    fn write(&mut self, bytes: bytes::Bytes) -> wasmtime_wasi::p2::StreamResult<()> {
        self.0.write(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> wasmtime_wasi::p2::StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> wasmtime_wasi::p2::StreamResult<usize> {
        Ok(64 << 10)
    }
}

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for GuestStream {
    async fn ready(&mut self) {}
}
