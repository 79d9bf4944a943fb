//! What a state machine is told about each call, and how it says no.
//!
//! [`ApplyContext`] and [`QueryContext`] mirror the WIT records `entry-context` and
//! `query-context`. They are the only source of time and randomness a plugin may use:
//! both are assigned by the leader and identical on every replica.

use std::fmt;

/// The raft entry being applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ApplyContext {
    /// The group whose state machine this is.
    pub group_id: u64,
    /// The raft log index of the entry.
    pub index: u64,
    /// The raft term of the entry.
    pub term: u64,
    /// Milliseconds since the Unix epoch, assigned by the leader; never decreases.
    pub timestamp_ms: u64,
    /// A deterministic seed derived from group id and index.
    pub random_seed: u64,
}

/// The state a read observes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct QueryContext {
    /// The group whose state machine this is.
    pub group_id: u64,
    /// The applied index the read observes.
    pub applied_index: u64,
    /// The leader-assigned timestamp (ms) of the last applied entry.
    pub applied_timestamp_ms: u64,
}

/// A command that was understood and refused (an overdraft, a failed compare).
///
/// The host reports it as `command-error::rejected` and discards the command's writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection(String);

impl Rejection {
    /// A rejection with a message for the client.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    /// The message for the client.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Rejection {}

impl From<String> for Rejection {
    fn from(message: String) -> Self {
        Self(message)
    }
}

impl From<&str> for Rejection {
    fn from(message: &str) -> Self {
        Self(message.to_owned())
    }
}

/// Returns early from `apply` or `query` with a [`Rejection`] built like `format!`.
///
/// ```
/// # use flotilla_sdk::{reject, Rejection};
/// fn withdraw(balance: u64, amount: u64) -> Result<u64, Rejection> {
///     if amount > balance {
///         reject!("insufficient funds: balance {balance}, need {amount}");
///     }
///     Ok(balance - amount)
/// }
/// assert!(withdraw(1, 2).is_err());
/// ```
#[macro_export]
macro_rules! reject {
    ($($arg:tt)*) => {
        return ::core::result::Result::Err($crate::Rejection::new(::std::format!($($arg)*)).into())
    };
}

/// Why a call failed, as the host sees it (the SDK's twin of WIT `command-error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// The bytes did not decode as a command or query of this plugin.
    Invalid(String),
    /// The plugin refused the command.
    Rejected(String),
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(m) => write!(f, "invalid: {m}"),
            Self::Rejected(m) => write!(f, "rejected: {m}"),
        }
    }
}

impl std::error::Error for CommandError {}

impl From<Rejection> for CommandError {
    fn from(r: Rejection) -> Self {
        Self::Rejected(r.0)
    }
}
