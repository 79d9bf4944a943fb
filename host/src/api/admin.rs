//! The admin service: deploy and list plugins; create, delete, list, inspect and upgrade
//! groups, and set their storage quotas.

use std::sync::Arc;

use tokio_stream::StreamExt as _;
use tonic::{Request, Response, Status, Streaming};

use super::client::check_group;
use super::node::Node;
use super::route;
use crate::ids::GroupId;
use crate::limits;
use crate::placement::{
    GroupRecord as MetaGroup, MetaCommand, MetaOutput, MetaQuery, PluginRecord as MetaPlugin,
};
use crate::proto::v1::admin_client::AdminClient;
use crate::proto::v1::admin_server::Admin;
use crate::proto::v1::*;
use crate::raftstore::RaftError;
use crate::raftstore::quota::Quota;

#[derive(Debug)]
pub struct AdminService {
    pub node: Arc<Node>,
}

fn plugin_info(r: &MetaPlugin) -> PluginInfo {
    PluginInfo {
        name: r.name.clone(),
        version: r.version,
        digest: r.digest.to_string(),
        size_bytes: r.size_bytes,
        stateful: r.stateful,
        deployed_at_ms: r.deployed_at_ms,
    }
}

/// How many groups one `ListGroups` call returns by default and at most.
const LIST_GROUPS_DEFAULT: u32 = 1000;

impl AdminService {
    async fn group_info(&self, g: &MetaGroup) -> GroupInfo {
        GroupInfo {
            group_id: g.id.0,
            plugin: self.node.plugin_label(g.plugin_digest).await,
            plugin_digest: g.plugin_digest.to_string(),
            peers: g.replicas.iter().map(|r| r.peer.0).collect(),
        }
    }

    /// Proposes `quota` on the group's leader (forwarded there if needed); returns the
    /// index it applies at.
    async fn set_quota(&self, group: GroupId, quota: Quota, fwd: bool) -> Result<u64, Status> {
        let node = &self.node;
        let req = SetGroupQuotaRequest {
            group_id: group.0,
            keys_max: quota.keys_max,
            bytes_max: quota.bytes_max,
        };
        let req = &req;
        node.on_leader(
            group,
            fwd,
            || Box::pin(async move { node.raft.set_quota(group, quota).await }),
            |ch| {
                Box::pin(async move {
                    Ok(AdminClient::new(ch)
                        .set_group_quota(route::forwarded(*req))
                        .await?
                        .into_inner()
                        .index)
                })
            },
        )
        .await
    }

    async fn meta_group(&self, group: GroupId) -> Result<MetaGroup, Status> {
        match self.node.meta_query(&MetaQuery::Group { group }).await? {
            MetaOutput::Group { group } => Ok(group),
            other => Err(Status::internal(format!(
                "unexpected meta answer {other:?}"
            ))),
        }
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
        let mut plugins = Vec::new();
        let mut start_after = None;
        loop {
            match self
                .node
                .meta_query(&MetaQuery::Plugins {
                    start_after: start_after.clone(),
                    limit: None,
                })
                .await?
            {
                MetaOutput::Plugins {
                    plugins: page,
                    next,
                } => {
                    plugins.extend(page.iter().map(plugin_info));
                    match next {
                        Some(n) if plugins.len() < 10_000 => start_after = Some(n),
                        _ => break,
                    }
                }
                other => {
                    return Err(Status::internal(format!(
                        "unexpected meta answer {other:?}"
                    )));
                }
            }
        }
        Ok(Response::new(ListPluginsResponse { plugins }))
    }

    async fn create_group(
        &self,
        request: Request<CreateGroupRequest>,
    ) -> Result<Response<CreateGroupResponse>, Status> {
        let req = request.into_inner();
        let max = crate::placement::meta_fsm::REPLICAS_MAX;
        if req.replicas > max {
            return Err(Status::invalid_argument(format!(
                "a group has 1..={max} replicas, not {}",
                req.replicas
            )));
        }
        let record = self.node.create_group(&req.plugin, req.replicas).await?;
        if req.quota_keys != 0 || req.quota_bytes != 0 {
            let quota = quota_or_default(req.quota_keys, req.quota_bytes);
            self.set_quota(record.id, quota, false).await.map_err(|e| {
                Status::new(
                    e.code(),
                    format!(
                        "group {} was created, but its quota was not set: {}; \
                         set it with `flotilla group set-quota {}`",
                        record.id,
                        e.message(),
                        record.id
                    ),
                )
            })?;
        }
        let group = self.group_info(&record).await;
        Ok(Response::new(CreateGroupResponse { group: Some(group) }))
    }

    async fn delete_group(
        &self,
        request: Request<DeleteGroupRequest>,
    ) -> Result<Response<DeleteGroupResponse>, Status> {
        let group = check_group(request.into_inner().group_id)?;
        self.node.delete_group(group).await?;
        Ok(Response::new(DeleteGroupResponse {}))
    }

    async fn list_groups(
        &self,
        request: Request<ListGroupsRequest>,
    ) -> Result<Response<ListGroupsResponse>, Status> {
        let req = request.into_inner();
        let want = match req.limit {
            0 => LIST_GROUPS_DEFAULT,
            n => n.min(10_000),
        } as usize;
        let mut start_after = (req.start_after > 0).then_some(GroupId(req.start_after));
        let mut groups = Vec::new();
        while groups.len() < want {
            let limit =
                ((want - groups.len()) as u32).min(crate::placement::meta_fsm::GROUPS_PAGE_MAX);
            match self
                .node
                .meta_query(&MetaQuery::Groups {
                    start_after,
                    limit: Some(limit),
                })
                .await?
            {
                MetaOutput::Groups {
                    groups: page,
                    next_start_after,
                } => {
                    for g in &page {
                        groups.push(self.group_info(g).await);
                    }
                    match next_start_after {
                        Some(n) => start_after = Some(n),
                        None => break,
                    }
                }
                other => {
                    return Err(Status::internal(format!(
                        "unexpected meta answer {other:?}"
                    )));
                }
            }
        }
        Ok(Response::new(ListGroupsResponse { groups }))
    }

    async fn group_status(
        &self,
        request: Request<GroupStatusRequest>,
    ) -> Result<Response<GroupStatusResponse>, Status> {
        let fwd = route::is_forwarded(&request);
        let req = request.into_inner();
        let group = check_group(req.group_id)?;
        let node = &self.node;
        let req = &req;
        let local = || -> route::BoxFut<'_, Result<GroupStatusResponse, RaftError>> {
            Box::pin(async move {
                let st = node.raft.status(group).await?;
                let applied = node.raft.applied(group);
                let raft = node.raft.clone();
                let account = tokio::task::spawn_blocking(move || raft.account(group))
                    .await
                    .map_err(|_| RaftError::Unanswered)??;
                Ok(GroupStatusResponse {
                    group: None,
                    role: st.role,
                    term: st.term,
                    leader_peer_id: st.leader.map_or(0, |p| p.0),
                    commit_index: st.commit_index,
                    applied_index: applied.map_or(st.applied_index, |a| a.applied_index),
                    first_index: st.first_index,
                    last_index: st.last_index,
                    pending_proposals: st.pending_proposals,
                    applied_timestamp_ms: applied.map_or(0, |a| a.applied_timestamp_ms),
                    node_id: node.id.0,
                    replicas: Vec::new(),
                    last_check: String::new(),
                    storage: Some(GroupStorage {
                        keys: account.usage.keys,
                        bytes: account.usage.bytes,
                        keys_max: account.quota.keys_max,
                        bytes_max: account.quota.bytes_max,
                    }),
                })
            })
        };
        let mut resp = if fwd {
            local().await.map_err(route::not_leader_status)?
        } else {
            // The leader knows the most; any replica will do if none answers as leader.
            match node
                .on_leader(
                    group,
                    false,
                    || {
                        Box::pin(async move {
                            let r = local().await?;
                            if r.role == "Leader" {
                                Ok(r)
                            } else {
                                Err(RaftError::NotLeader {
                                    group,
                                    leader: (r.leader_peer_id != 0)
                                        .then_some(crate::ids::PeerId(r.leader_peer_id)),
                                })
                            }
                        })
                    },
                    |ch| {
                        Box::pin(async move {
                            let r = AdminClient::new(ch)
                                .group_status(route::forwarded(*req))
                                .await?
                                .into_inner();
                            if r.role == "Leader" {
                                Ok(r)
                            } else {
                                let mut s = Status::unavailable("not the leader");
                                s.metadata_mut().insert(
                                    route::NOT_LEADER,
                                    tonic::metadata::MetadataValue::from_static("1"),
                                );
                                if let Ok(v) = r.leader_peer_id.to_string().parse() {
                                    s.metadata_mut().insert("leader-peer-id", v);
                                }
                                Err(s)
                            }
                        })
                    },
                )
                .await
            {
                Ok(r) => r,
                Err(e) if node.hosts(group) => {
                    tracing::debug!(group = group.0, "no leader answered: {e}");
                    local().await.map_err(crate::api::status::from_raft)?
                }
                Err(e) => return Err(e),
            }
        };
        if !fwd {
            resp.last_check = node
                .last_checks
                .lock()
                .get(&group)
                .cloned()
                .unwrap_or_default();
            let g = self.meta_group(group).await?;
            resp.group = Some(self.group_info(&g).await);
            resp.replicas = g
                .replicas
                .iter()
                .map(|r| ReplicaInfo {
                    peer_id: r.peer.0,
                    node_id: r.node.0,
                    learner: r.learner,
                })
                .collect();
        }
        Ok(Response::new(resp))
    }

    async fn upgrade_group(
        &self,
        request: Request<UpgradeGroupRequest>,
    ) -> Result<Response<UpgradeGroupResponse>, Status> {
        let fwd = route::is_forwarded(&request);
        let req = request.into_inner();
        let group = check_group(req.group_id)?;
        let plugin = self.node.resolve_plugin(&req.plugin).await?;
        let g = self.meta_group(group).await?;
        let holders: Vec<crate::ids::NodeId> = plugin.holders.clone();
        // Every replica needs the new code before the switch entry applies.
        for r in &g.replicas {
            self.node
                .ensure_plugin_on(r.node, plugin.digest, &holders)
                .await?;
        }
        let node = &self.node;
        let digest = plugin.digest;
        let req = &req;
        let index = node
            .on_leader(
                group,
                fwd,
                || Box::pin(async move { node.raft.upgrade(group, digest).await }),
                |ch| {
                    Box::pin(async move {
                        Ok(AdminClient::new(ch)
                            .upgrade_group(route::forwarded(req.clone()))
                            .await?
                            .into_inner()
                            .index)
                    })
                },
            )
            .await?;
        if !fwd {
            self.node
                .meta_cmd(&MetaCommand::SetGroupPlugin {
                    group,
                    plugin_digest: digest,
                })
                .await?;
        }
        let g = self.meta_group(group).await?;
        let mut info = self.group_info(&g).await;
        // The same bytes may be deployed under several names: the group runs the one
        // asked for, not whichever name the digest happens to resolve to first.
        info.plugin = plugin.spec();
        Ok(Response::new(UpgradeGroupResponse {
            index,
            group: Some(info),
        }))
    }

    async fn set_group_quota(
        &self,
        request: Request<SetGroupQuotaRequest>,
    ) -> Result<Response<SetGroupQuotaResponse>, Status> {
        let fwd = route::is_forwarded(&request);
        let req = request.into_inner();
        let group = check_group(req.group_id)?;
        let quota = quota_or_default(req.keys_max, req.bytes_max);
        let index = self.set_quota(group, quota, fwd).await?;
        Ok(Response::new(SetGroupQuotaResponse { index }))
    }
}

/// A quota from request fields, where 0 means the node's default.
fn quota_or_default(keys_max: u64, bytes_max: u64) -> Quota {
    let default = Quota::default();
    Quota {
        keys_max: if keys_max == 0 {
            default.keys_max
        } else {
            keys_max
        },
        bytes_max: if bytes_max == 0 {
            default.bytes_max
        } else {
            bytes_max
        },
    }
}
