//! Write weir operators in Rust.
//!
//! An operator is a type implementing [`Operator`]: it is opened with its manifest config, sees
//! records one at a time (the SDK unpacks the batch the host passes in one call), emits records
//! through a [`Context`], and keeps keyed state in [`ValueState`] and [`MapState`] handles that
//! the host stores per key group. [`export_operator!`] turns the type into a component's exports,
//! and [`testing::Harness`] runs it natively under `cargo test`, no WASM needed.
//!
//! ```
//! use weir_guest_sdk::prelude::*;
//!
//! struct Count { counts: ValueState<u64> }
//!
//! impl Operator for Count {
//!     fn open(_ctx: &mut Context, _config: Config) -> Result<Self, Error> {
//!         Ok(Count { counts: ValueState::new("count") })
//!     }
//!     fn process(&mut self, ctx: &mut Context, record: Record<'_>) -> Result<(), Error> {
//!         let n = self.counts.get(record.key)?.unwrap_or(0) + 1;
//!         self.counts.set(record.key, &n)?;
//!         ctx.emit(record.key, format!("{} {n}", record.key_str()?));
//!         Ok(())
//!     }
//! }
//!
//! export_operator!(Count);
//! # fn main() {}
//! ```

extern crate self as weir_guest_sdk;

mod backend;
mod context;
mod error;
pub mod keys;
pub mod log;
mod record;
#[doc(hidden)]
pub mod runtime;
mod source;
mod state;
pub mod testing;
pub mod text;
pub mod window;

pub use context::{Config, Context, ValueWriter};
pub use error::{Error, StateError};
pub use record::Record;
pub use source::{Poll, Source, Split};
pub use state::{MapState, ValueState};
pub use window::{Aggregate, ProcessWindow, Reduce, Window, WindowOutput};

/// Everything an operator needs, in one import.
pub mod prelude {
    pub use crate::{
        Aggregate, Config, Context, Error, MapState, Operator, Poll, ProcessWindow, Record, Reduce,
        Source, Split, TimeDomain, Timer, ValueState, Window, WindowOutput, export_aggregate,
        export_operator, export_process_window, export_reduce, export_source,
    };
}

/// The generated bindings of `weir:operator@0.1.0`; used by [`export_operator!`].
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "full-operator",
        pub_export_macro: true,
        export_macro_name: "__export_operator_world",
        default_bindings_module: "weir_guest_sdk::bindings",
        runtime_path: "weir_guest_sdk::__wit_bindgen::rt",
    });

    /// The window-aggregate world's own exports.
    pub mod aggregate {
        wit_bindgen::generate!({
            path: "../wit",
            world: "window-aggregate",
            pub_export_macro: true,
            export_macro_name: "__export_aggregate_world",
            default_bindings_module: "weir_guest_sdk::bindings::aggregate",
            runtime_path: "weir_guest_sdk::__wit_bindgen::rt",
            type_section_suffix: "aggregate",
            with: {
                "weir:operator/emit@0.1.0": crate::bindings::weir::operator::emit,
                "weir:operator/state@0.1.0": crate::bindings::weir::operator::state,
                "weir:operator/log@0.1.0": crate::bindings::weir::operator::log,
                "weir:operator/context@0.1.0": crate::bindings::weir::operator::context,
            },
        });
    }

    /// The window-reduce world's own exports.
    pub mod reduce {
        wit_bindgen::generate!({
            path: "../wit",
            world: "window-reduce",
            pub_export_macro: true,
            export_macro_name: "__export_reduce_world",
            default_bindings_module: "weir_guest_sdk::bindings::reduce",
            runtime_path: "weir_guest_sdk::__wit_bindgen::rt",
            type_section_suffix: "reduce",
            with: {
                "weir:operator/emit@0.1.0": crate::bindings::weir::operator::emit,
                "weir:operator/state@0.1.0": crate::bindings::weir::operator::state,
                "weir:operator/log@0.1.0": crate::bindings::weir::operator::log,
                "weir:operator/context@0.1.0": crate::bindings::weir::operator::context,
            },
        });
    }

    /// The window-process world's own exports.
    pub mod process {
        wit_bindgen::generate!({
            path: "../wit",
            world: "window-process",
            pub_export_macro: true,
            export_macro_name: "__export_process_world",
            default_bindings_module: "weir_guest_sdk::bindings::process",
            runtime_path: "weir_guest_sdk::__wit_bindgen::rt",
            type_section_suffix: "process",
            with: {
                "weir:operator/emit@0.1.0": crate::bindings::weir::operator::emit,
                "weir:operator/state@0.1.0": crate::bindings::weir::operator::state,
                "weir:operator/log@0.1.0": crate::bindings::weir::operator::log,
                "weir:operator/context@0.1.0": crate::bindings::weir::operator::context,
            },
        });
    }

    /// The source world's own exports; its imports are the operator world's.
    pub mod source {
        wit_bindgen::generate!({
            path: "../wit",
            world: "source",
            pub_export_macro: true,
            export_macro_name: "__export_source_world",
            default_bindings_module: "weir_guest_sdk::bindings::source",
            runtime_path: "weir_guest_sdk::__wit_bindgen::rt",
            type_section_suffix: "source",
            with: {
                "weir:operator/emit@0.1.0": crate::bindings::weir::operator::emit,
                "weir:operator/log@0.1.0": crate::bindings::weir::operator::log,
                "weir:operator/context@0.1.0": crate::bindings::weir::operator::context,
            },
        });
    }
}

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

/// The encoding keyed state values are stored in (postcard, compact binary), to convert values
/// between encodings in [`Operator::migrate`].
pub mod codec {
    use crate::Error;
    use serde::{Serialize, de::DeserializeOwned};

    /// `value` as [`crate::ValueState`] stores it.
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
        postcard::to_allocvec(value).map_err(|e| Error::msg(format!("value does not encode: {e}")))
    }

    /// A value as [`crate::ValueState`] stored it.
    pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
        postcard::from_bytes(bytes).map_err(|e| Error::msg(format!("value does not decode: {e}")))
    }
}

/// Helpers for building byte strings in hot paths.
pub mod bytes {
    /// Appends `bytes` to `buf`, like `Vec::extend_from_slice` but much cheaper for short
    /// slices inside a component: there a general copy is a `memory.copy` call out of the
    /// guest's code.
    pub use weir_batch::extend;
}

/// Which clock a timer follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeDomain {
    /// The records' timestamps, as far as the watermark says.
    Event,
    /// The subtask's wall clock.
    Processing,
}

/// A timer that fired: the key it was registered for, its time (ms) and its clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timer<'a> {
    pub key: &'a [u8],
    pub time: i64,
    pub domain: TimeDomain,
}

/// A stream operator: opened once per subtask, called for every record, closed at end of input.
pub trait Operator: Sized + 'static {
    /// Builds the operator from its manifest `config` table. An error fails the job.
    fn open(ctx: &mut Context, config: Config) -> Result<Self, Error>;

    /// Handles one record; emit results through `ctx`.
    fn process(&mut self, ctx: &mut Context, record: Record<'_>) -> Result<(), Error>;

    /// Handles the records of one batch, in order; by default, `process` for each. Override it
    /// to touch keyed state once per batch (`ValueState::get_many`/`set_many`) instead of twice
    /// per record: each state call crosses the WASM boundary.
    fn process_batch(&mut self, ctx: &mut Context, records: &[Record<'_>]) -> Result<(), Error> {
        records.iter().try_for_each(|r| self.process(ctx, *r))
    }

    /// A timer this operator registered fired (see [`Context::register_event_timer`]): timers
    /// come in time order, then by key. May emit, use state and register timers. By default an
    /// error: an operator that registers timers implements this.
    fn on_timer(&mut self, ctx: &mut Context, timer: Timer<'_>) -> Result<(), Error> {
        let _ = (ctx, timer);
        Err(Error::msg(
            "a timer fired, but the operator does not implement Operator::on_timer",
        ))
    }

    /// Called once when the input has ended; may still emit.
    fn close(&mut self, ctx: &mut Context) -> Result<(), Error> {
        let _ = ctx;
        Ok(())
    }

    /// The operator's private state at a checkpoint (beside its keyed state, which the host
    /// keeps): anything it holds in its own fields that must survive a failure. Empty (the
    /// default) means none.
    fn snapshot(&mut self) -> Result<Vec<u8>, Error> {
        Ok(Vec::new())
    }

    /// The version of each state's encoding this operator writes: (state name, version). A
    /// state not listed is at version 1, as is every state of an operator that lists none.
    /// Raise a state's version when a new version of the operator encodes it differently, and
    /// convert older values in [`Operator::migrate`]: the host hands it each value an older
    /// version wrote, the first time the operator uses that value's key.
    fn state_versions() -> Vec<(&'static str, u32)> {
        Vec::new()
    }

    /// A value of state `state` written by version `from` of its encoding, in the encoding
    /// [`Operator::state_versions`] says (for a map state, one entry's value). Runs in an
    /// instance of its own, without `open`: a pure conversion. An error fails the call that
    /// used the value (after a swap, that rolls the operator back to its previous component).
    fn migrate(state: &str, from: u32, value: &[u8]) -> Result<Vec<u8>, Error> {
        let _ = value;
        Err(Error::msg(format!(
            "state `{state}` holds values of version {from}, but the operator does not implement Operator::migrate"
        )))
    }

    /// After a restore, called after `open` and before the first batch with a private state
    /// [`Operator::snapshot`] returned: once with its own when the parallelism is unchanged; after
    /// a change, once per old subtask's state this subtask takes over, so merge them.
    fn restore(&mut self, state: &[u8]) -> Result<(), Error> {
        let _ = state;
        Ok(())
    }
}

/// Exports a type implementing [`Operator`] as the component's `weir:operator` world.
///
/// The exports exist only when building for WASM; natively (tests under
/// [`testing::Harness`]) the type is used directly.
#[macro_export]
macro_rules! export_operator {
    ($ty:ty) => {
        #[doc(hidden)]
        #[cfg(target_family = "wasm")]
        struct __WeirOperatorExports;

        #[cfg(target_family = "wasm")]
        impl $crate::bindings::exports::weir::operator::handler::Guest for __WeirOperatorExports {
            fn open(config: ::std::string::String) -> ::std::result::Result<(), ::std::string::String> {
                $crate::runtime::open::<$ty>(config)
            }
            fn process(batch: ::std::vec::Vec<u8>) -> ::std::result::Result<(), ::std::string::String> {
                $crate::runtime::process::<$ty>(&batch)
            }
            fn close() -> ::std::result::Result<(), ::std::string::String> {
                $crate::runtime::close::<$ty>()
            }
        }

        #[cfg(target_family = "wasm")]
        impl $crate::bindings::exports::weir::operator::checkpoint_hooks::Guest for __WeirOperatorExports {
            fn snapshot() -> ::std::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                $crate::runtime::snapshot::<$ty>()
            }
            fn restore(state: ::std::vec::Vec<u8>) -> ::std::result::Result<(), ::std::string::String> {
                $crate::runtime::restore::<$ty>(&state)
            }
        }

        #[cfg(target_family = "wasm")]
        impl $crate::bindings::exports::weir::operator::timer_handler::Guest for __WeirOperatorExports {
            fn on_timer(timers: ::std::vec::Vec<u8>) -> ::std::result::Result<(), ::std::string::String> {
                $crate::runtime::on_timer::<$ty>(&timers)
            }
        }

        #[cfg(target_family = "wasm")]
        impl $crate::bindings::exports::weir::operator::migration::Guest for __WeirOperatorExports {
            fn state_versions() -> ::std::vec::Vec<(::std::string::String, u32)> {
                <$ty as $crate::Operator>::state_versions()
                    .into_iter()
                    .map(|(name, v)| (::std::string::String::from(name), v))
                    .collect()
            }
            fn migrate(
                state: ::std::string::String,
                from_version: u32,
                value: ::std::vec::Vec<u8>,
            ) -> ::std::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                $crate::runtime::migrate::<$ty>(&state, from_version, &value)
            }
        }

        #[cfg(target_family = "wasm")]
        $crate::bindings::__export_operator_world!(__WeirOperatorExports with_types_in $crate::bindings);
    };
}

/// Exports a type implementing [`Source`] as the component's `weir:operator/source` world.
#[macro_export]
macro_rules! export_source {
    ($ty:ty) => {
        #[doc(hidden)]
        #[cfg(target_family = "wasm")]
        struct __WeirSourceExports;

        #[cfg(target_family = "wasm")]
        impl $crate::bindings::source::exports::weir::operator::source_handler::Guest for __WeirSourceExports {
            fn open(
                config: ::std::string::String,
                subtask: u32,
                parallelism: u32,
            ) -> ::std::result::Result<(), ::std::string::String> {
                $crate::runtime::source_open::<$ty>(config, subtask, parallelism)
            }
            fn poll(
                max_records: u32,
            ) -> ::std::result::Result<
                $crate::bindings::source::exports::weir::operator::source_handler::PollStatus,
                ::std::string::String,
            > {
                use $crate::bindings::source::exports::weir::operator::source_handler::PollStatus;
                $crate::runtime::source_poll::<$ty>(max_records).map(|p| match p {
                    $crate::Poll::More => PollStatus::More,
                    $crate::Poll::Ended => PollStatus::Ended,
                })
            }
            fn position() -> ::std::vec::Vec<u8> {
                $crate::runtime::source_position::<$ty>()
            }
            fn restore(position: ::std::vec::Vec<u8>) -> ::std::result::Result<(), ::std::string::String> {
                $crate::runtime::source_restore::<$ty>(position)
            }
        }

        #[cfg(target_family = "wasm")]
        $crate::bindings::source::__export_source_world!(
            __WeirSourceExports with_types_in $crate::bindings::source
        );
    };
}
