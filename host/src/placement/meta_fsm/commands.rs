//! Applying [`MetaCommand`]s: registering nodes and changing their state, deploying
//! plugins and recording which nodes hold their bytes, and creating, deleting,
//! upgrading and changing the membership of groups (placing replicas on the least
//! loaded nodes). A refused command returns an error and the caller discards its writes.

use super::keys;
use super::store::{
    all_nodes, blob, get, get_referenced, group, joined, live_node, next_peer, next_seq, node, put,
    write_group,
};
use super::validate::{check_addr, plugin_name_problem};
use crate::ids::{GroupId, NODE_ID_MAX, NodeId, PeerId, PluginDigest};
use crate::limits;
use crate::placement::meta_types::*;
use crate::placement::{META_PLUGIN, schedule};
use crate::raftstore::fsm::{EntryContext, KvView};

pub(super) fn apply(
    ctx: &EntryContext,
    kv: &mut KvView,
    cmd: MetaCommand,
) -> Result<MetaOutput, MetaError> {
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
