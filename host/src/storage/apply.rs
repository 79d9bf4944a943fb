//! [`ApplyStore`] and [`KvReader`] on fjall: plugin KV data scoped by group, and the
//! apply state committed in the same batch as the state changes it covers.
//!
//! No key from outside reaches lsm-tree unchecked (it panics on keys over 65,535
//! bytes): a read of a longer key finds nothing, a scan bound is clamped to one that
//! admits the same stored keys (`keys::storable_bound`), and a write of one is an error.
//! Scans hand out pairs as they are read, never a materialized range.

use super::keys;
use super::store::{Store, err};
use crate::ids::{GroupId, PluginDigest};
use std::ops::Bound;
use std::sync::Arc;

use fjall::Readable as _;

use crate::raftstore::fsm::{KvIter, KvReader};
use crate::raftstore::traits::{
    ApplyState, ApplyStore, GroupApply, ReadSnapshot, SnapshotInfo, StoreError,
};
use raft::eraftpb::ConfState;

const APPLY_STATE_LEN: usize = 8 * 3 + 32;

pub fn encode_apply_state(s: &ApplyState) -> [u8; APPLY_STATE_LEN] {
    let mut out = [0u8; APPLY_STATE_LEN];
    out[..8].copy_from_slice(&s.applied_index.to_be_bytes());
    out[8..16].copy_from_slice(&s.applied_term.to_be_bytes());
    out[16..24].copy_from_slice(&s.applied_timestamp_ms.to_be_bytes());
    out[24..].copy_from_slice(&s.plugin.0);
    out
}

pub fn decode_apply_state(b: &[u8]) -> Option<ApplyState> {
    if b.len() != APPLY_STATE_LEN {
        return None;
    }
    let u = |r: std::ops::Range<usize>| -> Option<u64> {
        Some(u64::from_be_bytes(b.get(r)?.try_into().ok()?))
    };
    Some(ApplyState {
        applied_index: u(0..8)?,
        applied_term: u(8..16)?,
        applied_timestamp_ms: u(16..24)?,
        plugin: PluginDigest::from_slice(b.get(24..)?)?,
    })
}

impl KvReader for Store {
    fn get(&self, group: GroupId, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let Some(key) = keys::kv_key_checked(group, key) else {
            return Ok(None);
        };
        self.kv
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| e.to_string())
    }

    fn value_size(&self, group: GroupId, key: &[u8]) -> Result<Option<usize>, String> {
        let Some(key) = keys::kv_key_checked(group, key) else {
            return Ok(None);
        };
        self.kv
            .size_of(key)
            .map(|n| n.map(|n| n as usize))
            .map_err(|e| e.to_string())
    }

    fn scan<'a>(&'a self, group: GroupId, start: &[u8], end: Option<&[u8]>) -> KvIter<'a> {
        match kv_range(group, start, end) {
            Some(range) => pairs(self.kv.range(range)),
            None => Box::new(std::iter::empty()),
        }
    }
}

/// The apply state stored for `group`, if any; undecodable bytes are corruption.
fn stored_apply_state(
    group: GroupId,
    bytes: Option<&[u8]>,
) -> Result<Option<ApplyState>, StoreError> {
    bytes
        .map(|b| {
            decode_apply_state(b)
                .ok_or_else(|| StoreError(format!("corrupt apply state of group {group}")))
        })
        .transpose()
}

/// A fjall snapshot of the KV and apply-state keyspaces.
struct StoreSnapshot {
    snap: fjall::Snapshot,
    kv: fjall::Keyspace,
    apply_state: fjall::Keyspace,
}

impl KvReader for StoreSnapshot {
    fn get(&self, group: GroupId, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let Some(key) = keys::kv_key_checked(group, key) else {
            return Ok(None);
        };
        self.snap
            .get(&self.kv, key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| e.to_string())
    }

    fn value_size(&self, group: GroupId, key: &[u8]) -> Result<Option<usize>, String> {
        let Some(key) = keys::kv_key_checked(group, key) else {
            return Ok(None);
        };
        self.snap
            .size_of(&self.kv, key)
            .map(|n| n.map(|n| n as usize))
            .map_err(|e| e.to_string())
    }

    fn scan<'a>(&'a self, group: GroupId, start: &[u8], end: Option<&[u8]>) -> KvIter<'a> {
        match kv_range(group, start, end) {
            Some(range) => pairs(self.snap.range(&self.kv, range)),
            None => Box::new(std::iter::empty()),
        }
    }
}

impl ReadSnapshot for StoreSnapshot {
    fn apply_state(&self, group: GroupId) -> Result<Option<ApplyState>, StoreError> {
        let stored = self
            .snap
            .get(&self.apply_state, keys::group_prefix(group))
            .map_err(err)?;
        stored_apply_state(group, stored.as_deref())
    }
}

/// A range of store keys, as fjall takes it.
pub(super) type KeyRange = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// The `kv` keyspace range of `group`'s user keys in `[start, end)` (`None`: to the
/// group's end), with bounds the store accepts; `None` when the range holds no key.
pub(super) fn kv_range(group: GroupId, start: &[u8], end: Option<&[u8]>) -> Option<KeyRange> {
    if end.is_some_and(|e| e <= start) {
        return None;
    }
    let hi = match (end, keys::group_end(group)) {
        (Some(e), _) => Bound::Excluded(keys::kv_key(group, e)),
        (None, Some(g)) => Bound::Excluded(g.to_vec()),
        (None, None) => Bound::Unbounded,
    };
    let lo = keys::storable_bound(Bound::Included(keys::kv_key(group, start)), true);
    let hi = keys::storable_bound(hi, false);
    let empty = match (&lo, &hi) {
        (_, Bound::Unbounded) => false,
        (Bound::Included(l), Bound::Included(h)) => l > h,
        (Bound::Included(l) | Bound::Excluded(l), Bound::Included(h) | Bound::Excluded(h)) => {
            l >= h
        }
        (Bound::Unbounded, _) => false,
    };
    (!empty).then_some((lo, hi))
}

/// A fjall range as the group's user pairs (the 8-byte group prefix cut off).
fn pairs<'a>(iter: fjall::Iter) -> KvIter<'a> {
    Box::new(iter.map(|item| {
        let (k, v) = item.into_inner().map_err(|e| e.to_string())?;
        Ok((k.get(8..).unwrap_or_default().to_vec(), v.to_vec()))
    }))
}

impl ApplyStore for Store {
    fn read_snapshot(&self) -> Arc<dyn ReadSnapshot> {
        Arc::new(StoreSnapshot {
            snap: self.db.snapshot(),
            kv: self.kv.clone(),
            apply_state: self.apply_state.clone(),
        })
    }

    fn commit_applies(&self, applies: Vec<GroupApply>) -> Result<(), StoreError> {
        let mut batch = self.db.batch();
        let groups = applies.len();
        for GroupApply {
            group,
            writes,
            state,
            conf,
        } in applies
        {
            if let Some(cs) = conf {
                let bytes = protobuf::Message::write_to_bytes(&cs).map_err(err)?;
                batch.insert(&self.apply_state, keys::conf_key(group), bytes);
            }
            for (k, v) in writes {
                // The view refuses longer keys; this keeps a missed check from reaching
                // lsm-tree, which panics on them.
                let key = keys::kv_key_checked(group, &k).ok_or_else(|| {
                    StoreError(format!(
                        "group {group}: a key of {} bytes is longer than the store holds",
                        k.len()
                    ))
                })?;
                match v {
                    Some(v) => batch.insert(&self.kv, key, v),
                    None => batch.remove(&self.kv, key),
                }
            }
            batch.insert(
                &self.apply_state,
                keys::group_prefix(group),
                encode_apply_state(&state),
            );
        }
        batch
            .commit()
            .map_err(|e| StoreError(format!("apply write of {groups} group(s) failed: {e}")))?;
        self.seal_full_apply();
        Ok(())
    }

    fn apply_state(&self, group: GroupId) -> Result<Option<ApplyState>, StoreError> {
        let stored = self
            .apply_state
            .get(keys::group_prefix(group))
            .map_err(err)?;
        stored_apply_state(group, stored.as_deref())
    }

    fn conf_state(&self, group: GroupId) -> Result<Option<ConfState>, StoreError> {
        self.apply_state
            .get(keys::conf_key(group))
            .map_err(err)?
            .map(|b| {
                <ConfState as protobuf::Message>::parse_from_bytes(&b)
                    .map_err(|e| StoreError(format!("corrupt conf state of group {group}: {e}")))
            })
            .transpose()
    }

    fn destroy_group(&self, group: GroupId, tombstone: Option<u64>) -> Result<(), StoreError> {
        let mut batch = self
            .db
            .batch()
            .durability(Some(fjall::PersistMode::SyncData));
        let start = keys::group_prefix(group);
        let end = keys::group_end(group);
        for ks in [
            &self.raft_log,
            &self.raft_state,
            &self.kv,
            &self.apply_state,
        ] {
            self.remove_range(&mut batch, ks, &start, end.as_ref().map(|e| e.as_slice()))?;
        }
        batch.remove(&self.meta, keys::group_meta_key(group));
        if let Some(peer) = tombstone {
            batch.insert(&self.meta, keys::tombstone_key(group), peer.to_be_bytes());
        }
        batch
            .commit()
            .map_err(|e| StoreError(format!("cannot destroy group {group}: {e}")))
    }

    fn generate_snapshot(&self, group: GroupId) -> Result<SnapshotInfo, StoreError> {
        super::snapshot::generate(self, group)
    }

    fn install_snapshot(
        &self,
        group: GroupId,
        index: u64,
        term: u64,
    ) -> Result<SnapshotInfo, StoreError> {
        super::snapshot::install(self, group, index, term)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raftstore::fsm::WriteSet;

    #[test]
    fn one_commit_carries_several_groups_each_with_its_own_state() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(err)?;
        let store = Store::open(dir.path())?;
        let state = |i| ApplyState {
            applied_index: i,
            applied_term: 1,
            applied_timestamp_ms: 5,
            plugin: PluginDigest::of(b"p"),
        };
        let conf = ConfState {
            voters: vec![1, 2, 3],
            ..Default::default()
        };
        let applies = (1..=3u64)
            .map(|g| {
                let mut w = WriteSet::new();
                w.insert(b"k".to_vec(), Some(g.to_be_bytes().to_vec()));
                GroupApply {
                    group: GroupId(g),
                    writes: w,
                    state: state(10 + g),
                    conf: (g == 2).then(|| conf.clone()),
                }
            })
            .collect();
        store.commit_applies(applies)?;
        for g in 1..=3u64 {
            assert_eq!(store.apply_state(GroupId(g))?, Some(state(10 + g)));
            assert_eq!(
                KvReader::get(&store, GroupId(g), b"k").map_err(err)?,
                Some(g.to_be_bytes().to_vec())
            );
        }
        assert_eq!(store.conf_state(GroupId(2))?, Some(conf));
        assert_eq!(store.conf_state(GroupId(1))?, None);
        Ok(())
    }

    #[test]
    fn apply_commits_writes_with_state_and_scans_stay_in_group() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(err)?;
        let store = Store::open(dir.path())?;
        let d = PluginDigest::of(b"p");
        let mut w = WriteSet::new();
        w.insert(b"a".to_vec(), Some(b"1".to_vec()));
        w.insert(b"b".to_vec(), Some(b"2".to_vec()));
        let state = ApplyState {
            applied_index: 7,
            applied_term: 2,
            applied_timestamp_ms: 99,
            plugin: d,
        };
        store.commit_apply(GroupId(1), w, state, None)?;
        let mut other = WriteSet::new();
        other.insert(b"a".to_vec(), Some(b"x".to_vec()));
        store.commit_apply(GroupId(2), other, state, None)?;
        assert_eq!(store.apply_state(GroupId(1))?, Some(state));
        let pairs: Vec<_> = KvReader::scan(&store, GroupId(1), b"", None)
            .collect::<Result<_, _>>()
            .map_err(err)?;
        assert_eq!(pairs.len(), 2);
        assert_eq!(pairs[0], (b"a".to_vec(), b"1".to_vec()));
        let mut del = WriteSet::new();
        del.insert(b"a".to_vec(), None);
        store.commit_apply(GroupId(1), del, state, None)?;
        assert_eq!(KvReader::get(&store, GroupId(1), b"a").map_err(err)?, None);
        // A snapshot keeps seeing the state it was taken at.
        let snap = store.read_snapshot();
        let mut later = WriteSet::new();
        later.insert(b"b".to_vec(), Some(b"changed".to_vec()));
        let next = ApplyState {
            applied_index: 8,
            ..state
        };
        store.commit_apply(GroupId(1), later, next, None)?;
        assert_eq!(
            snap.get(GroupId(1), b"b").map_err(err)?,
            Some(b"2".to_vec())
        );
        assert_eq!(
            snap.apply_state(GroupId(1))?.map(|s| s.applied_index),
            Some(7)
        );
        assert_eq!(
            store.read_snapshot().get(GroupId(1), b"b").map_err(err)?,
            Some(b"changed".to_vec())
        );
        store.destroy_group(GroupId(1), None)?;
        assert_eq!(store.apply_state(GroupId(1))?, None);
        assert_eq!(KvReader::scan(&store, GroupId(1), b"", None).count(), 0);
        assert_eq!(
            KvReader::get(&store, GroupId(2), b"a").map_err(err)?,
            Some(b"x".to_vec())
        );
        Ok(())
    }

    /// A value from [`KV_SEPARATION_THRESHOLD_BYTES`] up goes to a blob file, reads back
    /// after a restart, and deleting it frees the file; a smaller one stays in the tables.
    #[test]
    fn large_values_live_in_blob_files_that_deletion_frees() -> Result<(), StoreError> {
        use crate::storage::store::KV_SEPARATION_THRESHOLD_BYTES;
        let dir = tempfile::tempdir().map_err(err)?;
        let g = GroupId(9);
        let large = vec![7u8; KV_SEPARATION_THRESHOLD_BYTES as usize];
        let small = vec![8u8; KV_SEPARATION_THRESHOLD_BYTES as usize - 1];
        let state = |i| ApplyState {
            applied_index: i,
            applied_term: 1,
            applied_timestamp_ms: 5,
            plugin: PluginDigest::of(b"p"),
        };
        let apply = |store: &Store, i: u64, writes: WriteSet| {
            store.commit_applies(vec![GroupApply {
                group: g,
                writes,
                state: state(i),
                conf: None,
            }])
        };
        {
            let store = Store::open(dir.path())?;
            assert!(store.kv.is_kv_separated());
            apply(
                &store,
                1,
                WriteSet::from([(b"small".to_vec(), Some(small.clone()))]),
            )?;
            store.kv.rotate_memtable_and_wait().map_err(err)?;
            assert_eq!(store.kv.blob_file_count(), 0, "a value under the threshold");
            apply(
                &store,
                2,
                WriteSet::from([(b"large".to_vec(), Some(large.clone()))]),
            )?;
            store.kv.rotate_memtable_and_wait().map_err(err)?;
            assert_eq!(store.kv.blob_file_count(), 1);
        }
        let store = Store::open(dir.path())?;
        assert_eq!(
            KvReader::get(&store, g, b"large").map_err(err)?,
            Some(large)
        );
        assert_eq!(
            KvReader::get(&store, g, b"small").map_err(err)?,
            Some(small)
        );
        apply(&store, 3, WriteSet::from([(b"large".to_vec(), None)]))?;
        store.kv.rotate_memtable_and_wait().map_err(err)?;
        // The first compaction drops the pointer, the next one the dead blob file.
        store.kv.major_compact().map_err(err)?;
        store.kv.major_compact().map_err(err)?;
        assert_eq!(store.kv.blob_file_count(), 0);
        assert_eq!(KvReader::get(&store, g, b"large").map_err(err)?, None);
        Ok(())
    }
}
