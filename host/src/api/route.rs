//! Routing a group request to the replica that can serve it. A request for a group this
//! node does not lead is forwarded once to the leader (found from the local replica's
//! leader hint, or from the meta group's record of the group's replicas). A forwarded
//! request carries `x-flotilla-forwarded` and is never forwarded again: the receiver
//! answers NOT_LEADER with `leader-peer-id`, and the sender follows the hint. Only
//! answers that prove the request did not run (not the leader, connection refused) are
//! retried, so a proposal is never applied twice by routing.

use std::future::Future;
use std::pin::Pin;

use tonic::transport::Channel;
use tonic::{Code, Status};

use super::node::Node;
use super::status;
use crate::ids::{GroupId, NodeId, PeerId};
use crate::placement::{MetaOutput, MetaQuery};
use crate::raftstore::RaftError;

/// Header marking a request one node forwarded to another.
pub const FORWARDED: &str = "x-flotilla-forwarded";
/// Metadata on NOT_LEADER answers.
pub const NOT_LEADER: &str = "x-flotilla-not-leader";

const ATTEMPTS: usize = 40;
const PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The leader's peer id carried by a NOT_LEADER status, if any.
pub fn leader_hint(s: &Status) -> Option<PeerId> {
    s.metadata()
        .get("leader-peer-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .filter(|p| *p != 0)
        .map(PeerId)
}

/// True if `s` proves the request did not run, so it may be sent elsewhere.
pub fn retryable(s: &Status) -> bool {
    if s.metadata().get(NOT_LEADER).is_some() {
        return true;
    }
    if s.code() == Code::NotFound && s.message().contains("does not exist on this node") {
        return true;
    }
    s.code() == Code::Unavailable
        && (s.message().contains("tcp connect")
            || s.message().contains("onnection refused")
            || s.message().contains("address of node")
            || s.message().contains("the node is shutting down"))
}

/// Whether a request arrived forwarded from another node.
pub fn is_forwarded<T>(req: &tonic::Request<T>) -> bool {
    req.metadata().get(FORWARDED).is_some()
}

/// Marks an outgoing request as forwarded.
pub fn forwarded<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert(FORWARDED, tonic::metadata::MetadataValue::from_static("1"));
    r
}

impl Node {
    /// The nodes that host `group`, the preferred leader first (from the meta group).
    pub async fn replica_nodes(&self, group: GroupId) -> Result<Vec<NodeId>, Status> {
        match self.meta_query(&MetaQuery::Group { group }).await? {
            MetaOutput::Group { group: g } => {
                let mut nodes: Vec<NodeId> = Vec::new();
                if let Some(r) = g.replica(g.preferred_leader) {
                    nodes.push(r.node);
                }
                for r in &g.replicas {
                    if !nodes.contains(&r.node) {
                        nodes.push(r.node);
                    }
                }
                Ok(nodes)
            }
            other => Err(Status::internal(format!(
                "unexpected meta answer {other:?}"
            ))),
        }
    }

    /// Runs a request on the group's leader: here if this replica leads, otherwise on
    /// the node the hints point to. `forwarded` requests run here only.
    pub async fn on_leader<'a, T: Send + 'a>(
        &'a self,
        group: GroupId,
        forwarded: bool,
        local: impl Fn() -> BoxFut<'a, Result<T, RaftError>> + Send + Sync + 'a,
        remote: impl Fn(Channel) -> BoxFut<'a, Result<T, Status>> + Send + Sync + 'a,
    ) -> Result<T, Status> {
        if forwarded {
            return local().await.map_err(not_leader_status);
        }
        let mut target: Option<NodeId> = None;
        let mut candidates: Vec<NodeId> = Vec::new();
        // Built only when an attempt fails: a Status (header map, message) per request
        // showed up in the write path's profile.
        let mut last: Option<Status> = None;
        for attempt in 0..ATTEMPTS {
            let t = match target.take() {
                Some(t) => t,
                None if self.hosts(group) && attempt % 3 != 2 => self.id,
                None => {
                    if candidates.is_empty() {
                        candidates = self.replica_nodes(group).await?;
                    }
                    if candidates.is_empty() {
                        return Err(Status::not_found(format!("group {group} has no replicas")));
                    }
                    candidates[attempt % candidates.len()]
                }
            };
            if t == self.id {
                match local().await {
                    Ok(v) => return Ok(v),
                    Err(RaftError::NotLeader {
                        leader: Some(p), ..
                    }) if p.node() != self.id => {
                        target = Some(p.node());
                        continue;
                    }
                    Err(e @ RaftError::NotLeader { .. }) => last = Some(status::from_raft(e)),
                    Err(e @ RaftError::GroupNotFound(_)) => last = Some(status::from_raft(e)),
                    Err(e) => return Err(status::from_raft(e)),
                }
            } else {
                let channel = match self.channels.get(t, &self.book) {
                    Ok(c) => c,
                    Err(s) => {
                        last = Some(s);
                        tokio::time::sleep(PAUSE).await;
                        continue;
                    }
                };
                match remote(channel).await {
                    Ok(v) => return Ok(v),
                    Err(s) if retryable(&s) => {
                        if let Some(hint) = leader_hint(&s)
                            && hint.node() != t
                        {
                            target = Some(hint.node());
                            continue;
                        }
                        last = Some(s);
                    }
                    Err(s) => return Err(s),
                }
            }
            tokio::time::sleep(PAUSE).await;
        }
        Err(last.unwrap_or_else(|| {
            Status::unavailable(format!("group {group} has no reachable leader"))
        }))
    }
}

/// A raft error as a status, marking NOT_LEADER so the sender may retry elsewhere.
pub fn not_leader_status(e: RaftError) -> Status {
    let is_not_leader = matches!(e, RaftError::NotLeader { .. });
    let mut s = status::from_raft(e);
    if is_not_leader {
        s.metadata_mut()
            .insert(NOT_LEADER, tonic::metadata::MetadataValue::from_static("1"));
    }
    s
}
