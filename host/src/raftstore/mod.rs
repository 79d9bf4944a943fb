//! The multi-raft core: one raft-rs `RawNode` per group, a router from group id to a
//! bounded mailbox, the store loop that drives every peer with work through one
//! persistence round (one write batch, one sync for all groups), and the apply loop
//! that runs committed entries off the raft loop.
//!
//! This room decides; it does no IO of its own. Persistence goes through
//! [`traits::LogStore`] and [`traits::ApplyStore`], user code through
//! [`fsm::StateMachineHost`], wall-clock time (for leader-assigned entry timestamps)
//! through [`Clock`]. It may import `ids`, `limits`, the in-memory metric handles of
//! `metrics` and its own traits, never fjall, tonic or wasmtime.
//!
//! - [`handle`]: [`RaftStore`], the async API the server uses.
//! - [`router`]: group id → mailbox; scheduling of groups for the next round.
//! - [`store_loop`]: the round: messages → raft → one batch → advance → apply tasks.
//! - [`peer`], [`peer_storage`]: one group's `RawNode` and its raft-rs `Storage`.
//! - [`apply`]: the apply loop; [`payload`]: what entries carry.
//! - [`query_pool`]: the threads that answer reads in batches.
//! - [`fsm`], [`traits`]: the contracts other rooms implement; [`kv_iter`]: lazy scans.

pub mod apply;
pub mod dedup;
pub mod digest;
pub mod fsm;
pub mod handle;
pub mod hibernate;
pub mod kv_iter;
pub mod leaders;
mod logger;
pub mod mem_kv;
pub mod msg;
pub mod payload;
pub mod peer;
pub mod peer_storage;
pub mod pending_kv;
pub mod query_pool;
pub mod quota;
pub mod router;
pub mod shared;
pub mod snapshot;
pub mod store_loop;
pub mod traits;
pub mod transport;

use std::sync::Arc;

pub use handle::{RaftStore, StoreDeps, StoreThreads};
pub use msg::{GroupStatus, PeerChange, PeerSpec, Proposed, RaftError, ReadKind};

/// Called once when the node hits an error it must not continue after (a failed sync,
/// an unreadable log). The server's handler logs and exits: fail-stop, never retry.
pub type FatalHandler = Arc<dyn Fn(&str) + Send + Sync>;

/// The message a caught panic carried (panics carry a `String` or a `&str`).
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic without a message")
}

/// Wall-clock milliseconds, used only for the leader-assigned entry timestamp.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;
