//! The guest SDK for Flotilla state machine plugins.
//!
//! A plugin is a WebAssembly component targeting the `flotilla:fsm` WIT world
//! (`wit/fsm.wit`), built for `wasm32-unknown-unknown`. With this crate an author writes
//! serde types for commands and queries, implements [`StateMachine`], and calls
//! [`export!`]:
//!
//! ```ignore
//! use flotilla_sdk::{kv, ApplyContext, QueryContext, Rejection, StateMachine};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize, Serialize)]
//! #[serde(rename_all = "snake_case")]
//! pub enum Command { Add { delta: i64 } }        // JSON: {"add":{"delta":5}}
//!
//! pub struct Counter;
//! impl StateMachine for Counter {
//!     type Command = Command; type Output = i64;
//!     type Query = ();        type QueryOutput = i64;
//!     fn apply(_: &ApplyContext, Command::Add { delta }: Command) -> Result<i64, Rejection> {
//!         let now = kv::get_value::<i64>(b"n")?.unwrap_or(0);
//!         let next = now.checked_add(delta).ok_or("overflow")?;
//!         kv::put_value(b"n", &next)?;
//!         Ok(next)
//!     }
//!     fn query(_: &QueryContext, (): ()) -> Result<i64, Rejection> {
//!         Ok(kv::get_value::<i64>(b"n")?.unwrap_or(0))
//!     }
//! }
//! flotilla_sdk::export!(Counter);
//! ```
//!
//! - **Codecs** ([`codec`]): a request starting with `0x00` is binary (postcard after the
//!   tag), anything else is JSON; the answer uses the request's codec. A request that
//!   does not decode fails as `command-error::invalid`, a [`Rejection`] as `rejected`.
//!   Use externally tagged enums (the serde default) so both codecs work.
//! - **State** ([`kv`]): all state lives in the host KV; the guest keeps nothing between
//!   calls, because the host may use a fresh instance for every call. Keep statics free
//!   of data: a warm instance must behave exactly like a fresh one.
//! - **Determinism**: time and randomness come only from [`ApplyContext`] and
//!   [`QueryContext`].
//! - **Logs and panics** ([`log`], [`info!`] etc.): a panic is logged at error level
//!   as `panic: <message> (at <file>:<line>:<col>)` (see [`PANIC_PREFIX`]), then traps.
//! - **Tests** ([`testing`]): natively, `kv` and `log` reach an in-memory twin.
//!
//! The `stateful-fsm` world (state in linear memory, chunked snapshot/restore) is part
//! of the contract but not yet supported by this SDK.

mod backend;
#[doc(hidden)]
#[allow(
    unsafe_code,
    reason = "wit-bindgen's generated glue is unsafe by nature"
)]
pub mod bindings;
pub mod codec;
mod context;
mod export;
pub mod kv;
pub mod log;
mod machine;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

pub use codec::{Codec, CodecError, decode, encode_binary, encode_json};
pub use context::{ApplyContext, CommandError, QueryContext, Rejection};
pub use export::PANIC_PREFIX;
pub use machine::{StateMachine, dispatch_apply, dispatch_query};

/// Items the macros expand to; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::export::{
        Guest, WitCommandError, WitEntryContext, WitQueryContext, apply, assert_state_machine,
        query,
    };
}
