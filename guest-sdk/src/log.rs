//! Log lines for the node's log, where the host tags them with group id and log index.
//!
//! Use the functions for plain strings and the crate-level macros ([`crate::info!`] and
//! friends) for `format!`-style messages. Logging does not change state and is not
//! replicated; keep it short, the host may cap it.

use std::fmt;

use crate::backend;

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the plugin handled.
    Warn,
    /// Something went wrong (panics are reported at this level).
    Error,
}

/// Writes `message` at `level`.
pub fn write(level: Level, message: &str) {
    backend::write_log(level, message);
}

/// Writes formatted arguments at `level`; what the macros call.
pub fn write_fmt(level: Level, args: fmt::Arguments<'_>) {
    match args.as_str() {
        Some(s) => write(level, s),
        None => write(level, &args.to_string()),
    }
}

/// Writes `message` at [`Level::Trace`].
pub fn trace(message: &str) {
    write(Level::Trace, message);
}

/// Writes `message` at [`Level::Debug`].
pub fn debug(message: &str) {
    write(Level::Debug, message);
}

/// Writes `message` at [`Level::Info`].
pub fn info(message: &str) {
    write(Level::Info, message);
}

/// Writes `message` at [`Level::Warn`].
pub fn warn(message: &str) {
    write(Level::Warn, message);
}

/// Writes `message` at [`Level::Error`].
pub fn error(message: &str) {
    write(Level::Error, message);
}

/// Logs a `format!`-style message at trace level.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)*) => { $crate::log::write_fmt($crate::log::Level::Trace, ::core::format_args!($($arg)*)) };
}

/// Logs a `format!`-style message at debug level.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::write_fmt($crate::log::Level::Debug, ::core::format_args!($($arg)*)) };
}

/// Logs a `format!`-style message at info level.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::write_fmt($crate::log::Level::Info, ::core::format_args!($($arg)*)) };
}

/// Logs a `format!`-style message at warn level.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::write_fmt($crate::log::Level::Warn, ::core::format_args!($($arg)*)) };
}

/// Logs a `format!`-style message at error level.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::write_fmt($crate::log::Level::Error, ::core::format_args!($($arg)*)) };
}
