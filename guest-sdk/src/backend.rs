//! Where emitted batches, state calls and log lines go: the host's imports inside a component,
//! or the in-memory host of [`crate::testing::Harness`] in native tests.

use crate::log::Level;
use crate::{StateError, TimeDomain};
use std::cell::RefCell;

/// Key-value pairs as map-state calls return them.
pub(crate) type EntryList = Vec<(Vec<u8>, Vec<u8>)>;

/// The host services an operator uses.
pub(crate) trait Backend {
    fn emit(&mut self, output: Option<&str>, batch: &[u8]);
    fn value_get(&mut self, name: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;
    fn value_set(&mut self, name: &str, key: &[u8], value: &[u8]) -> Result<(), StateError>;
    fn value_clear(&mut self, name: &str, key: &[u8]) -> Result<(), StateError>;
    /// `keys` and the result in `weir_batch::lengths` format.
    fn value_get_many(&mut self, name: &str, keys: &[u8]) -> Result<Vec<u8>, StateError>;
    /// Key, value pairs in `weir_batch::lengths` format (an absent value clears).
    fn value_set_many(&mut self, name: &str, entries: &[u8]) -> Result<(), StateError>;
    fn map_get(
        &mut self,
        name: &str,
        key: &[u8],
        map_key: &[u8],
    ) -> Result<Option<Vec<u8>>, StateError>;
    fn map_put(
        &mut self,
        name: &str,
        key: &[u8],
        map_key: &[u8],
        value: &[u8],
    ) -> Result<(), StateError>;
    fn map_remove(&mut self, name: &str, key: &[u8], map_key: &[u8]) -> Result<(), StateError>;
    fn map_entries(&mut self, name: &str, key: &[u8]) -> Result<EntryList, StateError>;
    fn map_clear(&mut self, name: &str, key: &[u8]) -> Result<(), StateError>;
    fn log(&mut self, level: Level, message: &str);
    /// How many times the job has restarted before this run.
    fn attempt(&mut self) -> u32;
    /// The operator's current watermark.
    fn watermark(&mut self) -> i64;
    /// The wall clock, ms since the Unix epoch.
    fn processing_time(&mut self) -> i64;
    /// Registers (or, `register` false, deletes) a timer of `key` at `time`.
    fn timer(
        &mut self,
        domain: TimeDomain,
        key: &[u8],
        time: i64,
        register: bool,
    ) -> Result<(), StateError>;
}

thread_local! {
    static BACKEND: RefCell<Option<Box<dyn Backend>>> = RefCell::new(default_backend());
}

#[cfg(target_family = "wasm")]
fn default_backend() -> Option<Box<dyn Backend>> {
    Some(Box::new(wasm::Host))
}

#[cfg(not(target_family = "wasm"))]
fn default_backend() -> Option<Box<dyn Backend>> {
    None
}

/// Runs `f` against the current backend.
pub(crate) fn with<R>(f: impl FnOnce(&mut dyn Backend) -> R) -> R {
    BACKEND.with(|b| {
        let mut b = b.borrow_mut();
        let backend = b
            .as_deref_mut()
            .expect("no weir host: run the operator in weir, or natively under weir_guest_sdk::testing::Harness");
        f(backend)
    })
}

/// Installs `backend` for this thread, returning the previous one.
pub(crate) fn install(backend: Option<Box<dyn Backend>>) -> Option<Box<dyn Backend>> {
    BACKEND.with(|b| b.replace(backend))
}

#[cfg(target_family = "wasm")]
mod wasm {
    use super::{Backend, EntryList};
    use crate::bindings::weir::operator::{context, emit, log, state, timers};
    use crate::log::Level;
    use crate::{StateError, TimeDomain};

    /// The host's imports.
    pub(super) struct Host;

    fn err(e: state::StateError) -> StateError {
        match e {
            state::StateError::KeyOutsideKeyGroups(m) => StateError::KeyOutsideKeyGroups(m),
            state::StateError::Invalid(m) => StateError::Invalid(m),
        }
    }

    impl Backend for Host {
        fn emit(&mut self, output: Option<&str>, batch: &[u8]) {
            emit::emit(output, batch)
        }
        fn value_get(&mut self, name: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
            state::value_get(name, key).map_err(err)
        }
        fn value_set(&mut self, name: &str, key: &[u8], value: &[u8]) -> Result<(), StateError> {
            state::value_set(name, key, value).map_err(err)
        }
        fn value_clear(&mut self, name: &str, key: &[u8]) -> Result<(), StateError> {
            state::value_clear(name, key).map_err(err)
        }
        fn value_get_many(&mut self, name: &str, keys: &[u8]) -> Result<Vec<u8>, StateError> {
            state::value_get_many(name, keys).map_err(err)
        }
        fn value_set_many(&mut self, name: &str, entries: &[u8]) -> Result<(), StateError> {
            state::value_set_many(name, entries).map_err(err)
        }
        fn map_get(
            &mut self,
            name: &str,
            key: &[u8],
            map_key: &[u8],
        ) -> Result<Option<Vec<u8>>, StateError> {
            state::map_get(name, key, map_key).map_err(err)
        }
        fn map_put(
            &mut self,
            name: &str,
            key: &[u8],
            map_key: &[u8],
            value: &[u8],
        ) -> Result<(), StateError> {
            state::map_put(name, key, map_key, value).map_err(err)
        }
        fn map_remove(&mut self, name: &str, key: &[u8], map_key: &[u8]) -> Result<(), StateError> {
            state::map_remove(name, key, map_key).map_err(err)
        }
        fn map_entries(&mut self, name: &str, key: &[u8]) -> Result<EntryList, StateError> {
            state::map_entries(name, key).map_err(err)
        }
        fn map_clear(&mut self, name: &str, key: &[u8]) -> Result<(), StateError> {
            state::map_clear(name, key).map_err(err)
        }
        fn log(&mut self, level: Level, message: &str) {
            let level = match level {
                Level::Trace => log::Level::Trace,
                Level::Debug => log::Level::Debug,
                Level::Info => log::Level::Info,
                Level::Warn => log::Level::Warn,
                Level::Error => log::Level::Error,
            };
            log::log(level, message)
        }
        fn attempt(&mut self) -> u32 {
            context::attempt()
        }
        fn watermark(&mut self) -> i64 {
            timers::current_watermark()
        }
        fn processing_time(&mut self) -> i64 {
            timers::current_processing_time()
        }
        fn timer(
            &mut self,
            domain: TimeDomain,
            key: &[u8],
            time: i64,
            register: bool,
        ) -> Result<(), StateError> {
            let domain = match domain {
                TimeDomain::Event => timers::TimeDomain::Event,
                TimeDomain::Processing => timers::TimeDomain::Processing,
            };
            if register {
                timers::register_timer(domain, key, time).map_err(err)
            } else {
                timers::delete_timer(domain, key, time).map_err(err)
            }
        }
    }
}
