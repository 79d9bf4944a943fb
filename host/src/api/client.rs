//! The client service: `Propose`, `Query`, `Batch` (both multiplexed on one stream,
//! served by [`super::batch`]) and `WatchLeaders`. Proposals and
//! linearizable or lease reads run on the group's leader (forwarded there when this
//! node's replica does not lead); stale reads run on any replica, this node's first.

use std::sync::Arc;

use tonic::{Request, Response, Status, Streaming};

use super::batch;
use super::node::Node;
use super::route::{self, forwarded};
use crate::ids::GroupId;
use crate::limits;
use crate::proto::v1::client_client::ClientClient;
use crate::proto::v1::client_server::Client;
use crate::proto::v1::{
    BatchRequest, BatchResponse, LeaderEvent, ProposeRequest, ProposeResponse, QueryRequest,
    QueryResponse, ReadConsistency, WatchLeadersRequest,
};
use crate::raftstore::{RaftError, ReadKind};

#[derive(Debug)]
pub struct ClientService {
    pub node: Arc<Node>,
}

pub fn check_size(what: &str, len: usize) -> Result<(), Status> {
    if len > limits::COMMAND_SIZE_BYTES_MAX {
        return Err(Status::invalid_argument(format!(
            "{what} is {len} bytes, over the limit of {} bytes",
            limits::COMMAND_SIZE_BYTES_MAX
        )));
    }
    if len == 0 {
        return Err(Status::invalid_argument(format!("{what} is empty")));
    }
    Ok(())
}

pub fn check_group(id: u64) -> Result<GroupId, Status> {
    if id == 0 {
        return Err(Status::invalid_argument(
            "group_id is required (groups start at 1; group 0 is the cluster's meta group)",
        ));
    }
    Ok(GroupId(id))
}

/// Events a `WatchLeaders` stream buffers before it waits for the watcher.
const WATCH_BUFFER: usize = 256;

/// Runs a query on this node's replica (blocking work off the async threads).
async fn local_query(
    node: &Node,
    group: GroupId,
    kind: Option<ReadKind>,
    request: Vec<u8>,
) -> Result<(Vec<u8>, u64), RaftError> {
    match kind {
        Some(kind) => node.raft.read_query(group, kind, request).await,
        None if !node.hosts(group) => Err(RaftError::GroupNotFound(group)),
        None => node.raft.query(group, request).await,
    }
}

/// One proposal, as the unary `Propose` and each `Batch` item run it: checked, then
/// proposed on this node's replica if it leads, else forwarded once to the leader.
pub async fn propose_op(
    node: &Node,
    fwd: bool,
    req: ProposeRequest,
) -> Result<ProposeResponse, Status> {
    let group = check_group(req.group_id)?;
    check_size("the command", req.command.len())?;
    if req.request_id.len() > 128 {
        return Err(Status::invalid_argument(
            "request_id is longer than 128 bytes",
        ));
    }
    let req = &req;
    let done = node
        .on_leader(
            group,
            fwd,
            || {
                Box::pin(async move {
                    node.raft
                        .propose(group, req.command.clone(), req.request_id.clone())
                        .await
                        .map(|p| (p.index, p.output))
                })
            },
            |ch| {
                Box::pin(async move {
                    let r = ClientClient::new(ch)
                        .propose(forwarded(req.clone()))
                        .await?
                        .into_inner();
                    Ok((r.index, r.output))
                })
            },
        )
        .await?;
    Ok(ProposeResponse {
        group_id: group.0,
        index: done.0,
        output: done.1,
    })
}

/// One query, as the unary `Query` and each `Batch` item run it.
pub async fn query_op(node: &Node, fwd: bool, req: QueryRequest) -> Result<QueryResponse, Status> {
    let group = check_group(req.group_id)?;
    check_size("the query", req.request.len())?;
    let consistency = ReadConsistency::try_from(req.consistency).map_err(|_| {
        Status::invalid_argument(format!("unknown consistency {}", req.consistency))
    })?;
    let (kind, served) = match consistency {
        ReadConsistency::Unspecified | ReadConsistency::Linearizable => {
            (Some(ReadKind::Linearizable), ReadConsistency::Linearizable)
        }
        ReadConsistency::Lease => (Some(ReadKind::Lease), ReadConsistency::Lease),
        ReadConsistency::Stale => (None, ReadConsistency::Stale),
    };
    let req = &req;
    let (output, applied_index) = node
        .on_leader(
            group,
            fwd,
            || Box::pin(local_query(node, group, kind, req.request.clone())),
            |ch| {
                Box::pin(async move {
                    let r = ClientClient::new(ch)
                        .query(forwarded(req.clone()))
                        .await?
                        .into_inner();
                    Ok((r.output, r.applied_index))
                })
            },
        )
        .await?;
    Ok(QueryResponse {
        output,
        served: served as i32,
        applied_index,
    })
}

#[tonic::async_trait]
impl Client for ClientService {
    async fn propose(
        &self,
        request: Request<ProposeRequest>,
    ) -> Result<Response<ProposeResponse>, Status> {
        let fwd = route::is_forwarded(&request);
        propose_op(&self.node, fwd, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn query(
        &self,
        request: Request<QueryRequest>,
    ) -> Result<Response<QueryResponse>, Status> {
        let fwd = route::is_forwarded(&request);
        query_op(&self.node, fwd, request.into_inner())
            .await
            .map(Response::new)
    }

    type BatchStream = tokio_stream::wrappers::ReceiverStream<Result<BatchResponse, Status>>;

    async fn batch(
        &self,
        request: Request<Streaming<BatchRequest>>,
    ) -> Result<Response<Self::BatchStream>, Status> {
        let fwd = route::is_forwarded(&request);
        let slot = batch::StreamSlot::take(&self.node.metrics.batch_streams)?;
        let (tx, rx) = tokio::sync::mpsc::channel(limits::BATCH_RESPONSES_QUEUED_MAX);
        let node = self.node.clone();
        tokio::spawn(async move {
            batch::serve(node, fwd, request.into_inner(), tx).await;
            drop(slot);
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }

    type WatchLeadersStream = tokio_stream::wrappers::ReceiverStream<Result<LeaderEvent, Status>>;

    async fn watch_leaders(
        &self,
        _request: Request<WatchLeadersRequest>,
    ) -> Result<Response<Self::WatchLeadersStream>, Status> {
        let board = self.node.raft.leaders().clone();
        let mut changes = board.subscribe();
        let (tx, rx) = tokio::sync::mpsc::channel(WATCH_BUFFER);
        tokio::spawn(async move {
            // Each pass sends what changed since the last one: a slow watcher makes the
            // passes rarer, never the raft loop slower, and always ends on the latest.
            let mut seen = 0;
            loop {
                let (events, seq) = board.changed_since(seen);
                seen = seq;
                for e in events {
                    let leader = e.leader.map_or(0, |p| p.0);
                    let ev = LeaderEvent {
                        group_id: e.group.0,
                        leader_peer_id: leader,
                        leader_node_id: e.leader.map_or(0, |p| p.node().0),
                        term: e.term,
                    };
                    if tx.send(Ok(ev)).await.is_err() {
                        return;
                    }
                }
                if changes.changed().await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }
}
