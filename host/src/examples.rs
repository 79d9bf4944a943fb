//! The example plugins, compiled for `wasm32-unknown-unknown` by the build script
//! (`host/build_plugins.rs`) and embedded here as core Wasm modules.
//!
//! Each is a core module produced by `wit-bindgen` for the `flotilla:fsm/fsm` world: it
//! imports only `flotilla:fsm/kv@0.1.0` and `flotilla:fsm/log@0.1.0`, exports `apply`,
//! `query` (plus `cabi_post_*`, `cabi_realloc` and `memory`), and carries the
//! `component-type:*` custom sections that `wit-component` needs to turn it into a
//! component. See each plugin's crate docs for its commands.

/// The string key-value store (`plugins/kv`).
pub const KV: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/plugins/kv.wasm"));
/// The 64-bit counter (`plugins/counter`).
pub const COUNTER: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/plugins/counter.wasm"));
/// The bank with conserved transfers (`plugins/bank`).
pub const BANK: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/plugins/bank.wasm"));
/// The service registry with leases (`plugins/registry`).
pub const REGISTRY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/plugins/registry.wasm"));
/// The misbehaving plugin for containment tests (`plugins/hostile`); not a user example.
pub const HOSTILE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/plugins/hostile.wasm"));

/// The user-facing examples by name, as offered by the CLI.
pub const EXAMPLES: &[(&str, &[u8])] = &[
    ("kv", KV),
    ("counter", COUNTER),
    ("bank", BANK),
    ("registry", REGISTRY),
];
