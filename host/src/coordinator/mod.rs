//! The cluster's coordinator: where a job's subtasks run (the scheduler), and, as it grows, the
//! job store and the control plane that deploys tasks on workers. Its protocols are plain
//! structs fed events, as in [`crate::checkpoint`]; the processes drive them.

pub mod checkpoints;
pub mod deploy;
pub mod jobs;
pub mod membership;
pub mod savepoints;
pub mod scheduler;
pub mod server;
pub mod service;
pub mod store;
mod submit;
pub mod swap;
pub mod view;

pub use membership::{Member, Membership, Refusal};
pub use scheduler::{NotEnoughSlots, Placement, SlotOffer, place, slots_needed};
