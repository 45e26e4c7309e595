//! Guest instances, one per subtask: their own store, memory limit, time limit per call and (for
//! operators) keyed state; calls per batch; failures turned into errors that say what the guest
//! did. Operators and sources share this; only their calls differ.

use super::bindings;
use super::bindings::source::exports::weir::operator::source_handler::PollStatus;
use super::bindings::weir::operator::timers::TimeDomain;
use super::bounds::{CallBounds, Interrupted};
use super::guest_log::printable;
use super::host::{HostState, Identity, Refused, SideOutputs};
use super::{LoadedComponent, Pre};
use crate::cancel::CancelToken;
use crate::plan::{GuestLimits, key_groups};
use crate::state::{KeyedSnapshot, StateBackend};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::{Store, Trap, UpdateDeadline};

/// Batches emitted by one call, by output (`None` = main output).
pub type Outputs = Vec<(Option<String>, Vec<u8>)>;

/// Where an instance runs: which node and subtask, with what limits and config.
#[derive(Clone, Debug)]
pub struct InstanceSpec {
    /// The node's uid.
    pub operator: Arc<str>,
    pub subtask: u32,
    pub parallelism: u32,
    pub max_parallelism: u32,
    pub limits: GuestLimits,
    pub config_json: String,
    /// The side outputs that edges consume (an operator's emits to others are dropped).
    pub side_outputs: Arc<[String]>,
    /// The job's cancellation: stops a running or blocked call within a few ticks.
    pub cancel: CancelToken,
    /// How many times the job has restarted before this attempt.
    pub attempt: u32,
    /// Keep keyed state in a redb database in this directory (`None`: in memory).
    pub state_dir: Option<std::path::PathBuf>,
    /// Track which keys change, for incremental checkpoints.
    pub incremental: bool,
    /// Where the job's guest lines are kept for the API, if they are.
    pub logs: Option<Arc<super::guest_log::RecentLogs>>,
}

/// How a guest call went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestError {
    #[error("the operator returned an error from {call}: {message}")]
    Returned { call: &'static str, message: String },
    #[error("the operator panicked in {call}: {message}")]
    Panicked { call: &'static str, message: String },
    #[error(
        "a call to {call} ran past the limit of {limit_ms} ms (limits.call_timeout_ms); {}",
        if *blocked { "the operator was blocked in a WASI call (sleeping or waiting)" } else { "is the operator looping?" }
    )]
    TimedOut {
        call: &'static str,
        limit_ms: u128,
        blocked: bool,
    },
    #[error("in {call}: {message}")]
    Refused { call: &'static str, message: String },
    #[error("{call} was interrupted: the job is being cancelled")]
    Cancelled { call: &'static str },
    #[error("out of memory in {call}: {message}")]
    OutOfMemory { call: &'static str, message: String },
    #[error("the operator trapped in {call}: {message}")]
    Trapped { call: &'static str, message: String },
    #[error("cannot instantiate the operator: {0}")]
    Instantiate(String),
}

/// A live guest: the store and the bindings of its world.
pub struct Guest<B> {
    store: Store<HostState>,
    bindings: B,
    call_timeout: Duration,
}

/// An operator subtask.
pub type OperatorInstance = Guest<OperatorBindings>;

/// An operator instance's exports: its handler, and its checkpoint hooks when the component
/// exports them (the `stateful-operator` world).
pub struct OperatorBindings {
    plain: bindings::Operator,
    hooks: Option<bindings::stateful::StatefulOperator>,
    timed: Option<bindings::timed::TimedOperator>,
    /// Its state versions and migration hook (the `migrating-operator` world).
    migrating: Option<bindings::migrating::MigratingOperator>,
}

/// An instance of an operator's component that only migrates values of its state
/// ([`super::migration`]).
type Migrator = Guest<bindings::migrating::MigratingOperator>;

/// How many rounds of timers one advance of time fires at most: timers that `on-timer`
/// registers for a time already passed fire in the next round, as in Flink, but a guest that
/// keeps doing so cannot hold the task for ever (the rest fire at the next advance).
const MAX_TIMER_ROUNDS: usize = 100;
/// A source subtask.
pub type SourceInstance = Guest<bindings::source::Source>;

/// A window function's subtask; its store keeps the window operator's keyed state.
pub type WindowInstance = Guest<WindowBindings>;

/// A window function's exports.
pub enum WindowBindings {
    Aggregate(bindings::window::aggregate::WindowAggregate),
    Reduce(bindings::window::reduce::WindowReduce),
    Process(bindings::window::process::WindowProcess),
}

/// Epoch ticks between two checks of a running call's deadline and the job's cancellation.
const CHECK_TICKS: u64 = 2;

fn clip(s: String) -> String {
    match printable(&s, true) {
        std::borrow::Cow::Borrowed(_) => s,
        std::borrow::Cow::Owned(clean) => clean,
    }
}

fn wrong_world(path: &std::path::Path, want: &str) -> GuestError {
    GuestError::Instantiate(format!("{} is not {want}", path.display()))
}

impl LoadedComponent {
    /// A store for one subtask, with its limits set; `state` covers the subtask's key groups.
    fn store(&self, spec: &InstanceSpec, state: StateBackend, is_source: bool) -> Store<HostState> {
        let who = Identity {
            attempt: spec.attempt,
            side_outputs: if is_source {
                SideOutputs::None
            } else {
                SideOutputs::Connected(spec.side_outputs.clone())
            },
        };
        let bounds = CallBounds {
            deadline: Instant::now(),
            cancel: spec.cancel.clone(),
        };
        let log = super::guest_log::GuestLog::new(
            spec.operator.clone(),
            spec.subtask,
            spec.limits.log_lines_per_s,
            spec.logs.clone(),
        );
        let data = HostState::new(who, spec.limits.memory_bytes, log, state, bounds);
        let mut store = Store::new(&self.engine, data);
        store.limiter(|s| &mut s.limiter);
        // Every few ticks a running call is checked against its deadline and cancellation.
        store.epoch_deadline_callback(|ctx| {
            ctx.data()
                .bounds
                .check(Instant::now(), false)
                .map(|()| UpdateDeadline::Continue(CHECK_TICKS))
                .map_err(wasmtime::Error::new)
        });
        store
    }

    /// A guest for one subtask: a store with its limits, instantiated by `instantiate`.
    fn guest<B>(
        &self,
        spec: &InstanceSpec,
        state: StateBackend,
        is_source: bool,
        instantiate: impl FnOnce(&mut Store<HostState>) -> wasmtime::Result<B>,
    ) -> Result<Guest<B>, GuestError> {
        let mut store = self.store(spec, state, is_source);
        // Instantiation runs the component's start functions: bounded like any call.
        store.data_mut().start_call(spec.limits.call_timeout);
        store.set_epoch_deadline(CHECK_TICKS);
        let call = "instantiate";
        let bindings =
            instantiate(&mut store).map_err(|e| match e.downcast_ref::<Interrupted>() {
                Some(Interrupted::Cancelled) => GuestError::Cancelled { call },
                Some(Interrupted::Deadline { blocked }) => GuestError::TimedOut {
                    call,
                    limit_ms: spec.limits.call_timeout.as_millis(),
                    blocked: *blocked,
                },
                None => GuestError::Instantiate(clip(format!("{e:#}"))),
            })?;
        Ok(Guest {
            store,
            bindings,
            call_timeout: spec.limits.call_timeout,
        })
    }

    /// Instantiates the operator for one subtask and calls its `open`.
    pub fn instantiate(&self, spec: &InstanceSpec) -> Result<OperatorInstance, GuestError> {
        self.instantiate_with(spec, keyed_state(spec)?)
    }

    /// Instantiates the operator for one subtask on keyed state `state` (its own, or what
    /// the component it replaces held) and calls its `open`.
    pub fn instantiate_with(
        &self,
        spec: &InstanceSpec,
        state: StateBackend,
    ) -> Result<OperatorInstance, GuestError> {
        let Pre::Operator(pre) = &self.pre else {
            return Err(wrong_world(&self.path, "an operator"));
        };
        let mut guest = self.guest(spec, state, false, |store| {
            let instance = pre.instance_pre().instantiate(&mut *store)?;
            let plain = bindings::Operator::new(&mut *store, &instance)?;
            let hooks = bindings::stateful::StatefulOperator::new(&mut *store, &instance).ok();
            let timed = bindings::timed::TimedOperator::new(&mut *store, &instance).ok();
            let migrating =
                bindings::migrating::MigratingOperator::new(&mut *store, &instance).ok();
            store.data_mut().time.on_timer = timed.is_some();
            Ok(OperatorBindings {
                plain,
                hooks,
                timed,
                migrating,
            })
        })?;
        if guest.bindings.migrating.is_some() {
            let (declared, _) = guest.call("state-versions", |b, store| {
                let m = b.migrating.as_ref().expect("checked above");
                m.weir_operator_migration()
                    .call_state_versions(store)
                    .map(Ok)
            })?;
            let migrate = self.migrate_hook(spec);
            guest.store.data_mut().migration =
                super::migration::Migration::new(declared, migrate).map(Box::new);
        }
        guest.call("open", |b, store| {
            b.plain
                .weir_operator_handler()
                .call_open(store, &spec.config_json)
        })?;
        Ok(guest)
    }

    /// The component's `migrate` hook, run in an instance of its own made on first use (the
    /// instance whose state it migrates is in the middle of a call when it is needed).
    fn migrate_hook(&self, spec: &InstanceSpec) -> super::migration::Migrate {
        let (component, spec) = (self.clone(), spec.clone());
        let mut migrator: Option<Migrator> = None;
        Box::new(move |name, from, value| {
            let m = match &mut migrator {
                Some(m) => m,
                None => migrator.insert(component.migrator(&spec).map_err(|e| e.to_string())?),
            };
            m.call("migrate", |b, store| {
                b.weir_operator_migration()
                    .call_migrate(store, name, from, value)
            })
            .map(|(value, _)| value)
            .map_err(|e| e.to_string())
        })
    }

    /// An instance that only migrates: no keyed state, never opened.
    fn migrator(&self, spec: &InstanceSpec) -> Result<Migrator, GuestError> {
        let Pre::Operator(pre) = &self.pre else {
            return Err(wrong_world(&self.path, "an operator"));
        };
        let state = StateBackend::memory(0..0, spec.max_parallelism, 0, false);
        self.guest(spec, state, false, |store| {
            let instance = pre.instance_pre().instantiate(&mut *store)?;
            bindings::migrating::MigratingOperator::new(&mut *store, &instance)
        })
    }

    /// Instantiates the window function for one subtask and calls its `open`.
    pub fn instantiate_window(&self, spec: &InstanceSpec) -> Result<WindowInstance, GuestError> {
        self.instantiate_window_with(spec, keyed_state(spec)?)
    }

    /// Instantiates the window function for one subtask on keyed state `state` and calls its
    /// `open`.
    pub fn instantiate_window_with(
        &self,
        spec: &InstanceSpec,
        state: StateBackend,
    ) -> Result<WindowInstance, GuestError> {
        let mut guest = match &self.pre {
            Pre::Aggregate(pre) => self.guest(spec, state, false, |store| {
                pre.instantiate(store).map(WindowBindings::Aggregate)
            })?,
            Pre::Reduce(pre) => self.guest(spec, state, false, |store| {
                pre.instantiate(store).map(WindowBindings::Reduce)
            })?,
            Pre::Process(pre) => self.guest(spec, state, false, |store| {
                pre.instantiate(store).map(WindowBindings::Process)
            })?,
            _ => return Err(wrong_world(&self.path, "a window function")),
        };
        guest
            .call("open", |b, store| match b {
                WindowBindings::Aggregate(a) => a
                    .weir_operator_aggregate_handler()
                    .call_open(store, &spec.config_json),
                WindowBindings::Reduce(r) => r
                    .weir_operator_reduce_handler()
                    .call_open(store, &spec.config_json),
                WindowBindings::Process(p) => p
                    .weir_operator_process_handler()
                    .call_open(store, &spec.config_json),
            })
            .and_then(results_only)?;
        Ok(guest)
    }

    /// Instantiates the source for one subtask and calls its `open`.
    pub fn instantiate_source(&self, spec: &InstanceSpec) -> Result<SourceInstance, GuestError> {
        let Pre::Source(pre) = &self.pre else {
            return Err(wrong_world(&self.path, "a source"));
        };
        // Sources keep no keyed state: an empty key-group range refuses every key.
        let state = StateBackend::memory(0..0, spec.max_parallelism, 0, false);
        let mut guest = self.guest(spec, state, true, |store| pre.instantiate(store))?;
        let ((), outputs) = guest.call("open", |b, store| {
            b.weir_operator_source_handler().call_open(
                store,
                &spec.config_json,
                spec.subtask,
                spec.parallelism,
            )
        })?;
        if !outputs.is_empty() {
            return Err(GuestError::Returned {
                call: "open",
                message: "a source may emit only when polled".into(),
            });
        }
        Ok(guest)
    }
}

/// What a window function's call returned: its results are its return values, so one that
/// emitted records fails.
fn results_only<R>((r, outputs): (R, Outputs)) -> Result<R, GuestError> {
    if outputs.is_empty() {
        Ok(r)
    } else {
        Err(GuestError::Returned {
            call: "a window function call",
            message: "a window function may not emit: what a window gives is what its calls return"
                .into(),
        })
    }
}

/// A subtask's keyed state: in memory, or in a redb database in the spec's state directory.
fn keyed_state(spec: &InstanceSpec) -> Result<StateBackend, GuestError> {
    let range = key_groups::range_of(spec.subtask, spec.parallelism, spec.max_parallelism);
    Ok(match &spec.state_dir {
        None => StateBackend::memory(
            range,
            spec.max_parallelism,
            spec.limits.state_bytes,
            spec.incremental,
        ),
        Some(dir) => StateBackend::redb(
            &dir.join(format!("{}-{}.redb", spec.operator, spec.subtask)),
            range,
            spec.max_parallelism,
            spec.incremental,
        )
        .map_err(|e| GuestError::Instantiate(e.to_string()))?,
    })
}

impl<B> Guest<B> {
    /// Takes the subtask's keyed state away (for the instance that replaces this one),
    /// leaving it none.
    fn take_state(&mut self) -> StateBackend {
        let max_parallelism = self.store.data().state.max_parallelism();
        std::mem::replace(
            &mut self.store.data_mut().state,
            StateBackend::memory(0..0, max_parallelism, 0, false),
        )
    }

    /// The subtask's keyed state, to read between calls (a query of a running job's state).
    pub fn keyed_state(&mut self) -> &mut crate::state::StateBackend {
        &mut self.store.data_mut().state
    }

    /// How many keys a delta of its keyed state against checkpoint `base` would hold, at
    /// most (`None`: it cannot take one).
    pub fn changed_keys(&self, base: u64) -> Option<usize> {
        self.store.data().state.changed_keys(base)
    }

    /// The subtask's keyed state for checkpoint `id`: all of it, or (incremental checkpoints)
    /// only what changed since its snapshot for checkpoint `base`.
    pub fn snapshot_state(&mut self, id: u64, base: Option<u64>) -> Result<KeyedSnapshot, String> {
        self.store
            .data_mut()
            .state
            .snapshot(id, base)
            .map_err(|e| format!("cannot take a snapshot of keyed state: {e}"))
    }

    /// Loads the part of `snapshot` in this subtask's key groups (a batch of a restore).
    pub fn restore_state(&mut self, snapshot: &KeyedSnapshot) -> Result<(), String> {
        self.store
            .data_mut()
            .state
            .restore(snapshot)
            .map_err(|e| e.to_string())
    }

    fn call<R>(
        &mut self,
        call: &'static str,
        f: impl FnOnce(&B, &mut Store<HostState>) -> wasmtime::Result<Result<R, String>>,
    ) -> Result<(R, Outputs), GuestError> {
        self.store.data_mut().start_call(self.call_timeout);
        self.store.set_epoch_deadline(CHECK_TICKS);
        match f(&self.bindings, &mut self.store) {
            Ok(Ok(r)) => Ok((
                r,
                std::mem::take(&mut self.store.data_mut().emitted.outputs),
            )),
            Ok(Err(message)) => Err(GuestError::Returned {
                call,
                message: clip(message),
            }),
            Err(e) => Err(self.classify(call, e)),
        }
    }

    fn classify(&mut self, call: &'static str, e: wasmtime::Error) -> GuestError {
        let data = self.store.data_mut();
        data.emitted.outputs.clear();
        match e.downcast_ref::<Interrupted>() {
            Some(Interrupted::Cancelled) => return GuestError::Cancelled { call },
            Some(Interrupted::Deadline { blocked }) => {
                return GuestError::TimedOut {
                    call,
                    limit_ms: self.call_timeout.as_millis(),
                    blocked: *blocked,
                };
            }
            None => {}
        }
        if let Some(Refused(message)) = e.downcast_ref::<Refused>() {
            return GuestError::Refused {
                call,
                message: clip(message.clone()),
            };
        }
        if let Some(why) = data.limiter.refused.take() {
            return GuestError::OutOfMemory { call, message: why };
        }
        // The Rust SDK logs a panic's message, then traps at `unreachable`. Only a message logged
        // in this very call, followed by that trap, is taken as the cause.
        let panicked = matches!(e.downcast_ref::<Trap>(), Some(Trap::UnreachableCodeReached));
        if let Some(panic) = data
            .last_error_log
            .take()
            .filter(|m| panicked && m.starts_with("operator panicked"))
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
}

impl OperatorInstance {
    /// Replaces this instance by one of `component` (a new version of the operator, swapped in
    /// at a checkpoint barrier) that goes on from where it stands: the same keyed state, timers
    /// and watermark, and `private` (what this one's `snapshot` just returned, if anything)
    /// handed to the new one's `restore` after its `open`. On an error this instance is left
    /// without its state: the task fails.
    pub fn swap(
        &mut self,
        component: &LoadedComponent,
        spec: &InstanceSpec,
        private: Option<&[u8]>,
    ) -> Result<(), GuestError> {
        let state = self.take_state();
        let mut new = component.instantiate_with(spec, state)?;
        // The timers and the watermark carry over as they are (rebuilding the queues from the
        // keyed state would read all of it).
        let mut time = std::mem::take(&mut self.store.data_mut().time);
        time.on_timer = new.store.data().time.on_timer;
        new.store.data_mut().time = time;
        if let Some(private) = private {
            new.restore_private(private)?;
        }
        *self = new;
        Ok(())
    }

    /// The operator's private state for a checkpoint (`None`: it exports no checkpoint hooks).
    pub fn snapshot_private(&mut self) -> Result<Option<Vec<u8>>, GuestError> {
        if self.bindings.hooks.is_none() {
            return Ok(None);
        }
        let (state, outputs) = self.call("snapshot", |b, store| {
            b.hooks
                .as_ref()
                .expect("checked above")
                .weir_operator_checkpoint_hooks()
                .call_snapshot(store)
        })?;
        if !outputs.is_empty() {
            return Err(GuestError::Returned {
                call: "snapshot",
                message: "an operator may not emit while taking a snapshot".into(),
            });
        }
        Ok(Some(state))
    }

    /// Hands the operator a private state it took over from a checkpoint.
    pub fn restore_private(&mut self, state: &[u8]) -> Result<(), GuestError> {
        if self.bindings.hooks.is_none() {
            return Err(GuestError::Returned {
                call: "restore",
                message: "the checkpoint holds private state of this operator, but its component exports no checkpoint hooks (weir:operator/checkpoint-hooks)".into(),
            });
        }
        let ((), outputs) = self.call("restore", |b, store| {
            b.hooks
                .as_ref()
                .expect("checked above")
                .weir_operator_checkpoint_hooks()
                .call_restore(store, state)
        })?;
        if !outputs.is_empty() {
            return Err(GuestError::Returned {
                call: "restore",
                message: "an operator may not emit while restoring".into(),
            });
        }
        Ok(())
    }

    /// The operator's watermark is now `wm`: its event-time timers up to it fire; returns what
    /// it emitted from `on-timer`.
    pub fn advance_watermark(&mut self, wm: i64) -> Result<Outputs, GuestError> {
        self.store.data_mut().time.watermark = wm;
        if !self.store.data().time.event_due(wm) {
            return Ok(Outputs::new());
        }
        self.fire_timers(TimeDomain::Event, wm)
    }

    /// When its next processing-time timer is due (ms since the epoch), if it has one.
    pub fn next_processing_timer(&self) -> Option<i64> {
        self.store.data().time.next_processing()
    }

    /// Its processing-time timers due at `now` (ms since the epoch) fire.
    pub fn fire_processing_timers(&mut self, now: i64) -> Result<Outputs, GuestError> {
        self.fire_timers(TimeDomain::Processing, now)
    }

    /// After its keyed state was restored: its timers, back in their queues.
    pub fn restore_timers(&mut self) -> Result<(), String> {
        self.store
            .data_mut()
            .restore_timers()
            .map_err(|e| format!("cannot restore timers: {e}"))
    }

    fn fire_timers(&mut self, domain: TimeDomain, now: i64) -> Result<Outputs, GuestError> {
        let mut outputs = Outputs::new();
        for _ in 0..MAX_TIMER_ROUNDS {
            let mut batch = Vec::new();
            let n = self
                .store
                .data_mut()
                .take_due(domain, now, &mut batch)
                .map_err(|e| GuestError::Refused {
                    call: "on-timer",
                    message: e.to_string(),
                })?;
            if n == 0 || self.bindings.timed.is_none() {
                break;
            }
            let ((), emitted) = self.call("on-timer", |b, store| {
                b.timed
                    .as_ref()
                    .expect("checked above")
                    .weir_operator_timer_handler()
                    .call_on_timer(store, &batch)
            })?;
            outputs.extend(emitted);
        }
        Ok(outputs)
    }

    /// Processes one batch (flat format); returns what the operator emitted.
    pub fn process(&mut self, batch: &[u8]) -> Result<Outputs, GuestError> {
        self.call("process", |b, store| {
            b.plain.weir_operator_handler().call_process(store, batch)
        })
        .map(|r| r.1)
    }

    /// Ends the input; returns what the operator emitted while closing.
    pub fn close(&mut self) -> Result<Outputs, GuestError> {
        self.call("close", |b, store| {
            b.plain.weir_operator_handler().call_close(store)
        })
        .map(|r| r.1)
    }
}

impl SourceInstance {
    /// Polls for up to `max_records` records: whether more may come, and what was emitted.
    pub fn poll(&mut self, max_records: u32) -> Result<(bool, Outputs), GuestError> {
        let (status, outputs) = self.call("poll", |b, store| {
            b.weir_operator_source_handler()
                .call_poll(store, max_records)
        })?;
        Ok((status == PollStatus::More, outputs))
    }

    /// The position after the last record emitted.
    pub fn position(&mut self) -> Result<Vec<u8>, GuestError> {
        self.call("position", |b, store| {
            b.weir_operator_source_handler()
                .call_position(store)
                .map(Ok)
        })
        .map(|r| r.0)
    }

    /// Resumes from a position taken earlier.
    pub fn restore(&mut self, position: &[u8]) -> Result<(), GuestError> {
        self.call("restore", |b, store| {
            b.weir_operator_source_handler()
                .call_restore(store, position)
        })
        .map(|r| r.0)
    }
}

impl WindowInstance {
    /// Replaces this instance by one of `component` (a new version of the window function),
    /// on the same keyed state.
    pub fn swap(
        &mut self,
        component: &LoadedComponent,
        spec: &InstanceSpec,
    ) -> Result<(), GuestError> {
        let state = self.take_state();
        *self = component.instantiate_window_with(spec, state)?;
        Ok(())
    }

    /// Adds (aggregate) or folds (reduce) records of `records` into the accumulators as
    /// `pairs` say; see `weir:operator/aggregate-handler.add`.
    pub fn add(
        &mut self,
        accumulators: &[u8],
        records: &[u8],
        pairs: &[u32],
    ) -> Result<Vec<u8>, GuestError> {
        self.call("add", |b, store| match b {
            WindowBindings::Aggregate(a) => {
                a.weir_operator_aggregate_handler()
                    .call_add(store, accumulators, records, pairs)
            }
            WindowBindings::Reduce(r) => {
                r.weir_operator_reduce_handler()
                    .call_reduce(store, accumulators, records, pairs)
            }
            WindowBindings::Process(_) => Ok(Err("a process function adds nothing".into())),
        })
        .and_then(results_only)
    }

    /// Hands whole windows to a process function; see `weir:operator/process-handler`.
    pub fn process_windows(&mut self, windows: &[u8]) -> Result<Vec<u8>, GuestError> {
        self.call("process", |b, store| match b {
            WindowBindings::Process(p) => p
                .weir_operator_process_handler()
                .call_process(store, windows),
            _ => Ok(Err("only a process function takes whole windows".into())),
        })
        .and_then(results_only)
    }

    /// Merges sets of accumulators (aggregate functions only).
    pub fn merge(&mut self, sets: &[u8]) -> Result<Vec<u8>, GuestError> {
        self.call("merge", |b, store| match b {
            WindowBindings::Aggregate(a) => {
                a.weir_operator_aggregate_handler().call_merge(store, sets)
            }
            _ => Ok(Err("only an aggregate function merges accumulators".into())),
        })
        .and_then(results_only)
    }

    /// The results of fired windows (aggregate functions only).
    pub fn result(&mut self, windows: &[u8]) -> Result<Vec<u8>, GuestError> {
        self.call("result", |b, store| match b {
            WindowBindings::Aggregate(a) => a
                .weir_operator_aggregate_handler()
                .call_get_result(store, windows),
            _ => Ok(Err("only an aggregate function has results".into())),
        })
        .and_then(results_only)
    }
}
