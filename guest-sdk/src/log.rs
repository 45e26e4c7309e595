//! Logging into the host's log, where lines are tagged with the operator and subtask.

use crate::backend;

/// How important a log line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Writes `message` to the host's log at `level`.
pub fn log(level: Level, message: &str) {
    backend::with(|b| b.log(level, message))
}

/// Writes `message` to the host's log at debug level.
pub fn debug(message: &str) {
    log(Level::Debug, message)
}

/// Writes `message` to the host's log at info level.
pub fn info(message: &str) {
    log(Level::Info, message)
}

/// Writes `message` to the host's log at warn level.
pub fn warn(message: &str) {
    log(Level::Warn, message)
}

/// Writes `message` to the host's log at error level.
pub fn error(message: &str) {
    log(Level::Error, message)
}
