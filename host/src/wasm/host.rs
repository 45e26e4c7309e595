//! What a guest's imports do: emit into the subtask's output buffers, keyed state in the
//! subtask's key groups, logging into the host log. One `HostState` per instance (per subtask).

use super::bindings::weir::operator::{emit, log, state};
use crate::state::{KeyedState, StateAccessError};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// The data of one instance's store.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limiter: MemoryLimiter,
    /// Batches emitted during the current call, by output (`None` = main).
    pub(super) outputs: Vec<(Option<String>, Vec<u8>)>,
    pub(super) output_bytes: usize,
    /// Most a single call may emit before the guest is stopped.
    pub(super) max_output_bytes: usize,
    pub(super) state: KeyedState,
    pub(super) operator: std::sync::Arc<str>,
    pub(super) subtask: u32,
    /// The last error-level log line: the SDKs log a panic's message there before trapping.
    pub(super) last_error_log: Option<String>,
}

impl HostState {
    pub(super) fn new(
        operator: std::sync::Arc<str>,
        subtask: u32,
        memory_bytes: usize,
        state: KeyedState,
    ) -> Self {
        // Guests get no filesystem (no preopens), no network, no environment and no wall clock
        // (it reads as the epoch; the monotonic clock stays, for measuring durations). Stdout and
        // stderr go nowhere: operators log through the `log` import.
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .wall_clock(NoWallClock)
            .build();
        HostState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                limit: memory_bytes,
                refused: None,
            },
            outputs: Vec::new(),
            output_bytes: 0,
            max_output_bytes: memory_bytes.max(16 << 20),
            state,
            operator,
            subtask,
            last_error_log: None,
        }
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

/// Caps an instance's linear memory, remembering a refused growth so the failure can say so.
pub(super) struct MemoryLimiter {
    pub(super) limit: usize,
    /// Why growth was refused, once it was.
    pub(super) refused: Option<String>,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            let why = format!(
                "the operator tried to grow its memory to {} MiB, past its limit of {} MiB (limits.memory_mib)",
                desired >> 20,
                self.limit >> 20
            );
            // Trap right here rather than let the guest's allocator fail somewhere less obvious.
            self.refused = Some(why.clone());
            return Err(wasmtime::Error::msg(why));
        }
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
        weir_batch::count(&batch)
            .map_err(|e| wasmtime::Error::msg(format!("the operator emitted a {e}")))?;
        self.output_bytes += batch.len();
        if self.output_bytes > self.max_output_bytes {
            return Err(wasmtime::Error::msg(format!(
                "the operator emitted more than {} MiB in one call",
                self.max_output_bytes >> 20
            )));
        }
        self.outputs.push((output, batch));
        Ok(())
    }
}

fn refused(e: StateAccessError) -> state::StateError {
    match e {
        StateAccessError::KeyOutsideKeyGroups { .. } => {
            state::StateError::KeyOutsideKeyGroups(e.to_string())
        }
    }
}

fn malformed(e: weir_batch::FormatError) -> state::StateError {
    state::StateError::Invalid(format!("malformed keys or entries: {e}"))
}

fn malformed_msg(why: &str) -> state::StateError {
    state::StateError::Invalid(format!("malformed keys or entries: {why}"))
}

fn check_name(name: &str) -> Result<(), state::StateError> {
    if name.is_empty() || name.len() > 256 {
        return Err(state::StateError::Invalid(
            "state names are 1 to 256 bytes".into(),
        ));
    }
    Ok(())
}

impl state::Host for HostState {
    fn value_get(
        &mut self,
        name: String,
        key: Vec<u8>,
    ) -> Result<Option<Vec<u8>>, state::StateError> {
        check_name(&name)?;
        Ok(self
            .state
            .value_get(&name, &key)
            .map_err(refused)?
            .map(<[u8]>::to_vec))
    }
    fn value_set(
        &mut self,
        name: String,
        key: Vec<u8>,
        value: Vec<u8>,
    ) -> Result<(), state::StateError> {
        check_name(&name)?;
        self.state.value_set(&name, &key, &value).map_err(refused)
    }
    fn value_get_many(
        &mut self,
        name: String,
        keys: Vec<u8>,
    ) -> Result<Vec<u8>, state::StateError> {
        check_name(&name)?;
        let state = self.state.value_state(&name);
        let mut out = Vec::with_capacity(keys.len());
        for key in weir_batch::lengths::iter(&keys) {
            let key = key
                .map_err(malformed)?
                .ok_or_else(|| malformed_msg("a key is marked absent"))?;
            weir_batch::lengths::push(&mut out, state.get(key).map_err(refused)?);
        }
        Ok(out)
    }

    fn value_set_many(&mut self, name: String, entries: Vec<u8>) -> Result<(), state::StateError> {
        check_name(&name)?;
        let mut state = self.state.value_state(&name);
        let mut items = weir_batch::lengths::iter(&entries);
        while let Some(key) = items.next() {
            let key = key
                .map_err(malformed)?
                .ok_or_else(|| malformed_msg("a key is marked absent"))?;
            let value = items
                .next()
                .ok_or_else(|| malformed_msg("a key has no value"))?
                .map_err(malformed)?;
            match value {
                Some(v) => state.set(key, v),
                None => state.clear(key),
            }
            .map_err(refused)?;
        }
        Ok(())
    }

    fn value_clear(&mut self, name: String, key: Vec<u8>) -> Result<(), state::StateError> {
        check_name(&name)?;
        self.state.value_clear(&name, &key).map_err(refused)
    }
    fn map_get(
        &mut self,
        name: String,
        key: Vec<u8>,
        map_key: Vec<u8>,
    ) -> Result<Option<Vec<u8>>, state::StateError> {
        check_name(&name)?;
        Ok(self
            .state
            .map_get(&name, &key, &map_key)
            .map_err(refused)?
            .map(<[u8]>::to_vec))
    }
    fn map_put(
        &mut self,
        name: String,
        key: Vec<u8>,
        map_key: Vec<u8>,
        value: Vec<u8>,
    ) -> Result<(), state::StateError> {
        check_name(&name)?;
        self.state
            .map_put(&name, key, map_key, value)
            .map_err(refused)
    }
    fn map_remove(
        &mut self,
        name: String,
        key: Vec<u8>,
        map_key: Vec<u8>,
    ) -> Result<(), state::StateError> {
        check_name(&name)?;
        self.state
            .map_remove(&name, &key, &map_key)
            .map_err(refused)
    }
    fn map_entries(
        &mut self,
        name: String,
        key: Vec<u8>,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, state::StateError> {
        check_name(&name)?;
        self.state.map_entries(&name, &key).map_err(refused)
    }
    fn map_clear(&mut self, name: String, key: Vec<u8>) -> Result<(), state::StateError> {
        check_name(&name)?;
        self.state.map_clear(&name, &key).map_err(refused)
    }
}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) {
        let (operator, subtask) = (&*self.operator, self.subtask);
        match level {
            log::Level::Trace => tracing::trace!(operator, subtask, "{message}"),
            log::Level::Debug => tracing::debug!(operator, subtask, "{message}"),
            log::Level::Info => tracing::info!(operator, subtask, "{message}"),
            log::Level::Warn => tracing::warn!(operator, subtask, "{message}"),
            log::Level::Error => {
                tracing::error!(operator, subtask, "{message}");
                self.last_error_log = Some(message);
            }
        }
    }
}
