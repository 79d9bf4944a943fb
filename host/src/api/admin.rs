//! The admin service: deploy and list plugins; create, delete, list, inspect and upgrade
//! groups.

use std::sync::Arc;

use tokio_stream::StreamExt as _;
use tonic::{Request, Response, Status, Streaming};

use super::client::check_group;
use super::node::Node;
use super::status;
use crate::limits;
use crate::proto::v1::admin_server::Admin;
use crate::proto::v1::*;
use crate::storage::meta::PluginRecord;

#[derive(Debug)]
pub struct AdminService {
    pub node: Arc<Node>,
}

fn plugin_info(r: &PluginRecord) -> PluginInfo {
    PluginInfo {
        name: r.name.clone(),
        version: r.version,
        digest: format!("sha256:{}", r.digest),
        size_bytes: r.size_bytes,
        stateful: r.stateful,
        deployed_at_ms: r.deployed_at_ms,
    }
}

impl AdminService {
    fn group_info(&self, group: crate::ids::GroupId) -> Result<GroupInfo, Status> {
        let (plugin, digest) = self.node.group_plugin(group).ok_or_else(|| {
            Status::not_found(format!("group {group} does not exist on this node"))
        })?;
        Ok(GroupInfo {
            group_id: group.0,
            plugin,
            plugin_digest: digest.to_string(),
            peers: vec![group.0],
        })
    }
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn deploy_plugin(
        &self,
        request: Request<Streaming<DeployPluginChunk>>,
    ) -> Result<Response<DeployPluginResponse>, Status> {
        let mut stream = request.into_inner();
        let mut name = String::new();
        let mut declared = 0u64;
        let mut bytes = Vec::new();
        let mut first = true;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if first {
                name = chunk.name.clone();
                declared = chunk.total_size_bytes;
                if declared > limits::PLUGIN_SIZE_BYTES_MAX as u64 {
                    return Err(Status::invalid_argument(format!(
                        "plugin of {declared} bytes is over the limit of {} bytes",
                        limits::PLUGIN_SIZE_BYTES_MAX
                    )));
                }
                first = false;
            }
            if bytes.len() + chunk.data.len() > limits::PLUGIN_SIZE_BYTES_MAX {
                return Err(Status::invalid_argument(format!(
                    "plugin upload is over the limit of {} bytes",
                    limits::PLUGIN_SIZE_BYTES_MAX
                )));
            }
            bytes.extend_from_slice(&chunk.data);
        }
        if first {
            return Err(Status::invalid_argument(
                "the upload stream carried no chunk",
            ));
        }
        if declared != 0 && declared != bytes.len() as u64 {
            return Err(Status::invalid_argument(format!(
                "upload was cut short: {} of {declared} bytes arrived",
                bytes.len()
            )));
        }
        let (record, already_present) = self.node.deploy(&name, bytes).await?;
        tracing::info!(plugin = %record.name, version = record.version, digest = %record.digest, already_present, "plugin deployed");
        Ok(Response::new(DeployPluginResponse {
            plugin: Some(plugin_info(&record)),
            already_present,
        }))
    }

    async fn list_plugins(
        &self,
        _request: Request<ListPluginsRequest>,
    ) -> Result<Response<ListPluginsResponse>, Status> {
        let plugins = self.node.plugin_records().iter().map(plugin_info).collect();
        Ok(Response::new(ListPluginsResponse { plugins }))
    }

    async fn create_group(
        &self,
        request: Request<CreateGroupRequest>,
    ) -> Result<Response<CreateGroupResponse>, Status> {
        let record = self.node.create_group(&request.into_inner().plugin).await?;
        let group = self.group_info(record.group())?;
        Ok(Response::new(CreateGroupResponse { group: Some(group) }))
    }

    async fn delete_group(
        &self,
        request: Request<DeleteGroupRequest>,
    ) -> Result<Response<DeleteGroupResponse>, Status> {
        let group = check_group(request.into_inner().group_id)?;
        self.node
            .raft
            .destroy(group)
            .await
            .map_err(status::from_raft)?;
        Ok(Response::new(DeleteGroupResponse {}))
    }

    async fn list_groups(
        &self,
        request: Request<ListGroupsRequest>,
    ) -> Result<Response<ListGroupsResponse>, Status> {
        let req = request.into_inner();
        let limit = match req.limit {
            0 => 1000,
            n => n.min(10_000) as usize,
        };
        let groups = self
            .node
            .raft
            .groups()
            .into_iter()
            .filter(|g| g.0 > req.start_after)
            .take(limit)
            .filter_map(|g| self.group_info(g).ok())
            .collect();
        Ok(Response::new(ListGroupsResponse { groups }))
    }

    async fn group_status(
        &self,
        request: Request<GroupStatusRequest>,
    ) -> Result<Response<GroupStatusResponse>, Status> {
        let group = check_group(request.into_inner().group_id)?;
        let st = self
            .node
            .raft
            .status(group)
            .await
            .map_err(status::from_raft)?;
        let applied = self.node.raft.applied(group);
        Ok(Response::new(GroupStatusResponse {
            group: Some(self.group_info(group)?),
            role: st.role,
            term: st.term,
            leader_peer_id: st.leader.map_or(0, |p| p.0),
            commit_index: st.commit_index,
            applied_index: applied.map_or(st.applied_index, |a| a.applied_index),
            first_index: st.first_index,
            last_index: st.last_index,
            pending_proposals: st.pending_proposals,
            applied_timestamp_ms: applied.map_or(0, |a| a.applied_timestamp_ms),
        }))
    }

    async fn upgrade_group(
        &self,
        request: Request<UpgradeGroupRequest>,
    ) -> Result<Response<UpgradeGroupResponse>, Status> {
        let req = request.into_inner();
        let group = check_group(req.group_id)?;
        let digest = self.node.resolve_plugin(&req.plugin)?;
        let index = self
            .node
            .raft
            .upgrade(group, digest)
            .await
            .map_err(status::from_raft)?;
        Ok(Response::new(UpgradeGroupResponse {
            index,
            group: Some(self.group_info(group)?),
        }))
    }
}
