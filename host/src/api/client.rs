//! The client service: `Propose` and `Query`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::node::Node;
use super::status;
use crate::ids::GroupId;
use crate::limits;
use crate::proto::v1::client_server::Client;
use crate::proto::v1::{
    ProposeRequest, ProposeResponse, QueryRequest, QueryResponse, ReadConsistency,
};
use crate::raftstore::ReadKind;

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
            "group_id is required (groups start at 1)",
        ));
    }
    Ok(GroupId(id))
}

#[tonic::async_trait]
impl Client for ClientService {
    async fn propose(
        &self,
        request: Request<ProposeRequest>,
    ) -> Result<Response<ProposeResponse>, Status> {
        let req = request.into_inner();
        let group = check_group(req.group_id)?;
        check_size("the command", req.command.len())?;
        if req.request_id.len() > 128 {
            return Err(Status::invalid_argument(
                "request_id is longer than 128 bytes",
            ));
        }
        let done = self
            .node
            .raft
            .propose(group, req.command, req.request_id)
            .await
            .map_err(status::from_raft)?;
        Ok(Response::new(ProposeResponse {
            group_id: group.0,
            index: done.index,
            output: done.output,
        }))
    }

    async fn query(
        &self,
        request: Request<QueryRequest>,
    ) -> Result<Response<QueryResponse>, Status> {
        let req = request.into_inner();
        let group = check_group(req.group_id)?;
        check_size("the query", req.request.len())?;
        let consistency = ReadConsistency::try_from(req.consistency).map_err(|_| {
            Status::invalid_argument(format!("unknown consistency {}", req.consistency))
        })?;
        let served = match consistency {
            ReadConsistency::Unspecified | ReadConsistency::Linearizable => {
                let kind = ReadKind::Linearizable;
                self.node
                    .raft
                    .read_barrier(group, kind)
                    .await
                    .map_err(status::from_raft)?;
                ReadConsistency::Linearizable
            }
            ReadConsistency::Lease => {
                self.node
                    .raft
                    .read_barrier(group, ReadKind::Lease)
                    .await
                    .map_err(status::from_raft)?;
                ReadConsistency::Lease
            }
            ReadConsistency::Stale => ReadConsistency::Stale,
        };
        let node = self.node.clone();
        let (output, applied_index) =
            tokio::task::spawn_blocking(move || node.raft.query(group, &req.request))
                .await
                .map_err(|e| Status::internal(format!("query task failed: {e}")))?
                .map_err(status::from_raft)?;
        Ok(Response::new(QueryResponse {
            output,
            served: served as i32,
            applied_index,
        }))
    }
}
