//! Errors an operator returns; their message reaches the user in the job's failure.

use std::fmt;

/// An operator error: a message that fails the job, naming what went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl Error {
    /// An error with this message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Error(message.to_string())
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<E: std::error::Error> From<E> for Error {
    fn from(e: E) -> Self {
        Error(e.to_string())
    }
}

/// Why the host refused a keyed-state call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// The key hashes to a key group this subtask does not own: the operator's input is
    /// probably not partitioned by `hash` on this key.
    KeyOutsideKeyGroups(String),
    /// The state name or key was not acceptable.
    Invalid(String),
    /// A stored value could not be decoded as the requested type.
    Decode(String),
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::KeyOutsideKeyGroups(m) => {
                write!(f, "key outside this subtask's key groups: {m}")
            }
            StateError::Invalid(m) => write!(f, "invalid state access: {m}"),
            StateError::Decode(m) => write!(f, "stored state does not decode: {m}"),
        }
    }
}

impl std::error::Error for StateError {}
