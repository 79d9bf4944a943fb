//! Per-group state that the apply loop publishes and readers (API, store loop) observe
//! without a round trip through the store loop.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::RwLock;

use super::traits::ApplyState;
use crate::ids::PluginDigest;

#[derive(Debug)]
pub struct GroupShared {
    applied_index: AtomicU64,
    applied_term: AtomicU64,
    applied_timestamp_ms: AtomicU64,
    plugin: RwLock<PluginDigest>,
    destroyed: AtomicBool,
}

impl GroupShared {
    pub fn new(state: ApplyState) -> Self {
        Self {
            applied_index: AtomicU64::new(state.applied_index),
            applied_term: AtomicU64::new(state.applied_term),
            applied_timestamp_ms: AtomicU64::new(state.applied_timestamp_ms),
            plugin: RwLock::new(state.plugin),
            destroyed: AtomicBool::new(false),
        }
    }

    /// Publishes a new apply state (called by the apply loop after it committed it).
    pub fn publish(&self, state: ApplyState) {
        *self.plugin.write() = state.plugin;
        self.applied_term
            .store(state.applied_term, Ordering::Release);
        self.applied_timestamp_ms
            .store(state.applied_timestamp_ms, Ordering::Release);
        self.applied_index
            .store(state.applied_index, Ordering::Release);
    }

    pub fn applied_index(&self) -> u64 {
        self.applied_index.load(Ordering::Acquire)
    }

    pub fn snapshot(&self) -> ApplyState {
        let applied_index = self.applied_index.load(Ordering::Acquire);
        ApplyState {
            applied_index,
            applied_term: self.applied_term.load(Ordering::Acquire),
            applied_timestamp_ms: self.applied_timestamp_ms.load(Ordering::Acquire),
            plugin: *self.plugin.read(),
        }
    }

    pub fn mark_destroyed(&self) {
        self.destroyed.store(true, Ordering::Release);
    }

    pub fn is_destroyed(&self) -> bool {
        self.destroyed.load(Ordering::Acquire)
    }
}
