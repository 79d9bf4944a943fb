//! raft-rs's `Storage` for one peer: hard state, conf state and the persisted log, with
//! a bounded cache of recent entries in memory and the rest read through [`LogStore`].
//! The store loop updates it while collecting a round's writes, just before the round's
//! batch is synced; raft-rs does not read it between `ready()` and `advance_append`, and
//! a failed sync is fatal, so raft-rs never observes unpersisted data here.

use std::collections::VecDeque;
use std::sync::Arc;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

use super::snapshot::{SnapSlot, SnapWorker};
use super::traits::{LogStore, PersistedRaftState, StoreError};
use crate::ids::GroupId;

/// Entries kept in memory per peer, at most (older ones are read from disk).
const CACHE_ENTRIES_MAX: usize = 512;

pub struct PeerStorage {
    group: GroupId,
    log: Arc<dyn LogStore>,
    hard_state: HardState,
    conf_state: ConfState,
    truncated: (u64, u64),
    last_index: u64,
    cache: VecDeque<Entry>,
    snap_slot: Arc<SnapSlot>,
    snap_worker: SnapWorker,
}

fn store_err(e: StoreError) -> raft::Error {
    raft::Error::Store(StorageError::Other(Box::new(e)))
}

impl PeerStorage {
    pub fn new(
        group: GroupId,
        log: Arc<dyn LogStore>,
        state: PersistedRaftState,
        snap_worker: SnapWorker,
    ) -> Self {
        Self {
            group,
            log,
            hard_state: state.hard_state,
            conf_state: state.conf_state,
            truncated: state.truncated,
            last_index: state.last_index,
            cache: VecDeque::new(),
            snap_slot: Arc::default(),
            snap_worker,
        }
    }

    /// Takes a received snapshot's place in the log: everything before and at its index
    /// is gone (the store loop drops the stored log in the same round).
    pub fn apply_snapshot(&mut self, snap: &Snapshot) {
        let meta = snap.get_metadata();
        self.truncated = (meta.index, meta.term);
        self.last_index = meta.index;
        self.cache.clear();
        self.conf_state = meta.get_conf_state().clone();
        if self.hard_state.commit < meta.index {
            self.hard_state.commit = meta.index;
        }
    }

    /// The configuration after a membership change was committed.
    pub fn set_conf_state(&mut self, cs: ConfState) {
        self.conf_state = cs;
    }

    pub fn first_index(&self) -> u64 {
        self.truncated.0 + 1
    }

    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    pub fn truncated(&self) -> (u64, u64) {
        self.truncated
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// Records entries that were just persisted (replacing any conflicting suffix).
    pub fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        while self.cache.back().is_some_and(|e| e.index >= first.index) {
            self.cache.pop_back();
        }
        if self
            .cache
            .back()
            .is_some_and(|e| e.index + 1 != first.index)
        {
            self.cache.clear();
        }
        self.cache.extend(entries.iter().cloned());
        while self.cache.len() > CACHE_ENTRIES_MAX {
            self.cache.pop_front();
        }
        self.last_index = first.index + entries.len() as u64 - 1;
    }

    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    pub fn set_commit(&mut self, commit: u64) {
        self.hard_state.commit = commit;
    }

    /// Forgets entries up to `index` (they were compacted on disk in the same round).
    pub fn compact_to(&mut self, index: u64, term: u64) {
        self.truncated = (index, term);
        while self.cache.front().is_some_and(|e| e.index <= index) {
            self.cache.pop_front();
        }
    }

    /// Drops cached entries up to `applied` beyond what followers may still need.
    pub fn trim_cache(&mut self, applied: u64) {
        while self.cache.len() > 1 && self.cache.front().is_some_and(|e| e.index < applied) {
            self.cache.pop_front();
        }
    }

    fn cached(&self, index: u64) -> Option<&Entry> {
        let front = self.cache.front()?.index;
        let pos = usize::try_from(index.checked_sub(front)?).ok()?;
        self.cache.get(pos)
    }
}

impl raft::Storage for PeerStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let max_size = max_size.into().unwrap_or(u64::MAX);
        if low <= self.truncated.0 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last_index + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let mut out = match self.cache.front() {
            Some(front) if front.index <= low => Vec::new(),
            Some(front) => {
                let disk_high = high.min(front.index);
                self.log
                    .entries(self.group, low, disk_high, max_size)
                    .map_err(store_err)?
            }
            None => self
                .log
                .entries(self.group, low, high, max_size)
                .map_err(store_err)?,
        };
        let mut next = low + out.len() as u64;
        let mut size: u64 = out
            .iter()
            .map(|e| u64::from(protobuf::Message::compute_size(e)))
            .sum();
        while next < high {
            let Some(e) = self.cached(next) else {
                break;
            };
            size += u64::from(protobuf::Message::compute_size(e));
            if !out.is_empty() && size > max_size {
                break;
            }
            out.push(e.clone());
            next += 1;
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.truncated.0 {
            return Ok(self.truncated.1);
        }
        if idx < self.truncated.0 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last_index {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        if let Some(e) = self.cached(idx) {
            return Ok(e.term);
        }
        let got = self
            .log
            .entries(self.group, idx, idx + 1, u64::MAX)
            .map_err(store_err)?;
        got.first()
            .map(|e| e.term)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_index)
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        // A snapshot older than the log's start would leave the follower a gap.
        let min_index = request_index.max(self.truncated.0);
        match self
            .snap_slot
            .get_or_request(self.group, min_index, to, &self.snap_worker)
        {
            Some(s) => Ok(s),
            None => Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            )),
        }
    }
}
