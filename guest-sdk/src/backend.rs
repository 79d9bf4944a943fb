//! Where [`crate::kv`] and [`crate::log`] calls go.
//!
//! On `wasm32` they are the host imports of the `fsm` world. Everywhere else they reach
//! an in-memory, per-thread twin, so plugin logic can be unit-tested natively through
//! [`crate::testing`].

#[cfg(target_arch = "wasm32")]
mod wasm;
#[cfg(target_arch = "wasm32")]
pub(crate) use wasm::*;

#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod native;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use native::*;
