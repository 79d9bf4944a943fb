//! [`LogStore`] on fjall: the raft log and raft state of every group, written in one
//! batch and one sync per store-loop round.

use fjall::PersistMode;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState};

use super::keys;
use super::store::{Store, err};
use crate::ids::GroupId;
use crate::raftstore::traits::{LogStore, PersistedRaftState, RaftWriteBatch, StoreError};

fn index_term(index: u64, term: u64) -> [u8; 16] {
    let mut rec = [0u8; 16];
    rec[..8].copy_from_slice(&index.to_be_bytes());
    rec[8..].copy_from_slice(&term.to_be_bytes());
    rec
}

impl LogStore for Store {
    fn persist_round(&self, round: RaftWriteBatch) -> Result<(), StoreError> {
        let sync = round.must_sync();
        let mut batch = self
            .db
            .batch()
            .durability(sync.then_some(PersistMode::SyncData));
        for w in round.groups {
            let g = w.group;
            if let Some((index, term)) = w.snapshot {
                // The snapshot replaces the whole log; keep only the entries this same
                // write appends after it.
                let new = w
                    .entries
                    .first()
                    .map(|f| (f.index, f.index + w.entries.len() as u64));
                let start = keys::log_key(g, 0).to_vec();
                let end = keys::log_key(g, u64::MAX).to_vec();
                for item in self.raft_log.range(start..end) {
                    let key = item.key().map_err(err)?;
                    let i = keys::log_key_index(&key).unwrap_or(0);
                    if !new.is_some_and(|(lo, hi)| i >= lo && i < hi) {
                        batch.remove(&self.raft_log, key);
                    }
                }
                let rec = index_term(index, term);
                batch.insert(
                    &self.raft_state,
                    keys::state_key(g, keys::TAG_TRUNCATED),
                    rec,
                );
                batch.insert(
                    &self.raft_state,
                    keys::state_key(g, keys::TAG_PENDING_SNAPSHOT),
                    rec,
                );
            }
            if let Some(first) = w.entries.first() {
                // Remove a replaced suffix the new entries do not cover.
                let new_last = first.index + w.entries.len() as u64 - 1;
                for index in new_last + 1..=w.previous_last_index {
                    batch.remove(&self.raft_log, keys::log_key(g, index).to_vec());
                }
            }
            for e in &w.entries {
                let bytes = e.write_to_bytes().map_err(err)?;
                batch.insert(&self.raft_log, keys::log_key(g, e.index).to_vec(), bytes);
            }
            if let Some(hs) = &w.hard_state {
                let bytes = hs.write_to_bytes().map_err(err)?;
                batch.insert(
                    &self.raft_state,
                    keys::state_key(g, keys::TAG_HARD_STATE),
                    bytes,
                );
            }
            if let Some(cs) = &w.conf_state {
                let bytes = cs.write_to_bytes().map_err(err)?;
                batch.insert(
                    &self.raft_state,
                    keys::state_key(g, keys::TAG_CONF_STATE),
                    bytes,
                );
            }
            if let Some((index, term)) = w.compact_to {
                let rec = index_term(index, term);
                batch.insert(
                    &self.raft_state,
                    keys::state_key(g, keys::TAG_TRUNCATED),
                    rec,
                );
                for i in w.previous_truncated.saturating_add(1)..=index {
                    batch.remove(&self.raft_log, keys::log_key(g, i).to_vec());
                }
            }
        }
        let stamp = self.stamp_round(&mut batch);
        batch
            .commit()
            .map_err(|e| StoreError(format!("raft log write or fsync failed: {e}")))?;
        // An unsynced round may be lost by a crash; only a synced one (which makes every
        // earlier round durable too) moves the durability mark.
        if sync {
            self.round_synced(stamp);
        }
        self.seal_full_log();
        Ok(())
    }

    fn tombstone(&self, group: GroupId) -> Result<Option<u64>, StoreError> {
        let Some(v) = self.meta.get(keys::tombstone_key(group)).map_err(err)? else {
            return Ok(None);
        };
        let b: [u8; 8] = v
            .as_ref()
            .try_into()
            .map_err(|_| StoreError(format!("corrupt tombstone of group {group}")))?;
        Ok(Some(u64::from_be_bytes(b)))
    }

    fn entries(
        &self,
        group: GroupId,
        low: u64,
        high: u64,
        max_size_bytes: u64,
    ) -> Result<Vec<Entry>, StoreError> {
        let mut out = Vec::new();
        let mut size = 0u64;
        let range = keys::log_key(group, low).to_vec()..keys::log_key(group, high).to_vec();
        for item in self.raft_log.range(range) {
            let (_, value) = item.into_inner().map_err(err)?;
            let entry = Entry::parse_from_bytes(&value)
                .map_err(|e| StoreError(format!("corrupt raft log entry in group {group}: {e}")))?;
            let expected = low + out.len() as u64;
            if entry.index != expected {
                return Err(StoreError(format!(
                    "raft log of group {group} has a hole: expected index {expected}, found {}",
                    entry.index
                )));
            }
            size += value.len() as u64;
            if !out.is_empty() && size > max_size_bytes {
                break;
            }
            out.push(entry);
        }
        let expected = high.saturating_sub(low) as usize;
        if out.is_empty() || (out.len() < expected && size <= max_size_bytes) {
            if let Some(last) = out.last() {
                return Err(StoreError(format!(
                    "raft log of group {group} has a hole after index {}",
                    last.index
                )));
            }
            return Err(StoreError(format!(
                "raft log of group {group} is missing entries [{low}, {high})"
            )));
        }
        Ok(out)
    }

    fn raft_state(&self, group: GroupId) -> Result<Option<PersistedRaftState>, StoreError> {
        let get = |tag| {
            self.raft_state
                .get(keys::state_key(group, tag))
                .map_err(err)
        };
        let Some(hs) = get(keys::TAG_HARD_STATE)? else {
            return Ok(None);
        };
        let hard_state = HardState::parse_from_bytes(&hs).map_err(err)?;
        let conf_state = match get(keys::TAG_CONF_STATE)? {
            Some(b) => ConfState::parse_from_bytes(&b).map_err(err)?,
            None => ConfState::default(),
        };
        let decode =
            |b: Option<fjall::Slice>, what: &str| -> Result<Option<(u64, u64)>, StoreError> {
                match b {
                    Some(b) if b.len() == 16 => {
                        let (i, t) = b.split_at(8);
                        Ok(Some((
                            u64::from_be_bytes(i.try_into().map_err(err)?),
                            u64::from_be_bytes(t.try_into().map_err(err)?),
                        )))
                    }
                    Some(_) => Err(StoreError(format!("corrupt {what} of group {group}"))),
                    None => Ok(None),
                }
            };
        let truncated = decode(get(keys::TAG_TRUNCATED)?, "truncated state")?.unwrap_or((0, 0));
        let pending_snapshot = decode(get(keys::TAG_PENDING_SNAPSHOT)?, "pending snapshot")?;
        let start = keys::log_key(group, 0).to_vec();
        let end = keys::log_key(group, u64::MAX).to_vec();
        let last_index = match self.raft_log.range(start..end).next_back() {
            Some(item) => {
                let key = item.key().map_err(err)?;
                keys::log_key_index(&key)
                    .ok_or_else(|| StoreError(format!("corrupt raft log key in group {group}")))?
            }
            None => truncated.0,
        };
        Ok(Some(PersistedRaftState {
            hard_state,
            conf_state,
            truncated,
            last_index,
            pending_snapshot,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raftstore::traits::GroupRaftWrite;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8; 8].into(),
            ..Default::default()
        }
    }

    #[test]
    fn log_round_trips_replaces_suffix_and_compacts() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(err)?;
        let store = Store::open(dir.path())?;
        let g = GroupId(3);
        let hs = HardState {
            term: 1,
            ..Default::default()
        };
        store.persist_round(RaftWriteBatch {
            groups: vec![GroupRaftWrite {
                group: g,
                entries: (1..=5).map(|i| entry(i, 1)).collect(),
                hard_state: Some(hs.clone()),
                ..Default::default()
            }],
        })?;
        assert_eq!(store.entries(g, 1, 6, u64::MAX)?.len(), 5);
        // A new leader overwrites 3..=5 with a shorter suffix at term 2.
        store.persist_round(RaftWriteBatch {
            groups: vec![GroupRaftWrite {
                group: g,
                entries: vec![entry(3, 2)],
                previous_last_index: 5,
                ..Default::default()
            }],
        })?;
        let st = store.raft_state(g)?.ok_or_else(|| err("no state"))?;
        assert_eq!(st.last_index, 3);
        assert_eq!(store.entries(g, 3, 4, u64::MAX)?[0].term, 2);
        store.persist_round(RaftWriteBatch {
            groups: vec![GroupRaftWrite {
                group: g,
                compact_to: Some((2, 1)),
                ..Default::default()
            }],
        })?;
        let st = store.raft_state(g)?.ok_or_else(|| err("no state"))?;
        assert_eq!(st.truncated, (2, 1));
        assert_eq!(st.last_index, 3);
        assert!(store.entries(g, 1, 2, u64::MAX).is_err());
        assert_eq!(store.raft_state(GroupId(4))?.map(|s| s.last_index), None);
        Ok(())
    }

    /// Entries from [`LOG_SEPARATION_THRESHOLD_BYTES`] up go to blob files, read back
    /// after a restart, and truncating them frees the files.
    #[test]
    fn large_entries_live_in_blob_files_that_truncation_frees() -> Result<(), StoreError> {
        use crate::storage::store::LOG_SEPARATION_THRESHOLD_BYTES;
        let dir = tempfile::tempdir().map_err(err)?;
        let g = GroupId(7);
        let big = |i: u64| Entry {
            index: i,
            term: 1,
            data: vec![i as u8; 2 * LOG_SEPARATION_THRESHOLD_BYTES as usize].into(),
            ..Default::default()
        };
        {
            let store = Store::open(dir.path())?;
            assert!(store.raft_log.is_kv_separated());
            store.persist_round(RaftWriteBatch {
                groups: vec![GroupRaftWrite {
                    group: g,
                    entries: (1..=64).map(big).collect(),
                    hard_state: Some(HardState {
                        term: 1,
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
            })?;
            store.raft_log.rotate_memtable_and_wait().map_err(err)?;
            assert_eq!(store.raft_log.blob_file_count(), 1);
        }
        let store = Store::open(dir.path())?;
        let read = store.entries(g, 1, 65, u64::MAX)?;
        assert_eq!(read, (1..=64).map(big).collect::<Vec<_>>());
        store.persist_round(RaftWriteBatch {
            groups: vec![GroupRaftWrite {
                group: g,
                compact_to: Some((64, 1)),
                ..Default::default()
            }],
        })?;
        store.raft_log.rotate_memtable_and_wait().map_err(err)?;
        // The first compaction drops the pointers, which leaves the blob file dead; the
        // next one deletes the file.
        store.raft_log.major_compact().map_err(err)?;
        assert_eq!(store.raft_log.table_count(), 0);
        store.raft_log.major_compact().map_err(err)?;
        assert_eq!(store.raft_log.blob_file_count(), 0);
        Ok(())
    }
}
