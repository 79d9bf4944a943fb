//! The cluster service: membership and placement for operators (add, remove, promote
//! replicas, transfer leadership, drain a node, cluster status, replica digests) and the
//! calls nodes make on each other (join, meta requests, starting and destroying
//! replicas, fetching plugins into place, status).

use std::sync::Arc;
use std::time::Duration;

use sha2::Digest as _;
use tonic::{Request, Response, Status};

use super::client::check_group;
use super::node::Node;
use super::ops::parse_change;
use super::route;
use crate::ids::{GroupId, NodeId, PeerId, PluginDigest};
use crate::placement::{MetaCommand, NodeState};
use crate::proto::v1::cluster_client::ClusterClient;
use crate::proto::v1::cluster_server::Cluster;
use crate::proto::v1::*;

#[derive(Debug)]
pub struct ClusterService {
    pub node: Arc<Node>,
}

fn state_name(s: NodeState) -> &'static str {
    match s {
        NodeState::Up => "up",
        NodeState::Draining => "draining",
        NodeState::Removed => "removed",
    }
}

impl ClusterService {
    async fn local_status(&self) -> NodeStatusResponse {
        {
            let mut replicas = Vec::new();
            for g in self.node.raft.groups() {
                let Ok(st) = self.node.raft.status(g).await else {
                    continue;
                };
                let last = st.last_index;
                replicas.push(LocalReplica {
                    group_id: g.0,
                    peer_id: st.peer.0,
                    role: st.role,
                    leader_peer_id: st.leader.map_or(0, |p| p.0),
                    commit_index: st.commit_index,
                    applied_index: st.applied_index,
                    last_index: last,
                    hibernating: st.hibernating,
                    progress: st
                        .progress
                        .iter()
                        .map(|(p, m)| ReplicaLag {
                            peer_id: *p,
                            node_id: PeerId(*p).node().0,
                            matched: *m,
                            behind: last.saturating_sub(*m),
                        })
                        .collect(),
                });
            }
            NodeStatusResponse {
                node_id: self.node.id.0,
                replicas,
            }
        }
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn add_replica(
        &self,
        request: Request<AddReplicaRequest>,
    ) -> Result<Response<AddReplicaResponse>, Status> {
        let req = request.into_inner();
        let group = check_group(req.group_id)?;
        let node = (req.node_id != 0).then_some(NodeId(req.node_id));
        let (r, index) = self.node.add_replica(group, node, req.learner_only).await?;
        Ok(Response::new(AddReplicaResponse {
            replica: Some(ReplicaInfo {
                peer_id: r.peer.0,
                node_id: r.node.0,
                learner: req.learner_only,
            }),
            index,
        }))
    }

    async fn remove_replica(
        &self,
        request: Request<RemoveReplicaRequest>,
    ) -> Result<Response<RemoveReplicaResponse>, Status> {
        let req = request.into_inner();
        let group = check_group(req.group_id)?;
        let index = self.node.remove_replica(group, PeerId(req.peer_id)).await?;
        Ok(Response::new(RemoveReplicaResponse { index }))
    }

    async fn promote(
        &self,
        request: Request<PromoteRequest>,
    ) -> Result<Response<PromoteResponse>, Status> {
        let req = request.into_inner();
        let group = check_group(req.group_id)?;
        let index = self.node.promote(group, PeerId(req.peer_id)).await?;
        Ok(Response::new(PromoteResponse { index }))
    }

    async fn transfer_leader(
        &self,
        request: Request<TransferLeaderRequest>,
    ) -> Result<Response<TransferLeaderResponse>, Status> {
        let fwd = route::is_forwarded(&request);
        let req = request.into_inner();
        let group = check_group(req.group_id)?;
        if fwd {
            self.node
                .raft
                .transfer_leader(group, PeerId(req.peer_id))
                .await
                .map_err(route::not_leader_status)?;
            return Ok(Response::new(TransferLeaderResponse {
                leader_peer_id: req.peer_id,
            }));
        }
        let peer = if req.peer_id != 0 {
            PeerId(req.peer_id)
        } else {
            let record = self.node.group_record(group).await?;
            record
                .replica_on(NodeId(req.node_id))
                .map(|r| r.peer)
                .ok_or_else(|| {
                    Status::not_found(format!(
                        "group {group} has no replica on node {}",
                        req.node_id
                    ))
                })?
        };
        let leader = self.node.transfer_leader(group, peer).await?;
        Ok(Response::new(TransferLeaderResponse {
            leader_peer_id: leader.0,
        }))
    }

    async fn drain_node(
        &self,
        request: Request<DrainNodeRequest>,
    ) -> Result<Response<DrainNodeResponse>, Status> {
        let node = NodeId(request.into_inner().node_id);
        let (moved, leaders_moved) = self.node.drain(node).await?;
        Ok(Response::new(DrainNodeResponse {
            moved,
            leaders_moved,
        }))
    }

    async fn cluster_status(
        &self,
        _request: Request<ClusterStatusRequest>,
    ) -> Result<Response<ClusterStatusResponse>, Status> {
        let nodes = self.node.nodes().await?;
        let mut out = ClusterStatusResponse::default();
        for n in nodes {
            let status = if n.id == self.node.id {
                Ok(self.local_status().await)
            } else {
                match self.node.channels.get(n.id, &self.node.book) {
                    Ok(ch) => {
                        let mut c = ClusterClient::new(ch);
                        let mut req = Request::new(NodeStatusRequest {});
                        req.set_timeout(Duration::from_secs(2));
                        c.node_status(req).await.map(|r| r.into_inner())
                    }
                    Err(e) => Err(e),
                }
            };
            let mut info = NodeInfo {
                node_id: n.id.0,
                addr: n.addr.clone(),
                state: state_name(n.state).into(),
                alive: status.is_ok(),
                replicas: 0,
                leaders: 0,
                hibernating: 0,
            };
            if let Ok(st) = status {
                info.replicas = st.replicas.len() as u32;
                for r in st.replicas {
                    info.hibernating += u32::from(r.hibernating);
                    if r.role == "Leader" {
                        info.leaders += 1;
                        if r.group_id == 0 {
                            out.meta_leader_node_id = n.id.0;
                        }
                        out.groups.push(GroupLag {
                            group_id: r.group_id,
                            leader_peer_id: r.peer_id,
                            leader_node_id: n.id.0,
                            commit_index: r.commit_index,
                            replicas: r.progress,
                        });
                    }
                }
            }
            out.nodes.push(info);
        }
        out.groups.sort_by_key(|g| g.group_id);
        Ok(Response::new(out))
    }

    async fn check_group(
        &self,
        request: Request<CheckGroupRequest>,
    ) -> Result<Response<CheckGroupResponse>, Status> {
        let group = check_group(request.into_inner().group_id)?;
        let resp = self.node.check_group(group).await?;
        Ok(Response::new(resp))
    }

    async fn replica_digest(
        &self,
        request: Request<ReplicaDigestRequest>,
    ) -> Result<Response<ReplicaDigestResponse>, Status> {
        let req = request.into_inner();
        let group = GroupId(req.group_id);
        if req.index != 0 {
            for _ in 0..100 {
                match self.node.raft.recorded_digest(group, req.index) {
                    Ok(Some(d)) => {
                        return Ok(Response::new(ReplicaDigestResponse {
                            applied_index: req.index,
                            digest: hex::encode(d),
                            pairs: 0,
                        }));
                    }
                    Ok(None) if self.node.hosts(group) => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Ok(None) => {
                        return Err(Status::not_found(format!(
                            "group {group} does not exist on this node"
                        )));
                    }
                    Err(e) => return Err(super::status::from_raft(e)),
                }
            }
            return Err(Status::deadline_exceeded(format!(
                "this replica of group {group} has not applied the digest entry {} yet",
                req.index
            )));
        }
        let raft = self.node.raft.clone();
        let store = self.node.store.clone();
        let resp = tokio::task::spawn_blocking(move || {
            if raft.applied(group).is_none() {
                return Err(Status::not_found(format!(
                    "group {group} does not exist on this node"
                )));
            }
            let snap = crate::raftstore::traits::ApplyStore::read_snapshot(&store);
            let state = snap
                .apply_state(group)
                .map_err(super::status::from_store)?
                .ok_or_else(|| Status::not_found(format!("group {group} has no state here")))?;
            let mut hash = sha2::Sha256::new();
            hash.update(state.plugin.0);
            let mut pairs = 0u64;
            for item in snap.scan(group, b"", None) {
                let (k, v) = item.map_err(Status::internal)?;
                crate::raftstore::digest::hash_pair(&mut hash, &k, &v);
                pairs += 1;
            }
            Ok(ReplicaDigestResponse {
                applied_index: state.applied_index,
                digest: hex::encode(hash.finalize()),
                pairs,
            })
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(resp))
    }

    async fn join_cluster(
        &self,
        request: Request<JoinClusterRequest>,
    ) -> Result<Response<JoinClusterResponse>, Status> {
        let req = request.into_inner();
        if req.node_id == 0 || req.node_id > crate::ids::NODE_ID_MAX {
            return Err(Status::invalid_argument(format!(
                "node id {} is out of range 1..={}",
                req.node_id,
                crate::ids::NODE_ID_MAX
            )));
        }
        self.node
            .meta_cmd(&MetaCommand::RegisterNode {
                node: NodeId(req.node_id),
                addr: req.addr.clone(),
            })
            .await?;
        self.node.book.set(NodeId(req.node_id), req.addr);
        let nodes = self.node.nodes().await?;
        Ok(Response::new(JoinClusterResponse {
            nodes: nodes
                .iter()
                .map(|n| NodeInfo {
                    node_id: n.id.0,
                    addr: n.addr.clone(),
                    state: state_name(n.state).into(),
                    alive: true,
                    replicas: n.replicas as u32,
                    leaders: 0,
                    hibernating: 0,
                })
                .collect(),
            meta_nodes: self.node.meta_nodes.iter().map(|n| n.0).collect(),
        }))
    }

    async fn meta(&self, request: Request<MetaRequest>) -> Result<Response<MetaResponse>, Status> {
        let req = request.into_inner();
        let output = self
            .node
            .meta_local(req.body, req.query)
            .await
            .map_err(route::not_leader_status)?;
        Ok(Response::new(MetaResponse { output }))
    }

    async fn start_replica(
        &self,
        request: Request<StartReplicaRequest>,
    ) -> Result<Response<StartReplicaResponse>, Status> {
        let req = request.into_inner();
        check_group(req.group_id)?;
        if PeerId(req.peer_id).node() != self.node.id {
            return Err(Status::invalid_argument(format!(
                "peer {} does not belong to node {}",
                req.peer_id, self.node.id
            )));
        }
        self.node.start_replica(&req).await?;
        Ok(Response::new(StartReplicaResponse {}))
    }

    async fn destroy_replica(
        &self,
        request: Request<DestroyReplicaRequest>,
    ) -> Result<Response<DestroyReplicaResponse>, Status> {
        let group = check_group(request.into_inner().group_id)?;
        self.node.destroy_replica(group).await?;
        Ok(Response::new(DestroyReplicaResponse {}))
    }

    async fn change_peers(
        &self,
        request: Request<ChangePeersRequest>,
    ) -> Result<Response<ChangePeersResponse>, Status> {
        let fwd = route::is_forwarded(&request);
        let req = request.into_inner();
        let group = check_group(req.group_id)?;
        let changes = req
            .changes
            .iter()
            .map(parse_change)
            .collect::<Result<Vec<_>, _>>()?;
        let index = self.node.change_peers(group, changes, fwd).await?;
        Ok(Response::new(ChangePeersResponse { index }))
    }

    async fn node_status(
        &self,
        _request: Request<NodeStatusRequest>,
    ) -> Result<Response<NodeStatusResponse>, Status> {
        Ok(Response::new(self.local_status().await))
    }

    async fn ensure_plugin(
        &self,
        request: Request<EnsurePluginRequest>,
    ) -> Result<Response<EnsurePluginResponse>, Status> {
        let req = request.into_inner();
        let digest = PluginDigest::from_slice(&req.digest)
            .ok_or_else(|| Status::invalid_argument("digest must be 32 bytes"))?;
        let holders: Vec<NodeId> = req.holders.into_iter().map(NodeId).collect();
        self.node.ensure_plugin(digest, &holders).await?;
        Ok(Response::new(EnsurePluginResponse {}))
    }
}
