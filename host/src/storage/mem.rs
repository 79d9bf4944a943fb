//! The in-memory twin of [`super::Store`] for tests and simulation: the same traits
//! (`LogStore`, `ApplyStore`, `KvReader`) over ordered maps behind one mutex. It can
//! also forget everything written since the last "sync", to model a crash that loses
//! unsynced writes.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use parking_lot::Mutex;
use raft::eraftpb::{ConfState, Entry, HardState};

use crate::ids::GroupId;
use crate::raftstore::fsm::{KvIter, KvReader};
use crate::raftstore::kv_iter::CursorScan;
use crate::raftstore::traits::{
    ApplyState, ApplyStore, GroupApply, LogStore, PersistedRaftState, RaftWriteBatch, ReadSnapshot,
    SnapshotInfo, StoreError,
};

#[derive(Clone, Default)]
struct Data {
    log: BTreeMap<(u64, u64), Entry>,
    hard_state: BTreeMap<u64, HardState>,
    conf_state: BTreeMap<u64, ConfState>,
    truncated: BTreeMap<u64, (u64, u64)>,
    apply: BTreeMap<u64, ApplyState>,
    applied_conf: BTreeMap<u64, ConfState>,
    pending_snapshot: BTreeMap<u64, (u64, u64)>,
    tombstones: BTreeMap<u64, u64>,
    kv: BTreeMap<(u64, Vec<u8>), Vec<u8>>,
}

/// A snapshot held in memory: what a snapshot file would contain.
#[derive(Clone, Debug)]
pub struct MemSnap {
    pub state: ApplyState,
    pub conf: ConfState,
    pub pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Where the in-memory stores of a simulated cluster leave generated snapshots and find
/// received ones (the simulated transport's stand-in for snapshot files), by
/// `(group, index, term)`.
pub type SnapExchange = Arc<Mutex<std::collections::HashMap<(u64, u64, u64), MemSnap>>>;

/// Everything in memory. `synced` is what a crash keeps.
#[derive(Default)]
pub struct MemStore {
    live: Mutex<Data>,
    synced: Mutex<Data>,
    snaps: SnapExchange,
}

impl std::fmt::Debug for MemStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemStore").finish_non_exhaustive()
    }
}

impl MemStore {
    /// A store that shares its snapshots with the other stores of a simulation.
    pub fn with_exchange(snaps: SnapExchange) -> Self {
        Self {
            snaps,
            ..Self::default()
        }
    }

    /// Drops every write that was not synced, as a power loss would.
    pub fn crash(&self) {
        let synced = self.synced.lock().clone();
        *self.live.lock() = synced;
    }

    fn sync(&self) {
        let live = self.live.lock().clone();
        *self.synced.lock() = live;
    }
}

impl LogStore for MemStore {
    fn persist_round(&self, batch: RaftWriteBatch) -> Result<(), StoreError> {
        let must_sync = batch.must_sync();
        {
            let mut d = self.live.lock();
            for w in batch.groups {
                let g = w.group.0;
                if let Some((index, term)) = w.snapshot {
                    d.log.retain(|(lg, _), _| *lg != g);
                    d.truncated.insert(g, (index, term));
                    d.pending_snapshot.insert(g, (index, term));
                }
                if let Some(first) = w.entries.first() {
                    let new_last = first.index + w.entries.len() as u64 - 1;
                    for i in new_last + 1..=w.previous_last_index {
                        d.log.remove(&(g, i));
                    }
                }
                for e in w.entries {
                    d.log.insert((g, e.index), e);
                }
                if let Some(hs) = w.hard_state {
                    d.hard_state.insert(g, hs);
                }
                if let Some(cs) = w.conf_state {
                    d.conf_state.insert(g, cs);
                }
                if let Some((index, term)) = w.compact_to {
                    d.truncated.insert(g, (index, term));
                    let doomed: Vec<_> =
                        d.log.range((g, 0)..=(g, index)).map(|(k, _)| *k).collect();
                    for k in doomed {
                        d.log.remove(&k);
                    }
                }
            }
        }
        if must_sync {
            self.sync();
        }
        Ok(())
    }

    fn entries(
        &self,
        group: GroupId,
        low: u64,
        high: u64,
        max_size_bytes: u64,
    ) -> Result<Vec<Entry>, StoreError> {
        let d = self.live.lock();
        let mut out = Vec::new();
        let mut size = 0u64;
        for i in low..high {
            let e = d
                .log
                .get(&(group.0, i))
                .ok_or_else(|| StoreError(format!("group {group} has no entry {i}")))?;
            size += u64::from(protobuf::Message::compute_size(e));
            if !out.is_empty() && size > max_size_bytes {
                break;
            }
            out.push(e.clone());
        }
        Ok(out)
    }

    fn raft_state(&self, group: GroupId) -> Result<Option<PersistedRaftState>, StoreError> {
        let d = self.live.lock();
        let g = group.0;
        let Some(hs) = d.hard_state.get(&g) else {
            return Ok(None);
        };
        let truncated = d.truncated.get(&g).copied().unwrap_or((0, 0));
        let last_index = d
            .log
            .range((g, 0)..=(g, u64::MAX))
            .next_back()
            .map_or(truncated.0, |((_, i), _)| *i);
        Ok(Some(PersistedRaftState {
            hard_state: hs.clone(),
            conf_state: d.conf_state.get(&g).cloned().unwrap_or_default(),
            truncated,
            last_index,
            pending_snapshot: d.pending_snapshot.get(&g).copied(),
        }))
    }

    fn tombstone(&self, group: GroupId) -> Result<Option<u64>, StoreError> {
        Ok(self.live.lock().tombstones.get(&group.0).copied())
    }
}

impl KvReader for MemStore {
    fn get(&self, group: GroupId, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        Ok(self.live.lock().kv.get(&(group.0, key.to_vec())).cloned())
    }

    fn scan<'a>(&'a self, group: GroupId, start: &[u8], end: Option<&[u8]>) -> KvIter<'a> {
        let end = end.map(<[u8]>::to_vec);
        Box::new(
            CursorScan::new(start, move |after| {
                first_in_group(&self.live.lock(), group, after, end.as_deref())
            })
            .map(Ok),
        )
    }
}

/// A copy of the live data, frozen.
struct MemSnapshot(Data);

impl KvReader for MemSnapshot {
    fn get(&self, group: GroupId, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        Ok(self.0.kv.get(&(group.0, key.to_vec())).cloned())
    }

    fn scan<'a>(&'a self, group: GroupId, start: &[u8], end: Option<&[u8]>) -> KvIter<'a> {
        let end = end.map(<[u8]>::to_vec);
        Box::new(
            CursorScan::new(start, move |after| {
                first_in_group(&self.0, group, after, end.as_deref())
            })
            .map(Ok),
        )
    }
}

impl ReadSnapshot for MemSnapshot {
    fn apply_state(&self, group: GroupId) -> Result<Option<ApplyState>, StoreError> {
        Ok(self.0.apply.get(&group.0).copied())
    }
}

/// The first pair of `group` past `after` and before `end`, cloned.
fn first_in_group(
    d: &Data,
    group: GroupId,
    after: &Bound<Vec<u8>>,
    end: Option<&[u8]>,
) -> Option<(Vec<u8>, Vec<u8>)> {
    let lo = match after {
        Bound::Included(k) => Bound::Included((group.0, k.clone())),
        Bound::Excluded(k) => Bound::Excluded((group.0, k.clone())),
        Bound::Unbounded => Bound::Included((group.0, Vec::new())),
    };
    d.kv.range((lo, Bound::Unbounded))
        .next()
        .filter(|((g, k), _)| *g == group.0 && end.is_none_or(|e| k.as_slice() < e))
        .map(|((_, k), v)| (k.clone(), v.clone()))
}

impl ApplyStore for MemStore {
    fn read_snapshot(&self) -> Arc<dyn ReadSnapshot> {
        Arc::new(MemSnapshot(self.live.lock().clone()))
    }

    fn commit_applies(&self, applies: Vec<GroupApply>) -> Result<(), StoreError> {
        let mut d = self.live.lock();
        for a in applies {
            if let Some(cs) = a.conf {
                d.applied_conf.insert(a.group.0, cs);
            }
            for (k, v) in a.writes {
                match v {
                    Some(v) => d.kv.insert((a.group.0, k), v),
                    None => d.kv.remove(&(a.group.0, k)),
                };
            }
            d.apply.insert(a.group.0, a.state);
        }
        Ok(())
    }

    fn apply_state(&self, group: GroupId) -> Result<Option<ApplyState>, StoreError> {
        Ok(self.live.lock().apply.get(&group.0).copied())
    }

    fn conf_state(&self, group: GroupId) -> Result<Option<ConfState>, StoreError> {
        Ok(self.live.lock().applied_conf.get(&group.0).cloned())
    }

    fn generate_snapshot(&self, group: GroupId) -> Result<SnapshotInfo, StoreError> {
        let d = self.live.lock();
        let g = group.0;
        let state = *d
            .apply
            .get(&g)
            .ok_or_else(|| StoreError(format!("group {group} has no apply state to snapshot")))?;
        let conf = d
            .applied_conf
            .get(&g)
            .or_else(|| d.conf_state.get(&g))
            .cloned()
            .unwrap_or_default();
        let pairs: Vec<(Vec<u8>, Vec<u8>)> =
            d.kv.range((g, Vec::new())..)
                .take_while(|((owner, _), _)| *owner == g)
                .map(|((_, k), v)| (k.clone(), v.clone()))
                .collect();
        let size = pairs.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
        self.snaps.lock().insert(
            (g, state.applied_index, state.applied_term),
            MemSnap {
                state,
                conf: conf.clone(),
                pairs,
            },
        );
        Ok(SnapshotInfo {
            state,
            conf_state: conf,
            file_size_bytes: size,
        })
    }

    fn install_snapshot(
        &self,
        group: GroupId,
        index: u64,
        term: u64,
    ) -> Result<SnapshotInfo, StoreError> {
        let g = group.0;
        let snap = self
            .snaps
            .lock()
            .get(&(g, index, term))
            .cloned()
            .ok_or_else(|| StoreError(format!("no snapshot of group {group} at {index}/{term}")))?;
        {
            let mut d = self.live.lock();
            d.kv.retain(|(kg, _), _| *kg != g);
            for (k, v) in &snap.pairs {
                d.kv.insert((g, k.clone()), v.clone());
            }
            d.apply.insert(g, snap.state);
            d.applied_conf.insert(g, snap.conf.clone());
            d.pending_snapshot.remove(&g);
        }
        self.sync();
        let size = snap
            .pairs
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum();
        Ok(SnapshotInfo {
            state: snap.state,
            conf_state: snap.conf,
            file_size_bytes: size,
        })
    }

    fn destroy_group(&self, group: GroupId, tombstone: Option<u64>) -> Result<(), StoreError> {
        let g = group.0;
        {
            let mut d = self.live.lock();
            d.applied_conf.remove(&g);
            d.pending_snapshot.remove(&g);
            if let Some(p) = tombstone {
                d.tombstones.insert(g, p);
            }
            d.log.retain(|(lg, _), _| *lg != g);
            d.kv.retain(|(kg, _), _| *kg != g);
            d.hard_state.remove(&g);
            d.conf_state.remove(&g);
            d.truncated.remove(&g);
            d.apply.remove(&g);
        }
        self.sync();
        Ok(())
    }
}
