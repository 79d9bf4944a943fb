//! Cluster-wide operations built from meta-group records, replica starts on the right
//! nodes and membership changes on group leaders: create and delete groups, add,
//! promote and remove replicas, transfer leadership, drain a node.

use std::time::Duration;

use tonic::Status;

use super::node::Node;
use super::route;
use crate::ids::{GroupId, NodeId, PeerId, PluginDigest};
use crate::placement::{GroupRecord, MetaCommand, MetaOutput, MetaQuery, NodeRecord, NodeState};
use crate::proto::v1::cluster_client::ClusterClient;
use crate::proto::v1::{
    ChangePeersRequest, DestroyReplicaRequest, EnsurePluginRequest, PeerChangeItem,
    StartReplicaRequest, TransferLeaderRequest,
};
use crate::raftstore::PeerChange;

/// How long a new learner may take to catch up before promotion gives up.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// Followers this close to the leader's last index count as caught up.
const CAUGHT_UP_SLACK: u64 = 8;

fn unexpected(o: MetaOutput) -> Status {
    Status::internal(format!("unexpected meta answer {o:?}"))
}

pub fn change_kind(c: &PeerChange) -> PeerChangeItem {
    let (kind, peer) = match c {
        PeerChange::AddVoter(p) => ("add-voter", p),
        PeerChange::AddLearner(p) => ("add-learner", p),
        PeerChange::Remove(p) => ("remove", p),
    };
    PeerChangeItem {
        kind: kind.into(),
        peer_id: peer.0,
    }
}

pub fn parse_change(c: &PeerChangeItem) -> Result<PeerChange, Status> {
    let p = PeerId(c.peer_id);
    match c.kind.as_str() {
        "add-voter" => Ok(PeerChange::AddVoter(p)),
        "add-learner" => Ok(PeerChange::AddLearner(p)),
        "remove" => Ok(PeerChange::Remove(p)),
        other => Err(Status::invalid_argument(format!(
            "unknown membership change {other:?} (use add-voter, add-learner or remove)"
        ))),
    }
}

impl Node {
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>, Status> {
        match self.meta_query(&MetaQuery::Nodes).await? {
            MetaOutput::Nodes { nodes } => Ok(nodes),
            o => Err(unexpected(o)),
        }
    }

    pub async fn group_record(&self, group: GroupId) -> Result<GroupRecord, Status> {
        match self.meta_query(&MetaQuery::Group { group }).await? {
            MetaOutput::Group { group } => Ok(group),
            o => Err(unexpected(o)),
        }
    }

    fn cluster(&self, node: NodeId) -> Result<ClusterClient<tonic::transport::Channel>, Status> {
        Ok(ClusterClient::new(self.channels.get(node, &self.book)?))
    }

    /// Makes `node` hold and compile `digest`.
    pub async fn ensure_plugin_on(
        &self,
        node: NodeId,
        digest: PluginDigest,
        holders: &[NodeId],
    ) -> Result<(), Status> {
        if node == self.id {
            return self.ensure_plugin(digest, holders).await;
        }
        self.cluster(node)?
            .ensure_plugin(EnsurePluginRequest {
                digest: digest.0.to_vec(),
                holders: holders.iter().map(|n| n.0).collect(),
            })
            .await?;
        Ok(())
    }

    async fn start_replica_on(&self, node: NodeId, req: StartReplicaRequest) -> Result<(), Status> {
        if node == self.id {
            return self.start_replica(&req).await;
        }
        self.cluster(node)?.start_replica(req).await?;
        Ok(())
    }

    async fn plugin_holders(&self, digest: PluginDigest) -> Vec<NodeId> {
        match self
            .meta_query(&MetaQuery::ResolvePlugin {
                spec: digest.to_string(),
            })
            .await
        {
            Ok(MetaOutput::Plugin { plugin }) => plugin.holders,
            _ => vec![self.id],
        }
    }

    /// Creates a group: the meta group places its replicas, then each is started.
    pub async fn create_group(&self, plugin: &str, replicas: u32) -> Result<GroupRecord, Status> {
        let plugin = self.resolve_plugin(plugin).await?;
        let replicas = if replicas == 0 {
            let up = self
                .nodes()
                .await?
                .iter()
                .filter(|n| n.state == NodeState::Up)
                .count() as u32;
            up.clamp(1, 3)
        } else {
            replicas
        };
        let record = match self
            .meta_cmd(&MetaCommand::CreateGroup {
                plugin_digest: plugin.digest,
                replicas,
            })
            .await?
        {
            MetaOutput::Group { group } => group,
            o => return Err(unexpected(o)),
        };
        let voters: Vec<u64> = record.voters().map(|r| r.peer.0).collect();
        // The preferred leader starts last and campaigns at once: its votes reach
        // replicas that already exist, so it wins without waiting out a timeout.
        let mut order: Vec<_> = record.replicas.iter().collect();
        order.sort_by_key(|r| r.peer == record.preferred_leader);
        for r in order {
            let req = StartReplicaRequest {
                group_id: record.id.0,
                peer_id: r.peer.0,
                voters: voters.clone(),
                plugin_digest: plugin.digest.0.to_vec(),
                campaign: r.peer == record.preferred_leader,
                plugin_holders: plugin.holders.iter().map(|n| n.0).collect(),
            };
            if let Err(e) = self.start_replica_on(r.node, req).await {
                // The leader's messages create the replica once its node is back.
                tracing::warn!(
                    group = record.id.0,
                    node = r.node.0,
                    "replica not started: {e}"
                );
            }
        }
        Ok(record)
    }

    /// Deletes a group everywhere.
    pub async fn delete_group(&self, group: GroupId) -> Result<(), Status> {
        let record = match self.meta_cmd(&MetaCommand::DeleteGroup { group }).await? {
            MetaOutput::Group { group } => group,
            o => return Err(unexpected(o)),
        };
        for r in &record.replicas {
            let result = if r.node == self.id {
                self.destroy_replica(group).await
            } else {
                match self.cluster(r.node) {
                    Ok(mut c) => c
                        .destroy_replica(DestroyReplicaRequest { group_id: group.0 })
                        .await
                        .map(|_| ()),
                    Err(e) => Err(e),
                }
            };
            if let Err(e) = result {
                tracing::warn!(
                    group = group.0,
                    node = r.node.0,
                    "replica not destroyed: {e}"
                );
            }
        }
        Ok(())
    }

    /// Proposes membership changes on the group's leader.
    pub async fn change_peers(
        &self,
        group: GroupId,
        changes: Vec<PeerChange>,
        fwd: bool,
    ) -> Result<u64, Status> {
        let changes = &changes;
        self.on_leader(
            group,
            fwd,
            || Box::pin(async move { self.raft.change_peers(group, changes.clone()).await }),
            |ch| {
                Box::pin(async move {
                    Ok(ClusterClient::new(ch)
                        .change_peers(route::forwarded(ChangePeersRequest {
                            group_id: group.0,
                            changes: changes.iter().map(change_kind).collect(),
                        }))
                        .await?
                        .into_inner()
                        .index)
                })
            },
        )
        .await
    }

    /// The status of the group's leader (forwarded to it).
    pub async fn leader_status(
        &self,
        group: GroupId,
    ) -> Result<crate::raftstore::GroupStatus, Status> {
        self.on_leader(
            group,
            false,
            || {
                Box::pin(async move {
                    let st = self.raft.status(group).await?;
                    if st.role == "Leader" {
                        Ok(st)
                    } else {
                        Err(crate::raftstore::RaftError::NotLeader {
                            group,
                            leader: st.leader,
                        })
                    }
                })
            },
            |ch| {
                Box::pin(async move {
                    let r = ClusterClient::new(ch)
                        .node_status(crate::proto::v1::NodeStatusRequest {})
                        .await?
                        .into_inner();
                    let rep = r
                        .replicas
                        .into_iter()
                        .find(|x| x.group_id == group.0)
                        .ok_or_else(|| {
                            Status::not_found(format!("group {group} does not exist on this node"))
                        })?;
                    if rep.role != "Leader" {
                        let mut s = Status::unavailable("not the leader");
                        s.metadata_mut().insert(
                            route::NOT_LEADER,
                            tonic::metadata::MetadataValue::from_static("1"),
                        );
                        if let Ok(v) = rep.leader_peer_id.to_string().parse() {
                            s.metadata_mut().insert("leader-peer-id", v);
                        }
                        return Err(s);
                    }
                    Ok(crate::raftstore::GroupStatus {
                        group,
                        peer: PeerId(rep.peer_id),
                        role: rep.role,
                        term: 0,
                        leader: Some(PeerId(rep.leader_peer_id)),
                        commit_index: rep.commit_index,
                        applied_index: rep.applied_index,
                        first_index: 0,
                        last_index: rep.last_index,
                        pending_proposals: 0,
                        hibernating: false,
                        voters: Vec::new(),
                        learners: Vec::new(),
                        progress: rep
                            .progress
                            .iter()
                            .map(|p| (p.peer_id, p.matched))
                            .collect(),
                    })
                })
            },
        )
        .await
    }

    /// Waits until `peer` has replicated close to the leader's last index.
    async fn wait_caught_up(&self, group: GroupId, peer: PeerId) -> Result<(), Status> {
        let deadline = tokio::time::Instant::now() + CATCH_UP_TIMEOUT;
        loop {
            if let Ok(st) = self.leader_status(group).await
                && let Some((_, matched)) = st.progress.iter().find(|(p, _)| *p == peer.0)
                && matched + CAUGHT_UP_SLACK >= st.last_index
            {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Status::deadline_exceeded(format!(
                    "replica {peer} of group {group} did not catch up within {CATCH_UP_TIMEOUT:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Adds a replica on `node` (placement picks one if `None`): a learner first, which
    /// catches up by snapshot, then (unless `learner_only`) promoted to a voter.
    pub async fn add_replica(
        &self,
        group: GroupId,
        node: Option<NodeId>,
        learner_only: bool,
    ) -> Result<(crate::placement::Replica, u64), Status> {
        let record = self.group_record(group).await?;
        let node = match node {
            Some(n) if record.replica_on(n).is_some() => {
                return Err(Status::already_exists(format!(
                    "node {n} already hosts a replica of group {group}"
                )));
            }
            Some(n) => n,
            None => {
                let nodes = self.nodes().await?;
                nodes
                    .iter()
                    .filter(|n| n.state == NodeState::Up && record.replica_on(n.id).is_none())
                    .min_by_key(|n| (n.replicas, n.id))
                    .map(|n| n.id)
                    .ok_or_else(|| {
                        Status::failed_precondition(format!(
                            "no node is up that does not already host group {group}"
                        ))
                    })?
            }
        };
        let replica = match self
            .meta_cmd(&MetaCommand::AddReplica {
                group,
                node,
                learner: true,
            })
            .await?
        {
            MetaOutput::ReplicaAdded { replica, .. } => replica,
            o => return Err(unexpected(o)),
        };
        let holders = self.plugin_holders(record.plugin_digest).await;
        self.start_replica_on(
            node,
            StartReplicaRequest {
                group_id: group.0,
                peer_id: replica.peer.0,
                voters: Vec::new(),
                plugin_digest: record.plugin_digest.0.to_vec(),
                campaign: false,
                plugin_holders: holders.iter().map(|n| n.0).collect(),
            },
        )
        .await?;
        let mut index = self
            .change_peers(group, vec![PeerChange::AddLearner(replica.peer)], false)
            .await?;
        if !learner_only {
            self.wait_caught_up(group, replica.peer).await?;
            index = self.promote(group, replica.peer).await?;
        }
        Ok((replica, index))
    }

    pub async fn promote(&self, group: GroupId, peer: PeerId) -> Result<u64, Status> {
        // Check the record first: raft would add an unknown peer as a new voter.
        if self.group_record(group).await?.replica(peer).is_none() {
            return Err(Status::not_found(format!(
                "group {group} has no peer {peer}"
            )));
        }
        let index = self
            .change_peers(group, vec![PeerChange::AddVoter(peer)], false)
            .await?;
        self.meta_cmd(&MetaCommand::PromoteReplica { group, peer })
            .await?;
        Ok(index)
    }

    /// Removes a replica; a leader hands its leadership to another voter first.
    pub async fn remove_replica(&self, group: GroupId, peer: PeerId) -> Result<u64, Status> {
        let record = self.group_record(group).await?;
        if record.replica(peer).is_none() {
            return Err(Status::not_found(format!(
                "group {group} has no replica {peer}"
            )));
        }
        if let Ok(st) = self.leader_status(group).await
            && st.peer == peer
        {
            let target = record
                .voters()
                .find(|r| r.peer != peer)
                .map(|r| r.peer)
                .ok_or_else(|| {
                    Status::failed_precondition(format!(
                        "{peer} is the last voter of group {group}"
                    ))
                })?;
            self.transfer_leader(group, target).await?;
        }
        let index = self
            .change_peers(group, vec![PeerChange::Remove(peer)], false)
            .await?;
        self.meta_cmd(&MetaCommand::RemoveReplica { group, peer })
            .await?;
        Ok(index)
    }

    /// Moves leadership of `group` to `peer` and waits until it leads (or times out).
    pub async fn transfer_leader(&self, group: GroupId, peer: PeerId) -> Result<PeerId, Status> {
        for _ in 0..50 {
            let done = self
                .on_leader(
                    group,
                    false,
                    || Box::pin(async move { self.raft.transfer_leader(group, peer).await }),
                    |ch| {
                        Box::pin(async move {
                            ClusterClient::new(ch)
                                .transfer_leader(route::forwarded(TransferLeaderRequest {
                                    group_id: group.0,
                                    peer_id: peer.0,
                                    node_id: 0,
                                }))
                                .await?;
                            Ok(())
                        })
                    },
                )
                .await;
            done?;
            tokio::time::sleep(Duration::from_millis(200)).await;
            if let Ok(st) = self.leader_status(group).await
                && st.peer == peer
            {
                return Ok(peer);
            }
        }
        Err(Status::deadline_exceeded(format!(
            "leadership of group {group} did not move to {peer}"
        )))
    }

    /// The replica consistency check: a digest entry through the log, then every
    /// replica's recorded hash at that index, compared. A mismatch is logged as an error.
    pub async fn check_group(
        &self,
        group: GroupId,
    ) -> Result<crate::proto::v1::CheckGroupResponse, Status> {
        use crate::proto::v1::{CheckGroupResponse, ReplicaCheck, ReplicaDigestRequest};
        // The leader's node runs the check: it proposes the digest entry locally.
        let st = self.leader_status(group).await?;
        if st.peer.node() != self.id {
            let mut c = self.cluster(st.peer.node())?;
            return Ok(c
                .check_group(crate::proto::v1::CheckGroupRequest { group_id: group.0 })
                .await?
                .into_inner());
        }
        let index = self
            .raft
            .compute_digest(group)
            .await
            .map_err(super::status::from_raft)?;
        let record = self.group_record(group).await?;
        let mut replicas = Vec::new();
        for r in &record.replicas {
            let mut check = ReplicaCheck {
                peer_id: r.peer.0,
                node_id: r.node.0,
                ..Default::default()
            };
            let req = ReplicaDigestRequest {
                group_id: group.0,
                index,
            };
            let answer = match self.cluster(r.node) {
                Ok(mut c) => c.replica_digest(req).await.map(|a| a.into_inner().digest),
                Err(e) => Err(e),
            };
            match answer {
                Ok(d) => check.digest = d,
                Err(e) => check.error = e.message().to_string(),
            }
            replicas.push(check);
        }
        let answered: Vec<&String> = replicas
            .iter()
            .filter(|r| r.error.is_empty())
            .map(|r| &r.digest)
            .collect();
        let consistent = answered.windows(2).all(|w| w[0] == w[1]);
        let summary = if consistent {
            format!(
                "consistent at index {index} ({} replicas agree)",
                answered.len()
            )
        } else {
            tracing::error!(
                group = group.0,
                index,
                ?replicas,
                "REPLICA DIVERGENCE: replicas hashed different states at the same index"
            );
            format!("DIVERGED at index {index}")
        };
        self.metrics.consistency_checks.inc();
        if !consistent {
            self.metrics.replica_divergences.inc();
        }
        self.last_checks.lock().insert(group, summary);
        Ok(CheckGroupResponse {
            index,
            replicas,
            consistent,
        })
    }

    /// Moves every replica off `node`, then leaves it draining (ready to be removed).
    pub async fn drain(&self, node: NodeId) -> Result<(u32, u32), Status> {
        self.meta_cmd(&MetaCommand::SetNodeState {
            node,
            state: NodeState::Draining,
        })
        .await?;
        let mut moved = 0;
        let mut leaders = 0;
        loop {
            let groups = match self
                .meta_query(&MetaQuery::GroupsOnNode {
                    node,
                    start_after: None,
                    limit: Some(crate::placement::meta_fsm::GROUPS_PAGE_MAX),
                })
                .await?
            {
                MetaOutput::Groups { groups, .. } => groups,
                o => return Err(unexpected(o)),
            };
            if groups.is_empty() {
                break;
            }
            for g in groups {
                let Some(old) = g.replica_on(node).copied() else {
                    continue;
                };
                if let Ok(st) = self.leader_status(g.id).await
                    && st.peer == old.peer
                {
                    leaders += 1;
                }
                self.add_replica(g.id, None, false).await?;
                self.remove_replica(g.id, old.peer).await?;
                moved += 1;
            }
        }
        Ok((moved, leaders))
    }
}
