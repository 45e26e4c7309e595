//! Running operator components: one engine per process, components compiled once (with an
//! on-disk cache keyed by content), instantiated per subtask from an `InstancePre`, each instance
//! limited in memory and in time per call, and in what it can make the host hold.

mod bounds;
mod cache;
pub mod guest_log;
mod host;
mod inspect;
mod instance;
mod migration;
mod timers;

pub use inspect::{Inspection, inspect};
pub use instance::{
    GuestError, InstanceSpec, OperatorInstance, Outputs, SourceInstance, WindowInstance,
};
pub use timers::now_ms;

use crate::plan::{NodeKind, WindowFunctionKind};
use host::HostState;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

/// The bindings of `wit/operator.wit`.
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "operator",
        imports: {
            "weir:operator/emit.emit": trappable,
            "weir:operator/state": trappable,
            "weir:operator/timers": trappable,
        },
    });

    /// The source world; its imports are the operator world's.
    pub mod source {
        wasmtime::component::bindgen!({
            path: "../wit",
            world: "source",
            with: {
                "weir:operator/emit": super::weir::operator::emit,
                "weir:operator/log": super::weir::operator::log,
                "weir:operator/context": super::weir::operator::context,
            },
        });
    }

    /// The window function worlds; their imports are the operator world's.
    pub mod window {
        macro_rules! window_world {
            ($module:ident, $world:literal) => {
                pub mod $module {
                    wasmtime::component::bindgen!({
                        path: "../wit",
                        world: $world,
                        with: {
                            "weir:operator/emit": crate::wasm::bindings::weir::operator::emit,
                            "weir:operator/state": crate::wasm::bindings::weir::operator::state,
                            "weir:operator/log": crate::wasm::bindings::weir::operator::log,
                            "weir:operator/context": crate::wasm::bindings::weir::operator::context,
                        },
                    });
                }
            };
        }
        window_world!(aggregate, "window-aggregate");
        window_world!(reduce, "window-reduce");
        window_world!(process, "window-process");
    }

    /// The timed operator world: the stateful operator world and `on-timer`, looked up on an
    /// operator's instance when its component exports it.
    pub mod timed {
        wasmtime::component::bindgen!({
            path: "../wit",
            world: "timed-operator",
            with: {
                "weir:operator/emit": super::weir::operator::emit,
                "weir:operator/state": super::weir::operator::state,
                "weir:operator/log": super::weir::operator::log,
                "weir:operator/context": super::weir::operator::context,
                "weir:operator/timers": super::weir::operator::timers,
            },
        });
    }

    /// The migrating operator world: the stateful operator world and its migration hook,
    /// looked up on an operator's instance when its component exports it.
    pub mod migrating {
        wasmtime::component::bindgen!({
            path: "../wit",
            world: "migrating-operator",
            with: {
                "weir:operator/emit": super::weir::operator::emit,
                "weir:operator/state": super::weir::operator::state,
                "weir:operator/log": super::weir::operator::log,
                "weir:operator/context": super::weir::operator::context,
                "weir:operator/timers": super::weir::operator::timers,
            },
        });
    }

    /// The stateful operator world: the operator world and its checkpoint hooks, looked up on
    /// an operator's instance when its component exports them.
    pub mod stateful {
        wasmtime::component::bindgen!({
            path: "../wit",
            world: "stateful-operator",
            with: {
                "weir:operator/emit": super::weir::operator::emit,
                "weir:operator/state": super::weir::operator::state,
                "weir:operator/log": super::weir::operator::log,
                "weir:operator/context": super::weir::operator::context,
                "weir:operator/timers": super::weir::operator::timers,
            },
        });
    }
}

/// The epoch advances this often; per-call time limits are counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Why a component cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read component: {0}")]
    Read(#[from] crate::files::FileError),
    #[error("{path} is not a valid WebAssembly component: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("{path} does not implement the {world} world: {reason}")]
    WrongWorld {
        path: PathBuf,
        world: &'static str,
        reason: String,
    },
}

/// The process-wide WASM engine with the host's imports linked.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache: cache::ComponentCache,
}

/// The weir worlds a component can implement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum World {
    /// `weir:operator/operator@0.1.0`: a function over batches of records.
    Operator,
    /// `weir:operator/source@0.1.0`: polled for records, with a replayable position.
    Source,
    /// `weir:operator/window-aggregate@0.1.0` or `window-reduce`: a window function.
    Window(WindowFunctionKind),
}

impl World {
    /// Every world a component may implement.
    pub const ALL: [World; 5] = [
        World::Operator,
        World::Source,
        World::Window(WindowFunctionKind::Aggregate),
        World::Window(WindowFunctionKind::Reduce),
        World::Window(WindowFunctionKind::Process),
    ];

    /// The world's full name.
    pub fn name(self) -> &'static str {
        match self {
            World::Operator => "weir:operator/operator@0.1.0",
            World::Source => "weir:operator/source@0.1.0",
            World::Window(WindowFunctionKind::Aggregate) => "weir:operator/window-aggregate@0.1.0",
            World::Window(WindowFunctionKind::Reduce) => "weir:operator/window-reduce@0.1.0",
            World::Window(WindowFunctionKind::Process) => "weir:operator/window-process@0.1.0",
        }
    }

    /// The world a node's component must implement, if it runs one.
    pub fn of(kind: &NodeKind) -> Option<World> {
        match kind {
            NodeKind::Operator(_) => Some(World::Operator),
            NodeKind::WasmSource(_) => Some(World::Source),
            NodeKind::Window(w) => Some(World::Window(w.kind)),
            NodeKind::Source(_) | NodeKind::Sink(_) => None,
        }
    }
}

#[derive(Clone)]
enum Pre {
    Operator(Arc<bindings::OperatorPre<HostState>>),
    Source(Arc<bindings::source::SourcePre<HostState>>),
    Aggregate(Arc<bindings::window::aggregate::WindowAggregatePre<HostState>>),
    Reduce(Arc<bindings::window::reduce::WindowReducePre<HostState>>),
    Process(Arc<bindings::window::process::WindowProcessPre<HostState>>),
}

/// A component ready to be instantiated once per subtask.
#[derive(Clone)]
pub struct LoadedComponent {
    engine: Engine,
    pre: Pre,
    pub path: PathBuf,
}

impl LoadedComponent {
    /// The world the component was loaded as.
    pub fn world(&self) -> World {
        match self.pre {
            Pre::Operator(_) => World::Operator,
            Pre::Source(_) => World::Source,
            Pre::Aggregate(_) => World::Window(WindowFunctionKind::Aggregate),
            Pre::Reduce(_) => World::Window(WindowFunctionKind::Reduce),
            Pre::Process(_) => World::Window(WindowFunctionKind::Process),
        }
    }
}

impl Runtime {
    /// The engine, linker and component cache (`$WEIR_CACHE_DIR`, else the user cache dir).
    pub fn new() -> Result<Self, String> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        // Async components are not used; leaving concurrency support on triples the cost of a call.
        config.concurrency_support(false);
        // `WEIR_PERF_MAP=1` names guest functions for `perf` (in /tmp/perf-<pid>.map).
        if std::env::var_os("WEIR_PERF_MAP").is_some_and(|v| v == "1") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine =
            Engine::new(&config).map_err(|e| format!("cannot start the WASM engine: {e}"))?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("weir-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| format!("cannot start the epoch thread: {e}"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| format!("cannot link WASI: {e}"))?;
        // WASI's waits, bounded by the call's deadline and the job's cancellation.
        linker.allow_shadowing(true);
        wasmtime_wasi::p2::bindings::sync::io::poll::add_to_linker::<_, bounds::BoundedPollData>(
            &mut linker,
            HostState::bounded_poll,
        )
        .map_err(|e| format!("cannot link the bounded wasi:io/poll: {e}"))?;
        linker.allow_shadowing(false);
        bindings::Operator::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| format!("cannot link the weir imports: {e}"))?;
        let cache = cache::ComponentCache::from_env();
        Ok(Runtime {
            engine,
            linker,
            cache,
        })
    }

    /// Compiles (or loads from the cache) the component at `path` and checks that it implements
    /// `world`, so a wrong component is refused before anything runs. A file over `max_bytes`,
    /// or one that does not start as a component, is refused before it is read whole.
    pub fn load(
        &self,
        path: &Path,
        world: World,
        max_bytes: u64,
    ) -> Result<LoadedComponent, LoadError> {
        let bytes = read_component(path, max_bytes, "limits.component_mib")?;
        let component = self.compile(path, &bytes)?;
        self.prepare(path, &component, world)
    }

    /// Links a compiled component as `world`, ready to instantiate.
    fn prepare(
        &self,
        path: &Path,
        component: &Component,
        world: World,
    ) -> Result<LoadedComponent, LoadError> {
        let wrong = |e: wasmtime::Error| LoadError::WrongWorld {
            path: path.to_path_buf(),
            world: world.name(),
            reason: format!("{e:#}"),
        };
        let pre = self.linker.instantiate_pre(component).map_err(wrong)?;
        let pre = match world {
            World::Operator => {
                Pre::Operator(Arc::new(bindings::OperatorPre::new(pre).map_err(wrong)?))
            }
            World::Source => Pre::Source(Arc::new(
                bindings::source::SourcePre::new(pre).map_err(wrong)?,
            )),
            World::Window(WindowFunctionKind::Aggregate) => Pre::Aggregate(Arc::new(
                bindings::window::aggregate::WindowAggregatePre::new(pre).map_err(wrong)?,
            )),
            World::Window(WindowFunctionKind::Reduce) => Pre::Reduce(Arc::new(
                bindings::window::reduce::WindowReducePre::new(pre).map_err(wrong)?,
            )),
            World::Window(WindowFunctionKind::Process) => Pre::Process(Arc::new(
                bindings::window::process::WindowProcessPre::new(pre).map_err(wrong)?,
            )),
        };
        Ok(LoadedComponent {
            engine: self.engine.clone(),
            pre,
            path: path.to_path_buf(),
        })
    }

    fn compile(&self, path: &Path, bytes: &[u8]) -> Result<Component, LoadError> {
        let invalid = |e: wasmtime::Error| LoadError::Invalid {
            path: path.to_path_buf(),
            reason: format!("{e:#}"),
        };
        if let Some(c) = self.cache.get(&self.engine, bytes) {
            return Ok(c);
        }
        let component = Component::new(&self.engine, bytes).map_err(invalid)?;
        self.cache.put(&self.engine, bytes, &component);
        Ok(component)
    }

    /// The engine (for inspection).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// Whether `bytes` start with the component-model preamble (layer 1), as opposed to a core module.
fn is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[6..8] == [1, 0]
}

/// Reads a component file: its size checked against `max_bytes` (which the setting `limit_name`
/// raises) and its preamble checked before the rest is read.
fn read_component(
    path: &Path,
    max_bytes: u64,
    limit_name: &'static str,
) -> Result<Vec<u8>, LoadError> {
    let mut file = crate::files::open_limited(path, max_bytes, Some(limit_name))?;
    let mut bytes = Vec::with_capacity(file.size as usize);
    file.read_up_to(&mut bytes, 8)?;
    if !is_component(&bytes) {
        return Err(LoadError::Invalid {
            path: path.to_path_buf(),
            reason: "not a component (a core module, or not WebAssembly); build for wasm32-wasip2 or run `wasm-tools component new`".into(),
        });
    }
    file.finish(&mut bytes)?;
    Ok(bytes)
}
