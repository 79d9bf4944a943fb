//! The plugin room: user state machines as sandboxed, deterministic WebAssembly
//! components, run with wasmtime behind the raft core's
//! [`StateMachineHost`](crate::raftstore::fsm::StateMachineHost).
//!
//! # Layout
//! - `runtime`: [`PluginRuntime`], the door: validate, load, apply, query.
//! - `validate`: deploy checks, from uploaded bytes to a component of the world; `fit`:
//!   whether it fits a sandbox slot.
//! - `world`: what the `flotilla:fsm` world allows a plugin to import.
//! - `engine`: the deterministic wasmtime configuration and the instance pool.
//! - `cache`: compiled code on disk, keyed by plugin digest and engine hash.
//! - `prepared`: a compiled plugin linked against the host and checked against the world.
//! - `entry`: how an entry's commands share (or stop sharing) one instance.
//! - `instance`: one live instance; fuel per call, outputs capped.
//! - `sandbox`: the store's data, the memory cap, and trap-to-[`FsmError`] mapping.
//! - `host_imports`: the `kv` and `log` functions a plugin calls; `meter`: their price
//!   in fuel.
//! - `slots`: waiting for a pool slot instead of failing.
//! - `bindings`: code generated from `guest-sdk/wit`.
//!
//! This room implements raftstore's traits; it may import `ids`, `limits`, the metric
//! handles of `metrics` and `raftstore::fsm`, never storage, transport or the API.
//!
//! [`FsmError`]: crate::raftstore::fsm::FsmError

mod bindings;
mod cache;
mod engine;
mod entry;
mod error;
mod fit;
mod host_imports;
mod instance;
mod meter;
mod prepared;
mod runtime;
mod sandbox;
mod slots;
mod validate;
mod world;

#[cfg(test)]
mod tests;

pub use error::PluginError;
pub use runtime::{LoadOutcome, PluginRuntime};
pub use validate::ValidatedPlugin;
