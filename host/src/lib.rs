//! weir: a stateful stream processor whose user functions are WebAssembly components.
//!
//! Layers, each knowing only the ones below: [`cli`] over [`api`] (HTTP) over [`worker`] (tasks, channels, the local
//! runner) over [`wasm`] (engine, components, limits), [`state`] and [`connectors`]; [`manifest`]
//! and [`plan`] turn a job description into what the worker runs; [`coordinator`] places a
//! job's subtasks on workers and [`net`] holds the wire between processes (frames, remote
//! credits, the cluster's TLS); [`files`] and [`cancel`] are the ground every layer stands on. [`project`] (operator projects: `weir
//! new`, `build`, `test`) stands over [`manifest`], [`wasm`] and [`worker`], under [`cli`].

pub mod api;
pub mod bench;
pub mod cancel;
pub mod checkpoint;
pub mod cli;
pub mod connectors;
pub mod coordinator;
pub mod files;
pub mod manifest;
pub mod net;
pub mod plan;
pub mod project;
pub mod state;
pub mod time;
pub mod wasm;
pub mod worker;
