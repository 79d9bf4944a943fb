//! The meta group's state machine: the cluster's source of truth for nodes, deployed
//! plugins, groups and the placement of their replicas.
//!
//! It runs natively (see [`super::HostDispatch`]) in group 0 and keeps all of its state in
//! the group's [`KvView`], so snapshots and replication work as for any group. Commands
//! ([`MetaCommand`]) and queries ([`MetaQuery`]) are JSON objects tagged by `"op"`; every
//! answer is a JSON [`MetaOutput`] tagged by `"kind"`. Outcomes are deterministic: the only
//! time is the entry's leader-assigned timestamp, all iteration is over ordered keys, and
//! placement ties break by node id.
//!
//! # Key layout (UTF-8 keys, JSON values; ids zero-padded so scans are ordered)
//! - `node/{node:020}` → [`NodeRecord`] (with its replica and preferred-leader counts)
//! - `plugin/{name}/{version:010}` → one deployed version (name, digest, flags, time)
//! - `latest/{name}` → the latest version number of `name` (versions are `1..=latest`)
//! - `blob/{digest hex}` → [`BlobRecord`]: size, the nodes holding the bytes, first deploy
//! - `group/{group:020}` → [`GroupRecord`]
//! - `replica/{node:020}/{group:020}` → the peer id of `group`'s replica on `node` (index)
//! - `seq/group`, `seq/peer` → the next group id (from 1) and peer sequence (from 1; the
//!   meta group's own peers use sequence 0, i.e. peer id = node id)

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::META_PLUGIN;
use super::schedule;
use crate::ids::{GroupId, NODE_ID_MAX, NodeId, PeerId, PluginDigest};
use crate::limits;
use crate::raftstore::fsm::{CommandOutcome, EntryContext, KvView, QueryContext};

#[cfg(test)]
mod tests;

pub use super::meta_types::*;

// ---------------------------------------------------------------------------------------
// Keys

mod keys {
    use super::*;

    pub const NODE: &str = "node/";
    pub const PLUGIN: &str = "plugin/";
    pub const LATEST: &str = "latest/";
    pub const GROUP: &str = "group/";
    pub const REPLICA: &str = "replica/";
    pub const SEQ_GROUP: &str = "seq/group";
    pub const SEQ_PEER: &str = "seq/peer";

    pub fn node(node: NodeId) -> String {
        format!("{NODE}{:020}", node.0)
    }
    pub fn version(name: &str, version: u32) -> String {
        format!("{PLUGIN}{name}/{version:010}")
    }
    pub fn latest(name: &str) -> String {
        format!("{LATEST}{name}")
    }
    pub fn blob(digest: PluginDigest) -> String {
        format!("blob/{}", digest.to_hex())
    }
    pub fn group(group: GroupId) -> String {
        format!("{GROUP}{:020}", group.0)
    }
    pub fn replicas_of(node: NodeId) -> String {
        format!("{REPLICA}{:020}/", node.0)
    }
    pub fn replica(node: NodeId, group: GroupId) -> String {
        format!("{}{:020}", replicas_of(node), group.0)
    }

    /// The first key after every key that starts with `prefix`.
    pub fn prefix_end(prefix: &str) -> Vec<u8> {
        let mut end = prefix.as_bytes().to_vec();
        while let Some(last) = end.pop() {
            if last < u8::MAX {
                end.push(last + 1);
                return end;
            }
        }
        end
    }

    /// The first key after `key`.
    pub fn after(key: &str) -> Vec<u8> {
        let mut k = key.as_bytes().to_vec();
        k.push(0);
        k
    }
}

// ---------------------------------------------------------------------------------------
// KV helpers

fn decode_record<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, MetaError> {
    serde_json::from_slice(bytes).map_err(|e| MetaError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        problem: e.to_string(),
    })
}

fn get<T: DeserializeOwned>(kv: &KvView, key: &str) -> Result<Option<T>, MetaError> {
    kv.get(key.as_bytes())?
        .map(|bytes| decode_record(key.as_bytes(), &bytes))
        .transpose()
}

/// A record another record refers to: missing means corrupt state.
fn get_referenced<T: DeserializeOwned>(kv: &KvView, key: &str) -> Result<T, MetaError> {
    get(kv, key)?.ok_or_else(|| MetaError::Corrupt {
        key: key.into(),
        problem: "referenced record is missing".into(),
    })
}

fn put<T: Serialize>(kv: &mut KvView, key: &str, value: &T) -> Result<(), MetaError> {
    kv.put(key.as_bytes(), &to_json(value))?;
    Ok(())
}

/// Up to `limit` decoded records with keys in `[start, end)`.
fn scan<T: DeserializeOwned>(
    kv: &KvView,
    start: &[u8],
    end: &[u8],
    limit: u32,
) -> Result<Vec<(Vec<u8>, T)>, MetaError> {
    kv.scan(start, Some(end), limit)?
        .into_iter()
        .map(|(k, v)| {
            let record = decode_record(&k, &v)?;
            Ok((k, record))
        })
        .collect()
}

fn page_limit(asked: Option<u32>, default: u32, max: u32) -> u32 {
    asked.unwrap_or(default).clamp(1, max)
}

fn all_nodes(kv: &KvView) -> Result<Vec<NodeRecord>, MetaError> {
    let end = keys::prefix_end(keys::NODE);
    let limit = NODES_MAX as u32 + 1;
    Ok(scan(kv, keys::NODE.as_bytes(), &end, limit)?
        .into_iter()
        .map(|(_, n)| n)
        .collect())
}

fn node(kv: &KvView, id: NodeId) -> Result<NodeRecord, MetaError> {
    get(kv, &keys::node(id))?.ok_or(MetaError::NoSuchNode(id))
}

/// A registered node that is not removed.
fn live_node(kv: &KvView, id: NodeId) -> Result<NodeRecord, MetaError> {
    let rec = node(kv, id)?;
    if rec.state == NodeState::Removed {
        return Err(MetaError::NodeRemoved(id));
    }
    Ok(rec)
}

fn group(kv: &KvView, id: GroupId) -> Result<GroupRecord, MetaError> {
    if id == super::META_GROUP {
        return Err(MetaError::MetaGroup);
    }
    get(kv, &keys::group(id))?.ok_or(MetaError::NoSuchGroup(id))
}

fn blob(kv: &KvView, digest: PluginDigest) -> Result<BlobRecord, MetaError> {
    get(kv, &keys::blob(digest))?.ok_or(MetaError::NoSuchBlob(digest))
}

fn joined(version: VersionRecord, blob: &BlobRecord) -> PluginRecord {
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
fn next_seq(
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

fn next_peer(kv: &mut KvView, node: NodeId) -> Result<PeerId, MetaError> {
    let seq = next_seq(kv, keys::SEQ_PEER, FIRST_PEER_SEQ, PEER_SEQ_MAX, "peer")?;
    Ok(PeerId::compose(seq, node))
}

/// Writes a group change — `old` → `new`, either side absent for create or delete — with
/// the `replica/` index and the per-node replica and preferred-leader counts.
fn write_group(
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

fn check_addr(addr: &str) -> Result<(), MetaError> {
    let bad = |reason: &str| {
        Err(MetaError::BadAddress {
            addr: addr.into(),
            reason: reason.into(),
        })
    };
    if addr.is_empty() {
        return bad("it is empty");
    }
    if addr.len() > NODE_ADDR_BYTES_MAX {
        return bad(&format!("it is longer than {NODE_ADDR_BYTES_MAX} bytes"));
    }
    if addr.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("it contains whitespace or control characters");
    }
    Ok(())
}

/// Why `name` cannot be a plugin name, if it cannot.
fn plugin_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("it is empty".into());
    }
    if name.len() > PLUGIN_NAME_BYTES_MAX {
        return Some(format!("it is longer than {PLUGIN_NAME_BYTES_MAX} bytes"));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Some("it must start with a letter or digit".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Some("only ASCII letters, digits, '-', '_' and '.' are allowed".into());
    }
    None
}

/// "counter (version 1), kv (versions 1 to 3)", or "none" — bounded.
fn deployed_summary(kv: &KvView) -> Result<String, MetaError> {
    let end = keys::prefix_end(keys::LATEST);
    let names: Vec<(Vec<u8>, u32)> = scan(kv, keys::LATEST.as_bytes(), &end, ERROR_NAMES_MAX + 1)?;
    if names.is_empty() {
        return Ok("none".into());
    }
    let mut parts: Vec<String> = names
        .iter()
        .take(ERROR_NAMES_MAX as usize)
        .map(|(k, latest)| {
            let name = String::from_utf8_lossy(&k[keys::LATEST.len()..]);
            if *latest == 1 {
                format!("{name} (version 1)")
            } else {
                format!("{name} (versions 1 to {latest})")
            }
        })
        .collect();
    if names.len() > ERROR_NAMES_MAX as usize {
        parts.push("...".into());
    }
    Ok(parts.join(", "))
}

// ---------------------------------------------------------------------------------------
// The state machine

/// The meta group's native state machine. Stateless: everything lives in the KV view.
#[derive(Clone, Copy, Debug, Default)]
pub struct MetaFsm;

impl MetaFsm {
    /// Applies the commands of one entry in order (see
    /// [`crate::raftstore::fsm::StateMachineHost::apply_entry`]).
    pub fn apply_entry(
        &self,
        ctx: EntryContext,
        commands: &[&[u8]],
        mut kv: KvView,
    ) -> (KvView, Vec<CommandOutcome>) {
        let mut outcomes = Vec::with_capacity(commands.len());
        for bytes in commands {
            let outcome =
                MetaCommand::decode(bytes).and_then(|cmd| Ok(apply(&ctx, &mut kv, cmd)?.encode()));
            match &outcome {
                Ok(_) => kv.commit_command(),
                Err(_) => kv.discard_command(),
            }
            outcomes.push(outcome);
        }
        (kv, outcomes)
    }

    /// Answers one query.
    pub fn query(&self, _ctx: QueryContext, request: &[u8], kv: &KvView) -> CommandOutcome {
        let query = MetaQuery::decode(request)?;
        Ok(answer(kv, query)?.encode())
    }
}

fn apply(ctx: &EntryContext, kv: &mut KvView, cmd: MetaCommand) -> Result<MetaOutput, MetaError> {
    let ts = ctx.timestamp_ms;
    match cmd {
        MetaCommand::RegisterNode { node, addr } => register_node(kv, ts, node, addr),
        MetaCommand::SetNodeState { node, state } => set_node_state(kv, ts, node, state),
        MetaCommand::DeployPlugin {
            name,
            digest,
            size_bytes,
            stateful,
            holder_node,
        } => deploy_plugin(kv, ts, name, digest, size_bytes, stateful, holder_node),
        MetaCommand::AddPluginHolder { digest, node } => {
            live_node(kv, node)?;
            let mut blob = blob(kv, digest)?;
            add_holder(&mut blob.holders, node);
            put(kv, &keys::blob(digest), &blob)?;
            Ok(MetaOutput::Blob { blob })
        }
        MetaCommand::CreateGroup {
            plugin_digest,
            replicas,
        } => create_group(kv, ts, plugin_digest, replicas),
        MetaCommand::DeleteGroup { group: id } => {
            let old = group(kv, id)?;
            write_group(kv, ts, Some(&old), None)?;
            Ok(MetaOutput::Group { group: old })
        }
        MetaCommand::AddReplica {
            group,
            node,
            learner,
        } => add_replica(kv, ts, group, node, learner),
        MetaCommand::RemoveReplica { group, peer } => remove_replica(kv, ts, group, peer),
        MetaCommand::PromoteReplica { group: id, peer } => {
            let old = group(kv, id)?;
            let mut new = old.clone();
            let replica = new
                .replicas
                .iter_mut()
                .find(|r| r.peer == peer)
                .ok_or(MetaError::NoSuchReplica { group: id, peer })?;
            if !replica.learner {
                return Err(MetaError::AlreadyVoter { group: id, peer });
            }
            replica.learner = false;
            new.conf_epoch = new.conf_epoch.saturating_add(1);
            write_group(kv, ts, Some(&old), Some(&new))?;
            Ok(MetaOutput::Group { group: new })
        }
        MetaCommand::SetGroupPlugin {
            group: id,
            plugin_digest,
        } => {
            let old = group(kv, id)?;
            blob(kv, plugin_digest)?;
            let mut new = old.clone();
            new.plugin_digest = plugin_digest;
            if new != old {
                write_group(kv, ts, Some(&old), Some(&new))?;
            }
            Ok(MetaOutput::Group { group: new })
        }
    }
}

fn register_node(
    kv: &mut KvView,
    ts: u64,
    id: NodeId,
    addr: String,
) -> Result<MetaOutput, MetaError> {
    if id.0 == 0 || id.0 > NODE_ID_MAX {
        return Err(MetaError::NodeIdOutOfRange(id.0));
    }
    check_addr(&addr)?;
    let nodes = all_nodes(kv)?;
    if let Some(other) = nodes
        .iter()
        .find(|n| n.addr == addr && n.id != id && n.state != NodeState::Removed)
    {
        return Err(MetaError::AddressTaken {
            addr,
            node: other.id,
        });
    }
    let count = nodes.len();
    let rec = match nodes.into_iter().find(|n| n.id == id) {
        Some(rec) if rec.state == NodeState::Removed => return Err(MetaError::NodeRemoved(id)),
        Some(rec) if rec.addr == addr => return Ok(MetaOutput::Node { node: rec }),
        Some(mut rec) => {
            rec.addr = addr;
            rec.updated_at_ms = ts;
            rec
        }
        None => {
            if count >= NODES_MAX {
                return Err(MetaError::TooManyNodes);
            }
            NodeRecord {
                id,
                addr,
                state: NodeState::Up,
                replicas: 0,
                preferred_leaders: 0,
                registered_at_ms: ts,
                updated_at_ms: ts,
            }
        }
    };
    put(kv, &keys::node(id), &rec)?;
    Ok(MetaOutput::Node { node: rec })
}

fn set_node_state(
    kv: &mut KvView,
    ts: u64,
    id: NodeId,
    state: NodeState,
) -> Result<MetaOutput, MetaError> {
    let mut rec = node(kv, id)?;
    if rec.state == state {
        return Ok(MetaOutput::Node { node: rec });
    }
    if rec.state == NodeState::Removed {
        return Err(MetaError::NodeRemoved(id));
    }
    if state == NodeState::Removed && rec.replicas > 0 {
        return Err(MetaError::NodeStillHosts {
            node: id,
            replicas: rec.replicas,
        });
    }
    rec.state = state;
    rec.updated_at_ms = ts;
    put(kv, &keys::node(id), &rec)?;
    Ok(MetaOutput::Node { node: rec })
}

fn add_holder(holders: &mut Vec<NodeId>, node: NodeId) {
    if let Err(at) = holders.binary_search(&node) {
        holders.insert(at, node);
    }
}

fn deploy_plugin(
    kv: &mut KvView,
    ts: u64,
    name: String,
    digest: PluginDigest,
    size_bytes: u64,
    stateful: bool,
    holder: NodeId,
) -> Result<MetaOutput, MetaError> {
    if let Some(reason) = plugin_name_problem(&name) {
        return Err(MetaError::BadPluginName { name, reason });
    }
    if digest == META_PLUGIN {
        return Err(MetaError::ReservedDigest(digest));
    }
    if size_bytes == 0 || size_bytes > limits::PLUGIN_SIZE_BYTES_MAX as u64 {
        return Err(MetaError::BadPluginSize(size_bytes));
    }
    live_node(kv, holder)?;
    let latest: Option<u32> = get(kv, &keys::latest(&name))?;
    let version = match latest {
        None => 1,
        Some(v) => v
            .checked_add(1)
            .ok_or(MetaError::Exhausted("plugin version"))?,
    };
    let mut blob = get(kv, &keys::blob(digest))?.unwrap_or_else(|| BlobRecord {
        digest,
        size_bytes,
        holders: Vec::new(),
        first_name: name.clone(),
        first_version: version,
    });
    if blob.size_bytes != size_bytes {
        return Err(MetaError::SizeMismatch {
            digest,
            recorded: blob.size_bytes,
            claimed: size_bytes,
        });
    }
    add_holder(&mut blob.holders, holder);
    put(kv, &keys::blob(digest), &blob)?;
    if let Some(latest) = latest {
        let current: VersionRecord = get_referenced(kv, &keys::version(&name, latest))?;
        if current.digest == digest {
            return Ok(MetaOutput::Deployed {
                plugin: joined(current, &blob),
                already_present: true,
            });
        }
    }
    let record = VersionRecord {
        name,
        version,
        digest,
        stateful,
        deployed_at_ms: ts,
    };
    put(kv, &keys::version(&record.name, version), &record)?;
    put(kv, &keys::latest(&record.name), &version)?;
    Ok(MetaOutput::Deployed {
        plugin: joined(record, &blob),
        already_present: false,
    })
}

fn create_group(
    kv: &mut KvView,
    ts: u64,
    plugin_digest: PluginDigest,
    replicas: u32,
) -> Result<MetaOutput, MetaError> {
    if replicas == 0 || replicas > REPLICAS_MAX {
        return Err(MetaError::BadReplicaCount(replicas));
    }
    blob(kv, plugin_digest)?;
    let nodes = all_nodes(kv)?;
    let up: Vec<&NodeRecord> = nodes.iter().filter(|n| n.state == NodeState::Up).collect();
    let room = up
        .iter()
        .filter(|n| n.replicas < limits::GROUPS_PER_NODE_MAX as u64)
        .map(|n| (n.id, n.replicas));
    let mut chosen = schedule::least_loaded(room, replicas as usize);
    if chosen.len() < replicas as usize {
        let full = up.len()
            - up.iter()
                .filter(|n| n.replicas < limits::GROUPS_PER_NODE_MAX as u64)
                .count();
        return Err(MetaError::NotEnoughNodes {
            wanted: replicas,
            up: up.len(),
            full: if full > 0 {
                format!(" and {full} of them host the most replicas a node may")
            } else {
                String::new()
            },
        });
    }
    chosen.sort();
    let leader_node = nodes
        .iter()
        .filter(|n| chosen.contains(&n.id))
        .min_by_key(|n| (n.preferred_leaders, n.id))
        .map(|n| n.id)
        // Unreachable: `chosen` holds `replicas` >= 1 registered nodes.
        .ok_or(MetaError::BadReplicaCount(replicas))?;
    let id = GroupId(next_seq(kv, keys::SEQ_GROUP, 1, u64::MAX - 1, "group")?);
    let mut members = Vec::with_capacity(chosen.len());
    for node in chosen {
        members.push(Replica {
            peer: next_peer(kv, node)?,
            node,
            learner: false,
        });
    }
    let preferred_leader = members
        .iter()
        .find(|r| r.node == leader_node)
        .map(|r| r.peer)
        .ok_or(MetaError::BadReplicaCount(replicas))?;
    let record = GroupRecord {
        id,
        plugin_digest,
        replicas: members,
        preferred_leader,
        created_at_ms: ts,
        conf_epoch: 1,
    };
    write_group(kv, ts, None, Some(&record))?;
    Ok(MetaOutput::Group { group: record })
}

fn add_replica(
    kv: &mut KvView,
    ts: u64,
    id: GroupId,
    node_id: NodeId,
    learner: bool,
) -> Result<MetaOutput, MetaError> {
    let old = group(kv, id)?;
    let target = node(kv, node_id)?;
    if target.state != NodeState::Up {
        return Err(MetaError::NodeNotUp {
            node: node_id,
            state: target.state,
        });
    }
    if let Some(existing) = old.replica_on(node_id) {
        return Err(MetaError::AlreadyHosts {
            group: id,
            node: node_id,
            peer: existing.peer,
        });
    }
    if old.replicas.len() >= MEMBERS_MAX {
        return Err(MetaError::TooManyMembers(id));
    }
    if target.replicas >= limits::GROUPS_PER_NODE_MAX as u64 {
        return Err(MetaError::NodeFull {
            node: node_id,
            replicas: target.replicas,
        });
    }
    let replica = Replica {
        peer: next_peer(kv, node_id)?,
        node: node_id,
        learner,
    };
    let mut new = old.clone();
    new.replicas.push(replica);
    new.conf_epoch = new.conf_epoch.saturating_add(1);
    write_group(kv, ts, Some(&old), Some(&new))?;
    Ok(MetaOutput::ReplicaAdded {
        group: new,
        replica,
    })
}

fn remove_replica(
    kv: &mut KvView,
    ts: u64,
    id: GroupId,
    peer: PeerId,
) -> Result<MetaOutput, MetaError> {
    let old = group(kv, id)?;
    let at = old
        .replicas
        .iter()
        .position(|r| r.peer == peer)
        .ok_or(MetaError::NoSuchReplica { group: id, peer })?;
    let removed = old.replicas[at];
    if !removed.learner && old.voters().count() == 1 {
        return Err(MetaError::LastVoter { group: id, peer });
    }
    let mut new = old.clone();
    new.replicas.remove(at);
    new.conf_epoch = new.conf_epoch.saturating_add(1);
    if new.preferred_leader == peer {
        let mut best: Option<((u64, NodeId), PeerId)> = None;
        for voter in new.voters() {
            let rec: NodeRecord = get_referenced(kv, &keys::node(voter.node))?;
            let rank = (rec.preferred_leaders, rec.id);
            if best.is_none_or(|(b, _)| rank < b) {
                best = Some((rank, voter.peer));
            }
        }
        new.preferred_leader = best
            .map(|(_, p)| p)
            .ok_or(MetaError::LastVoter { group: id, peer })?;
    }
    write_group(kv, ts, Some(&old), Some(&new))?;
    Ok(MetaOutput::Group { group: new })
}

// ---------------------------------------------------------------------------------------
// Queries

fn answer(kv: &KvView, query: MetaQuery) -> Result<MetaOutput, MetaError> {
    match query {
        MetaQuery::Nodes => Ok(MetaOutput::Nodes {
            nodes: all_nodes(kv)?,
        }),
        MetaQuery::Plugins { start_after, limit } => {
            let limit = page_limit(limit, PLUGINS_PAGE_DEFAULT, PLUGINS_PAGE_MAX);
            let start = match &start_after {
                Some(c) => keys::after(&keys::version(&c.name, c.version)),
                None => keys::PLUGIN.as_bytes().to_vec(),
            };
            let end = keys::prefix_end(keys::PLUGIN);
            let mut versions: Vec<(Vec<u8>, VersionRecord)> = scan(kv, &start, &end, limit + 1)?;
            let more = versions.len() > limit as usize;
            versions.truncate(limit as usize);
            let mut plugins = Vec::with_capacity(versions.len());
            for (_, v) in versions {
                let blob: BlobRecord = get_referenced(kv, &keys::blob(v.digest))?;
                plugins.push(joined(v, &blob));
            }
            let next = if more {
                plugins.last().map(|p| PluginCursor {
                    name: p.name.clone(),
                    version: p.version,
                })
            } else {
                None
            };
            Ok(MetaOutput::Plugins { plugins, next })
        }
        MetaQuery::ResolvePlugin { spec } => Ok(MetaOutput::Plugin {
            plugin: resolve(kv, &spec)?,
        }),
        MetaQuery::Groups { start_after, limit } => {
            let start = match start_after {
                Some(g) => keys::after(&keys::group(g)),
                None => keys::GROUP.as_bytes().to_vec(),
            };
            let limit = page_limit(limit, GROUPS_PAGE_DEFAULT, GROUPS_PAGE_MAX);
            let end = keys::prefix_end(keys::GROUP);
            let found: Vec<(Vec<u8>, GroupRecord)> = scan(kv, &start, &end, limit + 1)?;
            let groups = found.into_iter().map(|(_, g)| g).collect();
            Ok(groups_page(groups, limit))
        }
        MetaQuery::Group { group: id } => Ok(MetaOutput::Group {
            group: group(kv, id)?,
        }),
        MetaQuery::GroupsOnNode {
            node: id,
            start_after,
            limit,
        } => {
            node(kv, id)?;
            let prefix = keys::replicas_of(id);
            let start = match start_after {
                Some(g) => keys::after(&keys::replica(id, g)),
                None => prefix.as_bytes().to_vec(),
            };
            let limit = page_limit(limit, GROUPS_PAGE_DEFAULT, GROUPS_PAGE_MAX);
            let end = keys::prefix_end(&prefix);
            let found: Vec<(Vec<u8>, u64)> = scan(kv, &start, &end, limit + 1)?;
            let mut groups = Vec::with_capacity(found.len());
            for (key, _) in found {
                let text = String::from_utf8_lossy(&key).into_owned();
                let gid = text[prefix.len()..]
                    .parse::<u64>()
                    .map_err(|e| MetaError::Corrupt {
                        key: text.clone(),
                        problem: e.to_string(),
                    })?;
                groups.push(get_referenced(kv, &keys::group(GroupId(gid)))?);
            }
            Ok(groups_page(groups, limit))
        }
    }
}

/// A page of at most `limit` groups from `limit + 1` found.
fn groups_page(mut groups: Vec<GroupRecord>, limit: u32) -> MetaOutput {
    let more = groups.len() > limit as usize;
    groups.truncate(limit as usize);
    let next_start_after = if more {
        groups.last().map(|g| g.id)
    } else {
        None
    };
    MetaOutput::Groups {
        groups,
        next_start_after,
    }
}

fn resolve(kv: &KvView, spec: &str) -> Result<PluginRecord, MetaError> {
    let bad = |reason: &str| MetaError::BadSpec {
        spec: spec.into(),
        reason: reason.into(),
    };
    if let Some(hex) = spec.strip_prefix("sha256:") {
        let digest = PluginDigest::from_hex(hex)
            .ok_or_else(|| bad("expected 64 hex characters after 'sha256:'"))?;
        let Some(blob) = get::<BlobRecord>(kv, &keys::blob(digest))? else {
            return Err(MetaError::NoSuchPlugin {
                what: format!("no plugin with digest {digest} is deployed"),
                deployed: deployed_summary(kv)?,
            });
        };
        let version: VersionRecord =
            get_referenced(kv, &keys::version(&blob.first_name, blob.first_version))?;
        return Ok(joined(version, &blob));
    }
    let (name, version) = match spec.split_once('@') {
        Some((name, v)) => {
            let v = v
                .parse::<u32>()
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| bad("the version after '@' must be a positive integer"))?;
            (name, Some(v))
        }
        None => (spec, None),
    };
    if spec.is_empty() {
        return Err(bad(
            "it is empty; use 'name', 'name@version' or 'sha256:<hex>'",
        ));
    }
    if let Some(reason) = plugin_name_problem(name) {
        return Err(bad(&reason));
    }
    let Some(latest) = get::<u32>(kv, &keys::latest(name))? else {
        return Err(MetaError::NoSuchPlugin {
            what: format!("no plugin named '{name}' is deployed"),
            deployed: deployed_summary(kv)?,
        });
    };
    let version = version.unwrap_or(latest);
    if version > latest {
        return Err(MetaError::NoSuchVersion {
            name: name.into(),
            version,
            latest,
        });
    }
    let record: VersionRecord = get_referenced(kv, &keys::version(name, version))?;
    let blob: BlobRecord = get_referenced(kv, &keys::blob(record.digest))?;
    Ok(joined(record, &blob))
}
