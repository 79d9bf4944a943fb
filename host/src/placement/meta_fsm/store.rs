//! Reading and writing the meta state's records in the group's [`KvView`]: typed gets,
//! puts and scans (an undecodable or missing referenced record is corrupt state), the
//! lookups by id, the id sequences, and [`write_group`], which keeps the `replica/`
//! index and the per-node counts in step with every group change.

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::keys;
use crate::ids::{GroupId, NodeId, PeerId, PluginDigest};
use crate::placement::META_GROUP;
use crate::placement::meta_types::*;
use crate::raftstore::fsm::{KvView, ScanLimit};

pub(super) fn decode_record<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, MetaError> {
    serde_json::from_slice(bytes).map_err(|e| MetaError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        problem: e.to_string(),
    })
}

pub(super) fn get<T: DeserializeOwned>(kv: &KvView, key: &str) -> Result<Option<T>, MetaError> {
    kv.get(key.as_bytes())?
        .map(|bytes| decode_record(key.as_bytes(), &bytes))
        .transpose()
}

/// A record another record refers to: missing means corrupt state.
pub(super) fn get_referenced<T: DeserializeOwned>(kv: &KvView, key: &str) -> Result<T, MetaError> {
    get(kv, key)?.ok_or_else(|| MetaError::Corrupt {
        key: key.into(),
        problem: "referenced record is missing".into(),
    })
}

pub(super) fn put<T: Serialize>(kv: &mut KvView, key: &str, value: &T) -> Result<(), MetaError> {
    kv.put(key.as_bytes(), &to_json(value))?;
    Ok(())
}

/// Up to `limit` decoded records with keys in `[start, end)`.
pub(super) fn scan<T: DeserializeOwned>(
    kv: &KvView,
    start: &[u8],
    end: &[u8],
    limit: u32,
) -> Result<Vec<(Vec<u8>, T)>, MetaError> {
    // Meta records are small and counted by their own limits: no byte budget.
    kv.scan(start, Some(end), ScanLimit::pairs(limit as usize))?
        .pairs
        .into_iter()
        .map(|(k, v)| {
            let record = decode_record(&k, &v)?;
            Ok((k, record))
        })
        .collect()
}

pub(super) fn page_limit(asked: Option<u32>, default: u32, max: u32) -> u32 {
    asked.unwrap_or(default).clamp(1, max)
}

pub(super) fn all_nodes(kv: &KvView) -> Result<Vec<NodeRecord>, MetaError> {
    let end = keys::prefix_end(keys::NODE);
    let limit = NODES_MAX as u32 + 1;
    Ok(scan(kv, keys::NODE.as_bytes(), &end, limit)?
        .into_iter()
        .map(|(_, n)| n)
        .collect())
}

pub(super) fn node(kv: &KvView, id: NodeId) -> Result<NodeRecord, MetaError> {
    get(kv, &keys::node(id))?.ok_or(MetaError::NoSuchNode(id))
}

/// A registered node that is not removed.
pub(super) fn live_node(kv: &KvView, id: NodeId) -> Result<NodeRecord, MetaError> {
    let rec = node(kv, id)?;
    if rec.state == NodeState::Removed {
        return Err(MetaError::NodeRemoved(id));
    }
    Ok(rec)
}

pub(super) fn group(kv: &KvView, id: GroupId) -> Result<GroupRecord, MetaError> {
    if id == META_GROUP {
        return Err(MetaError::MetaGroup);
    }
    get(kv, &keys::group(id))?.ok_or(MetaError::NoSuchGroup(id))
}

pub(super) fn blob(kv: &KvView, digest: PluginDigest) -> Result<BlobRecord, MetaError> {
    get(kv, &keys::blob(digest))?.ok_or(MetaError::NoSuchBlob(digest))
}

pub(super) fn joined(version: VersionRecord, blob: &BlobRecord) -> PluginRecord {
    PluginRecord {
        name: version.name,
        version: version.version,
        digest: version.digest,
        size_bytes: blob.size_bytes,
        stateful: version.stateful,
        deployed_at_ms: version.deployed_at_ms,
        holders: blob.holders.clone(),
    }
}

/// Takes the next value of the sequence at `key` (which starts at `first`).
pub(super) fn next_seq(
    kv: &mut KvView,
    key: &str,
    first: u64,
    max: u64,
    what: &'static str,
) -> Result<u64, MetaError> {
    let value: u64 = get(kv, key)?.unwrap_or(first);
    if value > max {
        return Err(MetaError::Exhausted(what));
    }
    put(kv, key, &value.saturating_add(1))?;
    Ok(value)
}

pub(super) fn next_peer(kv: &mut KvView, node: NodeId) -> Result<PeerId, MetaError> {
    let seq = next_seq(kv, keys::SEQ_PEER, FIRST_PEER_SEQ, PEER_SEQ_MAX, "peer")?;
    Ok(PeerId::compose(seq, node))
}

/// Writes a group change — `old` → `new`, either side absent for create or delete — with
/// the `replica/` index and the per-node replica and preferred-leader counts.
pub(super) fn write_group(
    kv: &mut KvView,
    ts: u64,
    old: Option<&GroupRecord>,
    new: Option<&GroupRecord>,
) -> Result<(), MetaError> {
    let mut delta: BTreeMap<NodeId, (i64, i64)> = BTreeMap::new();
    if let Some(old) = old {
        for r in &old.replicas {
            delta.entry(r.node).or_default().0 -= 1;
            kv.delete(keys::replica(r.node, old.id).as_bytes())?;
        }
        delta.entry(old.preferred_leader.node()).or_default().1 -= 1;
    }
    if let Some(new) = new {
        for r in &new.replicas {
            delta.entry(r.node).or_default().0 += 1;
            put(kv, &keys::replica(r.node, new.id), &r.peer.0)?;
        }
        delta.entry(new.preferred_leader.node()).or_default().1 += 1;
        put(kv, &keys::group(new.id), new)?;
    } else if let Some(old) = old {
        kv.delete(keys::group(old.id).as_bytes())?;
    }
    for (id, (replicas, leaders)) in delta {
        if (replicas, leaders) == (0, 0) {
            continue;
        }
        let key = keys::node(id);
        let mut rec: NodeRecord = get_referenced(kv, &key)?;
        let corrupt = || MetaError::Corrupt {
            key: key.clone(),
            problem: "replica or preferred-leader count out of range".into(),
        };
        rec.replicas = rec
            .replicas
            .checked_add_signed(replicas)
            .ok_or_else(corrupt)?;
        rec.preferred_leaders = rec
            .preferred_leaders
            .checked_add_signed(leaders)
            .ok_or_else(corrupt)?;
        rec.updated_at_ms = ts;
        put(kv, &key, &rec)?;
    }
    Ok(())
}
