//! [`Node`]: what the gRPC services share — the raft store, the fjall store (local
//! plugin blobs and replica records), the plugin runtime, this node's identity and the
//! ways to reach the meta group and other nodes — plus the operations on this node's
//! own replicas. Cluster-wide operations live in [`super::ops`], routing to leaders in
//! [`super::route`].

use std::sync::Arc;

use tokio_stream::StreamExt as _;
use tonic::Status;

use super::peers::{AddrBook, Channels};
use super::status;
use crate::ids::{GroupId, NodeId, PeerId, PluginDigest};
use crate::placement::{META_GROUP, MetaCommand, MetaOutput, MetaQuery};
use crate::plugin::PluginRuntime;
use crate::proto::v1::raft_transport_client::RaftTransportClient;
use crate::proto::v1::{FetchPluginRequest, StartReplicaRequest};
use crate::raftstore::{PeerSpec, RaftError, RaftStore, ReadKind};
use crate::storage::Store;
use crate::storage::meta::{GroupRecord as LocalGroup, PluginRecord as LocalPlugin};

pub struct Node {
    pub raft: RaftStore,
    pub store: Store,
    pub plugins: Arc<PluginRuntime>,
    pub id: NodeId,
    /// The address other nodes and clients reach this node at.
    pub addr: String,
    /// The nodes that host the meta group's replicas.
    pub meta_nodes: Vec<NodeId>,
    pub book: Arc<AddrBook>,
    pub channels: Channels,
    /// Serializes deploys on this node.
    deploy_lock: tokio::sync::Mutex<()>,
    /// The last consistency check of each group run through this node.
    pub last_checks: parking_lot::Mutex<std::collections::HashMap<GroupId, String>>,
    /// Counters of the operations this node runs (consistency checks).
    pub metrics: crate::metrics::OpsMetrics,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Attempts a meta request makes (following leader hints, waiting out elections).
const META_ATTEMPTS: usize = 60;
const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

impl Node {
    pub fn new(
        raft: RaftStore,
        store: Store,
        plugins: Arc<PluginRuntime>,
        id: NodeId,
        addr: String,
        meta_nodes: Vec<NodeId>,
        book: Arc<AddrBook>,
    ) -> Self {
        Self {
            raft,
            store,
            plugins,
            id,
            addr,
            meta_nodes,
            book,
            channels: Channels::default(),
            deploy_lock: tokio::sync::Mutex::new(()),
            last_checks: Default::default(),
            metrics: Default::default(),
        }
    }

    /// Counts into `metrics` (the node's registry) instead of handles registered nowhere.
    pub fn with_metrics(mut self, metrics: crate::metrics::OpsMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn hosts(&self, group: GroupId) -> bool {
        self.raft.applied(group).is_some()
    }

    // ---- the meta group -----------------------------------------------------------

    /// Runs a meta command or query on this node's meta replica only; a follower answers
    /// NOT_LEADER with the leader's peer id (which names its node).
    pub async fn meta_local(&self, body: Vec<u8>, query: bool) -> Result<Vec<u8>, RaftError> {
        if !self.hosts(META_GROUP) {
            return Err(RaftError::GroupNotFound(META_GROUP));
        }
        if query {
            self.raft
                .read_query(META_GROUP, ReadKind::Linearizable, body)
                .await
                .map(|(out, _)| out)
        } else {
            self.raft
                .propose(META_GROUP, body, String::new())
                .await
                .map(|p| p.output)
        }
    }

    async fn meta_raw(&self, body: Vec<u8>, query: bool) -> Result<Vec<u8>, Status> {
        let mut target: Option<NodeId> = None;
        let mut last = Status::unavailable("the meta group has no reachable leader");
        for attempt in 0..META_ATTEMPTS {
            let t = target.unwrap_or_else(|| {
                if self.meta_nodes.contains(&self.id) && attempt % 2 == 0 {
                    self.id
                } else {
                    self.meta_nodes[attempt % self.meta_nodes.len().max(1)]
                }
            });
            target = None;
            if t == self.id {
                match self.meta_local(body.clone(), query).await {
                    Ok(out) => return Ok(out),
                    Err(RaftError::NotLeader {
                        leader: Some(p), ..
                    }) if p.node() != self.id => {
                        target = Some(p.node());
                        continue;
                    }
                    Err(e @ (RaftError::NotLeader { .. } | RaftError::GroupNotFound(_))) => {
                        last = status::from_raft(e);
                    }
                    Err(e @ (RaftError::Busy { .. } | RaftError::Stopped)) => {
                        last = status::from_raft(e);
                    }
                    Err(e) => return Err(status::from_raft(e)),
                }
            } else {
                let channel = match self.channels.get(t, &self.book) {
                    Ok(c) => c,
                    Err(s) => {
                        last = s;
                        tokio::time::sleep(RETRY_PAUSE).await;
                        continue;
                    }
                };
                let mut client = crate::proto::v1::cluster_client::ClusterClient::new(channel);
                match client
                    .meta(crate::proto::v1::MetaRequest {
                        body: body.clone(),
                        query,
                    })
                    .await
                {
                    Ok(r) => return Ok(r.into_inner().output),
                    Err(s) if super::route::retryable(&s) => {
                        if let Some(hint) = super::route::leader_hint(&s)
                            && hint.node() != t
                        {
                            target = Some(hint.node());
                            continue;
                        }
                        last = s;
                    }
                    Err(s) => return Err(s),
                }
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        Err(last)
    }

    pub async fn meta_cmd(&self, cmd: &MetaCommand) -> Result<MetaOutput, Status> {
        let out = self
            .meta_raw(cmd.encode(), false)
            .await
            .map_err(not_found)?;
        MetaOutput::decode(&out).map_err(|e| Status::internal(e.to_string()))
    }

    pub async fn meta_query(&self, q: &MetaQuery) -> Result<MetaOutput, Status> {
        let out = self.meta_raw(q.encode(), true).await.map_err(not_found)?;
        MetaOutput::decode(&out).map_err(|e| Status::internal(e.to_string()))
    }

    // ---- plugins ------------------------------------------------------------------

    /// "name@version" for a digest when the meta group knows it.
    pub async fn plugin_label(&self, digest: PluginDigest) -> String {
        match self
            .meta_query(&MetaQuery::ResolvePlugin {
                spec: digest.to_string(),
            })
            .await
        {
            Ok(MetaOutput::Plugin { plugin }) => plugin.spec(),
            _ => digest.to_string(),
        }
    }

    /// Resolves "name", "name@version" or "sha256:<hex>" through the meta group.
    pub async fn resolve_plugin(
        &self,
        spec: &str,
    ) -> Result<crate::placement::PluginRecord, Status> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err(Status::invalid_argument(
                "a plugin name is required (like kv or kv@2)",
            ));
        }
        match self
            .meta_query(&MetaQuery::ResolvePlugin {
                spec: spec.to_string(),
            })
            .await?
        {
            MetaOutput::Plugin { plugin } => Ok(plugin),
            other => Err(Status::internal(format!(
                "unexpected meta answer {other:?}"
            ))),
        }
    }

    /// Validates, compiles and stores plugin bytes on this node (no meta record).
    pub async fn install_blob(
        &self,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<(PluginDigest, bool), Status> {
        let runtime = self.plugins.clone();
        let (validated, bytes) = tokio::task::spawn_blocking(move || {
            let v = runtime.validate_deploy(&bytes);
            let v = v.and_then(|v| runtime.load(v.digest, &bytes).map(|_| v));
            (v, bytes)
        })
        .await
        .map_err(|e| Status::internal(format!("deploy task failed: {e}")))?;
        let validated = validated.map_err(status::from_plugin)?;
        let record = LocalPlugin {
            name: name.to_string(),
            version: 0,
            digest: validated.digest.to_hex(),
            size_bytes: bytes.len() as u64,
            stateful: validated.stateful,
            deployed_at_ms: now_ms(),
        };
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.put_plugin(&record, &bytes))
            .await
            .map_err(|e| Status::internal(format!("store task failed: {e}")))?
            .map_err(status::from_store)?;
        Ok((validated.digest, validated.stateful))
    }

    /// Deploys a plugin: stored and compiled here, versioned by the meta group.
    pub async fn deploy(
        &self,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<(crate::placement::PluginRecord, bool), Status> {
        validate_name(name)?;
        let _guard = self.deploy_lock.lock().await;
        let size = bytes.len() as u64;
        let (digest, stateful) = self.install_blob(name, bytes).await?;
        match self
            .meta_cmd(&MetaCommand::DeployPlugin {
                name: name.to_string(),
                digest,
                size_bytes: size,
                stateful,
                holder_node: self.id,
            })
            .await?
        {
            MetaOutput::Deployed {
                plugin,
                already_present,
            } => Ok((plugin, already_present)),
            other => Err(Status::internal(format!(
                "unexpected meta answer {other:?}"
            ))),
        }
    }

    /// Makes sure `digest` is compiled here, fetching its bytes from a holder if needed.
    pub async fn ensure_plugin(
        &self,
        digest: PluginDigest,
        holders: &[NodeId],
    ) -> Result<(), Status> {
        if self.plugins.is_loaded(digest) {
            return Ok(());
        }
        if let Some(bytes) = self
            .store
            .plugin_bytes(digest)
            .map_err(status::from_store)?
        {
            let runtime = self.plugins.clone();
            return tokio::task::spawn_blocking(move || runtime.load(digest, &bytes).map(|_| ()))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(status::from_plugin);
        }
        let mut last = Status::not_found(format!("no node holds plugin {digest}"));
        for &holder in holders.iter().filter(|h| **h != self.id) {
            match self.fetch_plugin(holder, digest).await {
                Ok(bytes) => {
                    self.install_blob("fetched", bytes).await?;
                    let _ = self
                        .meta_cmd(&MetaCommand::AddPluginHolder {
                            digest,
                            node: self.id,
                        })
                        .await;
                    tracing::info!(%digest, from = holder.0, "plugin fetched");
                    return Ok(());
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn fetch_plugin(&self, from: NodeId, digest: PluginDigest) -> Result<Vec<u8>, Status> {
        let channel = self.channels.get(from, &self.book)?;
        let mut client = RaftTransportClient::new(channel)
            .max_decoding_message_size(crate::limits::GRPC_MESSAGE_BYTES_MAX);
        let mut stream = client
            .fetch_plugin(FetchPluginRequest {
                digest: digest.0.to_vec(),
            })
            .await?
            .into_inner();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if bytes.len() + chunk.data.len() > crate::limits::PLUGIN_SIZE_BYTES_MAX {
                return Err(Status::invalid_argument("fetched plugin is too large"));
            }
            bytes.extend_from_slice(&chunk.data);
        }
        if PluginDigest::of(&bytes) != digest {
            return Err(Status::data_loss(format!(
                "node {from} sent bytes that do not hash to {digest}"
            )));
        }
        Ok(bytes)
    }

    // ---- this node's replicas -----------------------------------------------------

    /// Starts (or restarts) a replica on this node. Idempotent.
    pub async fn start_replica(&self, req: &StartReplicaRequest) -> Result<(), Status> {
        let group = GroupId(req.group_id);
        let digest = PluginDigest::from_slice(&req.plugin_digest)
            .ok_or_else(|| Status::invalid_argument("plugin_digest must be 32 bytes"))?;
        let holders: Vec<NodeId> = req.plugin_holders.iter().copied().map(NodeId).collect();
        self.ensure_plugin(digest, &holders).await?;
        let record = LocalGroup {
            group_id: group.0,
            peer_id: req.peer_id,
            voters: req.voters.clone(),
            initial_plugin: digest.to_hex(),
            created_at_ms: now_ms(),
        };
        self.store.put_group(&record).map_err(status::from_store)?;
        match self
            .raft
            .start_peer(PeerSpec {
                group,
                peer: PeerId(req.peer_id),
                voters: req.voters.iter().copied().map(PeerId).collect(),
                plugin: digest,
                campaign: req.campaign,
            })
            .await
        {
            Ok(()) | Err(RaftError::GroupExists(_)) => Ok(()),
            Err(e) => Err(status::from_raft(e)),
        }
    }

    /// Removes this node's replica of `group` and its data.
    pub async fn destroy_replica(&self, group: GroupId) -> Result<(), Status> {
        match self.raft.destroy(group).await {
            Ok(()) | Err(RaftError::GroupNotFound(_)) => {}
            Err(e) => return Err(status::from_raft(e)),
        }
        self.store
            .remove_group_record(group)
            .map_err(status::from_store)
    }

    /// The group's plugin as this replica runs it.
    pub fn group_digest(&self, group: GroupId) -> Option<PluginDigest> {
        self.raft.applied(group).map(|s| s.plugin)
    }
}

/// The meta group refuses requests about missing things as "rejected"; to a client
/// they are NOT_FOUND (an unknown group, plugin, node or peer).
fn not_found(s: Status) -> Status {
    let m = s.message();
    let missing = m.contains("does not exist")
        || m.contains("is not deployed")
        || m.contains("is not registered")
        || m.contains(" has no peer ")
        || m.contains(" is deployed; deployed plugins");
    if s.code() == tonic::Code::FailedPrecondition && missing {
        Status::not_found(
            m.trim_start_matches("the plugin rejected the command: ")
                .to_string(),
        )
    } else {
        s
    }
}

pub fn validate_name(name: &str) -> Result<(), Status> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_lowercase();
    if ok {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "plugin name {name:?} is invalid: use 1-64 characters a-z, 0-9, '-' or '_', starting with a letter"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_names_are_checked() {
        assert!(validate_name("kv").is_ok());
        assert!(validate_name("my-kv_2").is_ok());
        for bad in ["", "KV", "2kv", "a b", "kv@2", &"x".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
