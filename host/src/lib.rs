//! Flotilla: a multi-raft replicated state machine host whose state machines are
//! sandboxed WebAssembly components.
//!
//! # Layout
//! - [`ids`], [`limits`]: identifiers and every bound of the node, shared by all rooms.
//! - [`splitmix`]: the one fixed pseudo-random function (entry seeds, simulation, bench).
//! - [`metrics`]: the node's Prometheus registry and the in-memory metric handles the
//!   rooms update (no IO but the `/metrics` HTTP endpoint in [`metrics::http`]).
//! - [`raftstore`]: the multi-raft core (raft-rs peers, router, store loop, apply loop).
//!   No IO: it defines the traits the rooms below implement.
//! - [`storage`]: fjall: raft log and state, apply state, plugin KV data, plugin blobs.
//! - [`plugin`]: wasmtime engine, deploy-time validation, compile cache, sandboxed calls.
//! - [`transport`]: node-to-node raft messages over tonic, batched per destination node;
//!   snapshot streaming and plugin fetches.
//! - [`placement`]: the meta group's state machine and placement plans.
//! - [`api`]: the gRPC services; the one place errors become `tonic::Status`.
//! - [`cli`]: the `flotilla` subcommands.
//! - [`server`]: wiring of the rooms into a running node, and graceful shutdown.
//! - [`proto`]: code generated from `proto/`.
//! - [`examples`]: the example plugins, compiled to Wasm by this crate's build script.

pub mod api;
pub mod cli;
pub mod examples;
pub mod ids;
pub mod limits;
pub mod metrics;
pub mod placement;
pub mod plugin;
pub mod proto;
pub mod raftstore;
pub mod server;
pub mod splitmix;
pub mod storage;
pub mod transport;
