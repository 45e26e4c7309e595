//! Executing tasks: credit-bounded channels, record writers, the task mailbox loop, and the
//! in-process runner of a whole job.

pub mod channel;
pub mod control;
pub mod credit;
pub mod local;
mod source;
pub mod task;
pub mod writer;

pub use control::{JobControl, JobMetrics};
pub use local::{JobError, TaskFailure, check, load_components, run};
