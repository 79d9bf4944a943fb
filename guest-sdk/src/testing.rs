//! A native harness for unit-testing plugin logic without a host (non-`wasm32` only).
//!
//! [`crate::kv`] and [`crate::log`] reach a per-thread in-memory twin of the host here.
//! [`apply`] and [`query`] drive a [`StateMachine`] through the same decode/encode path
//! as the Wasm exports and, like the host, discard a failed command's writes and refuse
//! writes during a query (with a panic).
//!
//! ```
//! # use flotilla_sdk::{testing, ApplyContext};
//! # struct Noop;
//! # impl flotilla_sdk::StateMachine for Noop {
//! #     type Command = (); type Output = (); type Query = (); type QueryOutput = ();
//! #     fn apply(_: &ApplyContext, _: ()) -> Result<(), flotilla_sdk::Rejection> { Ok(()) }
//! #     fn query(_: &flotilla_sdk::QueryContext, _: ()) -> Result<(), flotilla_sdk::Rejection> { Ok(()) }
//! # }
//! testing::reset();
//! let out = testing::apply_json::<Noop>(&ApplyContext::default(), "null");
//! assert_eq!(out.as_deref(), Ok("null"));
//! ```

use crate::backend::native;
use crate::context::{ApplyContext, CommandError, QueryContext};
use crate::log::Level;
use crate::machine::{StateMachine, dispatch_apply, dispatch_query};

/// Empties this thread's KV and log buffer.
pub fn reset() {
    native::with(|s| *s = native::State::default());
}

/// Applies `command` (bytes in either codec); a failure rolls back its writes.
pub fn apply<M: StateMachine>(ctx: &ApplyContext, command: &[u8]) -> Result<Vec<u8>, CommandError> {
    let before = native::with(|s| s.kv.clone());
    let result = dispatch_apply::<M>(ctx, command);
    if result.is_err() {
        native::with(|s| s.kv = before);
    }
    result
}

/// Runs `request` (bytes in either codec) read-only.
pub fn query<M: StateMachine>(ctx: &QueryContext, request: &[u8]) -> Result<Vec<u8>, CommandError> {
    native::with(|s| s.read_only = true);
    let result = dispatch_query::<M>(ctx, request);
    native::with(|s| s.read_only = false);
    result
}

/// [`apply`] with a JSON command; returns the JSON output as a string.
pub fn apply_json<M: StateMachine>(ctx: &ApplyContext, json: &str) -> Result<String, CommandError> {
    apply::<M>(ctx, json.as_bytes()).map(lossy)
}

/// [`query`] with a JSON request; returns the JSON answer as a string.
pub fn query_json<M: StateMachine>(ctx: &QueryContext, json: &str) -> Result<String, CommandError> {
    query::<M>(ctx, json.as_bytes()).map(lossy)
}

/// Removes and returns the log lines written so far on this thread.
pub fn take_logs() -> Vec<(Level, String)> {
    native::with(|s| std::mem::take(&mut s.logs))
}

/// A copy of this thread's KV contents, in key order.
pub fn dump_kv() -> Vec<(Vec<u8>, Vec<u8>)> {
    native::with(|s| s.kv.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

fn lossy(bytes: Vec<u8>) -> String {
    String::from_utf8_lossy(&bytes).into_owned()
}
