//! Snapshots of a group's applied state on fjall: generation reads one consistent fjall
//! snapshot (KV data, apply state and configuration agree) into a snapshot file;
//! installation loads a received file in bounded batches. The raft side leaves a
//! pending-snapshot marker in the same synced batch that drops the group's log, so a
//! crash in the middle of an install is finished on restart from the same file.

use fjall::Readable as _;
use protobuf::Message as _;
use raft::eraftpb::ConfState;

use super::apply::{decode_apply_state, encode_apply_state, kv_range};
use super::keys;
use super::snapfile::{SnapReader, write_file};
use super::store::{Store, err};
use crate::ids::GroupId;
use crate::raftstore::traits::{SnapshotInfo, StoreError};

/// Bytes of pairs written per batch while installing (memory bound of an install).
const INSTALL_BATCH_BYTES: usize = 4 * 1024 * 1024;

pub(super) fn generate(store: &Store, group: GroupId) -> Result<SnapshotInfo, StoreError> {
    let snap = store.db.snapshot();
    let state = snap
        .get(&store.apply_state, keys::group_prefix(group))
        .map_err(err)?
        .map(|b| decode_apply_state(&b))
        .ok_or_else(|| StoreError(format!("group {group} has no apply state to snapshot")))?
        .ok_or_else(|| StoreError(format!("corrupt apply state of group {group}")))?;
    let conf = match snap
        .get(&store.apply_state, keys::conf_key(group))
        .map_err(err)?
    {
        Some(b) => ConfState::parse_from_bytes(&b).map_err(err)?,
        None => match snap
            .get(
                &store.raft_state,
                keys::state_key(group, keys::TAG_CONF_STATE),
            )
            .map_err(err)?
        {
            Some(b) => ConfState::parse_from_bytes(&b).map_err(err)?,
            None => ConfState::default(),
        },
    };
    let path = store
        .snaps
        .gen_path(group, state.applied_index, state.applied_term);
    // A whole group's range is never empty; the fallback only keeps this total.
    let range = kv_range(group, b"", None).unwrap_or((
        std::ops::Bound::Included(keys::group_prefix(group).to_vec()),
        std::ops::Bound::Unbounded,
    ));
    let pairs = snap.range(&store.kv, range).map(|item| {
        let (k, v) = item.into_inner().map_err(err)?;
        Ok((k.get(8..).unwrap_or_default().to_vec(), v.to_vec()))
    });
    let size = write_file(&path, &state, &conf, pairs)?;
    store.snaps.remove_older_gen(group, state.applied_index);
    Ok(SnapshotInfo {
        state,
        conf_state: conf,
        file_size_bytes: size,
    })
}

pub(super) fn install(
    store: &Store,
    group: GroupId,
    index: u64,
    term: u64,
) -> Result<SnapshotInfo, StoreError> {
    let path = store.snaps.recv_path(group, index, term);
    // Check the whole file before touching the group's data.
    SnapReader::verify(&path)?;
    let mut reader = SnapReader::open(&path)?;
    if reader.state.applied_index != index || reader.state.applied_term != term {
        return Err(StoreError(format!(
            "snapshot file {} holds index {} term {}, expected {index} {term}",
            path.display(),
            reader.state.applied_index,
            reader.state.applied_term
        )));
    }
    let start = keys::group_prefix(group);
    let end = keys::group_end(group);
    let mut batch = store.db.batch();
    store.remove_range(
        &mut batch,
        &store.kv,
        &start,
        end.as_ref().map(|e| e.as_slice()),
    )?;
    batch.commit().map_err(err)?;
    let mut batch = store.db.batch();
    let mut bytes = 0usize;
    while let Some((k, v)) = reader.next_pair()? {
        bytes += k.len() + v.len();
        batch.insert(&store.kv, keys::kv_key(group, &k), v);
        if bytes >= INSTALL_BATCH_BYTES {
            batch.commit().map_err(err)?;
            batch = store.db.batch();
            bytes = 0;
        }
    }
    batch.commit().map_err(err)?;
    let mut last = store
        .db
        .batch()
        .durability(Some(fjall::PersistMode::SyncData));
    last.insert(
        &store.apply_state,
        keys::group_prefix(group),
        encode_apply_state(&reader.state),
    );
    last.insert(
        &store.apply_state,
        keys::conf_key(group),
        reader.conf.write_to_bytes().map_err(err)?,
    );
    last.remove(
        &store.raft_state,
        keys::state_key(group, keys::TAG_PENDING_SNAPSHOT),
    );
    last.commit()
        .map_err(|e| StoreError(format!("installing snapshot of group {group}: {e}")))?;
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let _ = std::fs::remove_file(&path);
    Ok(SnapshotInfo {
        state: reader.state,
        conf_state: reader.conf,
        file_size_bytes: size,
    })
}
