//! One operator instance per subtask: its own store, memory limit, time limit per call and keyed
//! state; calls per batch; failures turned into errors that say what the guest did.

use super::LoadedComponent;
use super::bindings;
use super::host::HostState;
use crate::plan::{GuestLimits, key_groups};
use crate::state::KeyedState;
use std::sync::Arc;
use wasmtime::{Store, Trap};

/// Batches emitted by one call, by output (`None` = main output).
pub type Outputs = Vec<(Option<String>, Vec<u8>)>;

/// Where an instance runs: which operator and subtask, with what limits and config.
#[derive(Clone, Debug)]
pub struct InstanceSpec {
    pub operator: Arc<str>,
    pub subtask: u32,
    pub parallelism: u32,
    pub max_parallelism: u32,
    pub limits: GuestLimits,
    pub config_json: String,
}

/// How a guest call went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestError {
    #[error("the operator returned an error from {call}: {message}")]
    Returned { call: &'static str, message: String },
    #[error("the operator panicked in {call}: {message}")]
    Panicked { call: &'static str, message: String },
    #[error(
        "a call to {call} ran past the limit of {limit_ms} ms (limits.call_timeout_ms); is the operator looping?"
    )]
    TimedOut { call: &'static str, limit_ms: u128 },
    #[error("out of memory in {call}: {message}")]
    OutOfMemory { call: &'static str, message: String },
    #[error("the operator trapped in {call}: {message}")]
    Trapped { call: &'static str, message: String },
    #[error("cannot instantiate the operator: {0}")]
    Instantiate(String),
}

/// A live operator instance.
pub struct OperatorInstance {
    store: Store<HostState>,
    operator: bindings::Operator,
    call_ticks: u64,
    call_timeout_ms: u128,
}

const MAX_MESSAGE: usize = 4096;

fn clip(mut s: String) -> String {
    if s.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

impl LoadedComponent {
    /// Instantiates the component for one subtask and calls its `open`.
    pub fn instantiate(&self, spec: &InstanceSpec) -> Result<OperatorInstance, GuestError> {
        let range = key_groups::range_of(spec.subtask, spec.parallelism, spec.max_parallelism);
        let state = KeyedState::new(range, spec.max_parallelism);
        let data = HostState::new(
            spec.operator.clone(),
            spec.subtask,
            spec.limits.memory_bytes,
            state,
        );
        let mut store = Store::new(self.pre.engine(), data);
        store.limiter(|s| &mut s.limiter);
        let call_ticks = (spec.limits.call_timeout.as_millis() / super::EPOCH_TICK.as_millis())
            .max(1) as u64
            + 1;
        store.set_epoch_deadline(call_ticks);
        store.epoch_deadline_trap();
        let operator = match self.pre.instantiate(&mut store) {
            Ok(o) => o,
            Err(e) => return Err(GuestError::Instantiate(clip(format!("{e:#}")))),
        };
        let mut instance = OperatorInstance {
            store,
            operator,
            call_ticks,
            call_timeout_ms: spec.limits.call_timeout.as_millis(),
        };
        instance.call("open", |op, store| {
            op.weir_operator_handler()
                .call_open(store, &spec.config_json)
        })?;
        Ok(instance)
    }
}

impl OperatorInstance {
    fn call(
        &mut self,
        call: &'static str,
        f: impl FnOnce(
            &bindings::Operator,
            &mut Store<HostState>,
        ) -> wasmtime::Result<Result<(), String>>,
    ) -> Result<Outputs, GuestError> {
        self.store.set_epoch_deadline(self.call_ticks);
        self.store.data_mut().output_bytes = 0;
        match f(&self.operator, &mut self.store) {
            Ok(Ok(())) => Ok(std::mem::take(&mut self.store.data_mut().outputs)),
            Ok(Err(message)) => Err(GuestError::Returned {
                call,
                message: clip(message),
            }),
            Err(e) => Err(self.classify(call, e)),
        }
    }

    fn classify(&mut self, call: &'static str, e: wasmtime::Error) -> GuestError {
        let data = self.store.data_mut();
        data.outputs.clear();
        if matches!(e.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
            return GuestError::TimedOut {
                call,
                limit_ms: self.call_timeout_ms,
            };
        }
        if let Some(why) = data.limiter.refused.take() {
            return GuestError::OutOfMemory { call, message: why };
        }
        if let Some(panic) = data
            .last_error_log
            .take()
            .filter(|m| m.starts_with("operator panicked"))
        {
            let message = panic.trim_start_matches("operator panicked: ").to_string();
            return GuestError::Panicked {
                call,
                message: clip(message),
            };
        }
        GuestError::Trapped {
            call,
            message: clip(format!("{e:?}")),
        }
    }

    /// Processes one batch (flat format); returns what the operator emitted.
    pub fn process(&mut self, batch: &[u8]) -> Result<Outputs, GuestError> {
        self.call("process", |op, store| {
            op.weir_operator_handler().call_process(store, batch)
        })
    }

    /// Ends the input; returns what the operator emitted while closing.
    pub fn close(&mut self) -> Result<Outputs, GuestError> {
        self.call("close", |op, store| {
            op.weir_operator_handler().call_close(store)
        })
    }
}
