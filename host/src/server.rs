//! Wiring: opens the fjall store and the plugin runtime, settles this node's identity
//! (bootstrap a new cluster, join a running one, or resume from the data dir), starts
//! the raft core with the gRPC transport, reloads plugins and replicas, serves every
//! gRPC service on one port, keeps the address book and the node's meta record fresh,
//! and shuts down in order on a signal: stop accepting, stop the raft loops, sync.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

use crate::api::Node;
use crate::api::admin::AdminService;
use crate::api::client::ClientService;
use crate::api::cluster::ClusterService;
use crate::api::peers::AddrBook;
use crate::api::wiring::{Blobs, LateInbound};
use crate::ids::{GroupId, NODE_ID_MAX, NodeId, PeerId};
use crate::limits;
use crate::metrics::NodeMetrics;
use crate::placement::{HostDispatch, META_GROUP, META_PLUGIN, MetaCommand};
use crate::plugin::PluginRuntime;
use crate::proto::v1::admin_server::AdminServer;
use crate::proto::v1::client_server::ClientServer;
use crate::proto::v1::cluster_client::ClusterClient;
use crate::proto::v1::cluster_server::ClusterServer;
use crate::proto::v1::{JoinClusterRequest, StartReplicaRequest};
use crate::raftstore::traits::ApplyStore as _;
use crate::raftstore::{FatalHandler, PeerSpec, RaftStore, StoreDeps, SystemClock};
use crate::storage::Store;
use crate::transport::{GrpcTransport, TransportService};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot open the data dir: {0}")]
    Storage(String),
    #[error("cannot start the plugin runtime: {0}")]
    Plugin(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("bad cluster configuration: {0}")]
    Config(String),
    #[error("cannot join the cluster at {addr}: {why}")]
    Join { addr: String, why: String },
    #[error("cannot start: {0}")]
    Start(String),
    #[error("gRPC server failed: {0}")]
    Serve(String),
}

/// How long a stopping node waits for open requests and streams to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How to run a node.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// This node's id (1..=65535). Defaults to 1 for a lone node.
    pub id: Option<u64>,
    /// `id=host:port` of every founding node, this one included: bootstrap a cluster.
    pub initial_cluster: Vec<(u64, String)>,
    /// The address of any node of a running cluster to join.
    pub join: Option<String>,
    /// Run a consistency check of every group this node leads this often.
    pub check_interval: Option<Duration>,
    /// Where to serve Prometheus metrics over HTTP (`GET /metrics`); none if `None`.
    pub metrics_listen: Option<SocketAddr>,
    /// fjall flush and compaction threads ([`crate::limits::STORAGE_THREADS_DEFAULT`]).
    pub storage_threads: usize,
}

/// What a node settles once and keeps in `identity.json` in its data dir: a node that
/// finds one resumes and never bootstraps or joins again.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Identity {
    node_id: u64,
    addr: String,
    /// Nodes hosting the meta group.
    meta_nodes: Vec<u64>,
    /// Addresses known at bootstrap or join.
    peers: Vec<(u64, String)>,
}

fn read_identity(dir: &Path) -> Result<Option<Identity>, ServerError> {
    let path = dir.join("identity.json");
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| ServerError::Storage(format!("{} is corrupt: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ServerError::Storage(format!("{}: {e}", path.display()))),
    }
}

fn write_identity(dir: &Path, id: &Identity) -> Result<(), ServerError> {
    let io = |e: std::io::Error| ServerError::Storage(format!("writing identity: {e}"));
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = dir.join("identity.json.tmp");
    let bytes = serde_json::to_vec_pretty(id).map_err(|e| ServerError::Storage(e.to_string()))?;
    {
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        std::io::Write::write_all(&mut f, &bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, dir.join("identity.json")).map_err(io)
}

/// The meta group lives on 5 nodes of a cluster of 5 or more, else on 3, else on all.
fn meta_nodes_of(ids: &[u64]) -> Vec<u64> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    let n = match ids.len() {
        n if n >= 5 => 5,
        n if n >= 3 => 3,
        n => n,
    };
    ids.truncate(n);
    ids
}

async fn settle_identity(
    config: &ServerConfig,
    advertise: &str,
) -> Result<(Identity, bool), ServerError> {
    if let Some(id) = read_identity(&config.data_dir)? {
        if config.id.is_some_and(|want| want != id.node_id) {
            return Err(ServerError::Config(format!(
                "the data dir belongs to node {}, not node {}",
                id.node_id,
                config.id.unwrap_or(0)
            )));
        }
        return Ok((id, false));
    }
    let node_id = config.id.unwrap_or(1);
    if node_id == 0 || node_id > NODE_ID_MAX {
        return Err(ServerError::Config(format!(
            "--id {node_id} is out of range 1..={NODE_ID_MAX}"
        )));
    }
    let identity = if let Some(join) = &config.join {
        if config.id.is_none() {
            return Err(ServerError::Config(
                "--join needs --id N (a new node id)".into(),
            ));
        }
        let resp = join_cluster(join, node_id, advertise).await?;
        Identity {
            node_id,
            addr: advertise.to_string(),
            meta_nodes: resp.meta_nodes,
            peers: resp
                .nodes
                .into_iter()
                .map(|n| (n.node_id, n.addr))
                .collect(),
        }
    } else if config.initial_cluster.is_empty() {
        Identity {
            node_id,
            addr: advertise.to_string(),
            meta_nodes: vec![node_id],
            peers: vec![(node_id, advertise.to_string())],
        }
    } else {
        let ids: Vec<u64> = config.initial_cluster.iter().map(|(i, _)| *i).collect();
        if !ids.contains(&node_id) {
            return Err(ServerError::Config(format!(
                "--initial-cluster does not list this node ({node_id})"
            )));
        }
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        if unique.len() != ids.len() {
            return Err(ServerError::Config(
                "--initial-cluster lists a node id twice".into(),
            ));
        }
        Identity {
            node_id,
            addr: advertise.to_string(),
            meta_nodes: meta_nodes_of(&ids),
            peers: config.initial_cluster.clone(),
        }
    };
    write_identity(&config.data_dir, &identity)?;
    Ok((identity, config.join.is_none()))
}

async fn join_cluster(
    addr: &str,
    node_id: u64,
    advertise: &str,
) -> Result<crate::proto::v1::JoinClusterResponse, ServerError> {
    let mut last = String::new();
    for _ in 0..100 {
        let attempt = async {
            let mut c = ClusterClient::connect(format!("http://{addr}"))
                .await
                .map_err(|e| e.to_string())?;
            c.join_cluster(JoinClusterRequest {
                node_id,
                addr: advertise.to_string(),
            })
            .await
            .map(|r| r.into_inner())
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
        };
        match attempt.await {
            Ok(r) => return Ok(r),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Err(ServerError::Join {
        addr: addr.to_string(),
        why: last,
    })
}

/// A node that has recovered its state and is ready to serve.
pub struct Server {
    node: Arc<Node>,
    check_interval: Option<Duration>,
    threads: crate::raftstore::StoreThreads,
    listener: TcpListener,
    transport_service: TransportService,
    metrics: Arc<NodeMetrics>,
    metrics_listener: Option<TcpListener>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").finish_non_exhaustive()
    }
}

impl Server {
    /// Opens storage, settles the identity, recovers plugins and replicas, binds the port.
    pub async fn start(config: &ServerConfig) -> Result<Self, ServerError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Listen {
                    addr: config.listen,
                    source,
                })?;
        let advertise = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| config.listen.to_string());
        let metrics_listener = match config.metrics_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServerError::Listen { addr, source })?,
            ),
            None => None,
        };
        let mut metrics = NodeMetrics::new();
        let workers = tokio::runtime::Handle::current().metrics().num_workers();
        metrics
            .runtime_workers
            .set(i64::try_from(workers).unwrap_or(i64::MAX));
        let store = Store::open_with(&config.data_dir.join("db"), config.storage_threads)
            .map_err(|e| ServerError::Storage(e.to_string()))?;
        let plugins = Arc::new(
            PluginRuntime::new(config.data_dir.join("compiled"))
                .map_err(|e| ServerError::Plugin(e.to_string()))?
                .with_metrics(metrics.plugin.clone()),
        );
        let (identity, fresh) = settle_identity(config, &advertise).await?;
        let me = NodeId(identity.node_id);
        let book = Arc::new(AddrBook::default());
        for (id, addr) in &identity.peers {
            book.set(NodeId(*id), addr.clone());
        }
        book.set(me, advertise.clone());
        let fatal: FatalHandler = Arc::new(|why: &str| {
            tracing::error!("fatal: {why}; stopping the node (fail-stop)");
            eprintln!("flotilla: fatal: {why}; stopping the node");
            std::process::exit(70);
        });
        let inbound = Arc::new(LateInbound::default());
        let transport = GrpcTransport::new(
            me,
            book.clone(),
            inbound.clone(),
            store.snap_dir().clone(),
            tokio::runtime::Handle::current(),
        );
        let sent_stats = transport.stats();
        let (raft, threads) = RaftStore::start(StoreDeps {
            log: Arc::new(store.clone()),
            apply: Arc::new(store.clone()),
            fsm: Arc::new(HostDispatch::new(plugins.clone())),
            clock: Arc::new(SystemClock),
            fatal,
            node: me,
            transport,
            metrics: metrics.raft.clone(),
        })
        .map_err(|e| ServerError::Start(e.to_string()))?;
        let _ = inbound.0.set(raft.clone());
        let transport_service = TransportService::new(
            me,
            Arc::new(raft.clone()),
            store.snap_dir().clone(),
            Arc::new(Blobs {
                store: store.clone(),
                runtime: plugins.clone(),
            }),
            book.clone(),
        );
        metrics.add_transport(sent_stats, transport_service.stats());
        let node = Node::new(
            raft,
            store.clone(),
            plugins.clone(),
            me,
            advertise,
            identity.meta_nodes.iter().copied().map(NodeId).collect(),
            book,
        );
        let node = Arc::new(node.with_metrics(metrics.ops.clone()));
        recover(&node, &store, &plugins, &identity, fresh).await?;
        Ok(Self {
            node,
            check_interval: config.check_interval,
            threads,
            listener,
            transport_service,
            metrics: Arc::new(metrics),
            metrics_listener,
        })
    }

    /// Where `GET /metrics` is served, if it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// The node's metrics registry.
    pub fn metrics(&self) -> Arc<NodeMetrics> {
        self.metrics.clone()
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    pub fn node(&self) -> Arc<Node> {
        self.node.clone()
    }

    /// Serves until `shutdown` completes, then stops the raft loops and syncs.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), ServerError> {
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter.set_serving::<ClientServer<ClientService>>().await;
        reporter.set_serving::<AdminServer<AdminService>>().await;
        let client = ClientServer::new(ClientService {
            node: self.node.clone(),
        })
        .max_decoding_message_size(limits::GRPC_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(limits::GRPC_MESSAGE_BYTES_MAX);
        let admin = AdminServer::new(AdminService {
            node: self.node.clone(),
        })
        .max_decoding_message_size(limits::GRPC_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(limits::GRPC_MESSAGE_BYTES_MAX);
        let cluster = ClusterServer::new(ClusterService {
            node: self.node.clone(),
        })
        .max_decoding_message_size(limits::GRPC_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(limits::GRPC_MESSAGE_BYTES_MAX);
        let background = tokio::spawn(keep_fresh(self.node.clone()));
        let liveness = tokio::spawn(crate::api::liveness::watch(self.node.clone()));
        let checks = self
            .check_interval
            .map(|every| tokio::spawn(periodic_checks(self.node.clone(), every)));
        let metrics_http = self.metrics_listener.map(|listener| {
            tokio::spawn(crate::metrics::http::serve(listener, self.metrics.clone()))
        });
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let serving = tonic::transport::Server::builder()
            .concurrency_limit_per_connection(1024)
            .add_service(health)
            .add_service(client)
            .add_service(admin)
            .add_service(cluster)
            .add_service(self.transport_service.service())
            .serve_with_incoming_shutdown(
                // No Nagle: small responses must not wait for the peer's delayed ACK.
                TcpIncoming::from(self.listener).with_nodelay(Some(true)),
                async {
                    let _ = stop_rx.await;
                },
            );
        tokio::pin!(serving);
        // Other nodes keep long-lived raft streams open; a graceful stop waits for
        // in-flight requests a bounded time, not for those streams to end.
        let result = tokio::select! {
            r = &mut serving => r,
            () = async {
                shutdown.await;
                let _ = stop_tx.send(());
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } => {
                tracing::info!("connections still open after {SHUTDOWN_GRACE:?}; closing them");
                Ok(())
            }
        };
        background.abort();
        liveness.abort();
        if let Some(c) = checks {
            c.abort();
        }
        if let Some(task) = metrics_http {
            task.abort();
        }
        tracing::info!("stopping the raft loops");
        self.node.raft.shutdown();
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || threads.join()).await;
        if let Err(e) = self.node.store.sync() {
            tracing::error!("final sync failed: {e}");
        }
        result.map_err(|e| ServerError::Serve(e.to_string()))
    }
}

/// Seconds between two address-book refreshes from the meta group (a joining node is
/// reachable from the others within this time).
const ADDRESS_REFRESH_SECS: u64 = 5;
/// Seconds between two sweeps for replicas the meta group no longer places here.
const GC_EVERY_SECS: u64 = 15;

/// Registers this node in the meta group (idempotent) and keeps the address book in
/// step with it; removes local replicas the meta group no longer places here.
async fn keep_fresh(node: Arc<Node>) {
    let mut registered = false;
    let mut round = 0u64;
    loop {
        if !registered {
            match node
                .meta_cmd(&MetaCommand::RegisterNode {
                    node: node.id,
                    addr: node.addr.clone(),
                })
                .await
            {
                Ok(_) => {
                    registered = true;
                    tracing::info!(node = node.id.0, addr = %node.addr, "registered in the meta group");
                }
                Err(e) => tracing::debug!("registration pending: {}", e.message()),
            }
        }
        // Every query scans the meta group's records; with ten thousand idle groups
        // polling each second was most of an idle node's CPU.
        let refresh = !registered || round.is_multiple_of(ADDRESS_REFRESH_SECS);
        if refresh && let Ok(nodes) = node.nodes().await {
            for n in nodes {
                if n.id != node.id {
                    node.book.set(n.id, n.addr);
                }
            }
        }
        if !registered {
            // Until registered, retry soon (not once a second): the meta group refuses
            // to record a plugin on a node it does not know, so a deploy that reaches
            // this node before its registration fails with "node N is not registered".
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        round += 1;
        if round.is_multiple_of(GC_EVERY_SECS) {
            collect_garbage(&node).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Every `every`, checks the consistency of each group this node leads, one group at
/// a time (the same check as `flotilla group check`: a digest entry through the log,
/// every replica's hash compared; a mismatch is logged as REPLICA DIVERGENCE and shown
/// by `group status`).
async fn periodic_checks(node: Arc<Node>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        for g in node.raft.groups() {
            if g == META_GROUP {
                continue;
            }
            let leads = node
                .raft
                .status(g)
                .await
                .is_ok_and(|st| st.role == "Leader");
            if !leads {
                continue;
            }
            match node.check_group(g).await {
                Ok(r) if r.consistent => {
                    tracing::debug!(group = g.0, index = r.index, "periodic check: consistent")
                }
                Ok(_) => {} // check_group has raised the alarm
                Err(e) => tracing::warn!(group = g.0, "periodic check failed: {}", e.message()),
            }
        }
    }
}

/// Destroys local replicas whose group the meta group deleted or moved away. The
/// placement is read a page of groups at a time (not one query per replica: with ten
/// thousand idle groups that was most of a node's CPU), after listing the local
/// replicas, so a replica started meanwhile is never mistaken for garbage.
async fn collect_garbage(node: &Node) {
    use crate::placement::{MetaOutput, MetaQuery};
    let local = node.raft.groups();
    let mut placed = std::collections::HashSet::new();
    let mut start_after = None;
    loop {
        let page = node
            .meta_query(&MetaQuery::GroupsOnNode {
                node: node.id,
                start_after,
                limit: Some(crate::placement::meta_fsm::GROUPS_PAGE_MAX),
            })
            .await;
        match page {
            Ok(MetaOutput::Groups {
                groups,
                next_start_after,
            }) => {
                placed.extend(groups.iter().map(|g| g.id));
                match next_start_after {
                    Some(next) => start_after = Some(next),
                    None => break,
                }
            }
            // No complete picture, no verdict: try again next round.
            _ => return,
        }
    }
    for g in local {
        if g == META_GROUP || placed.contains(&g) {
            continue;
        }
        tracing::info!(
            group = g.0,
            "the meta group no longer places a replica of this group here; destroying it"
        );
        let _ = node.destroy_replica(g).await;
    }
}

/// Loads every stored plugin (from the compile cache when possible), starts the meta
/// replica if this node hosts one, and restarts every replica recorded here.
async fn recover(
    node: &Arc<Node>,
    store: &Store,
    plugins: &Arc<PluginRuntime>,
    identity: &Identity,
    fresh: bool,
) -> Result<(), ServerError> {
    let started = std::time::Instant::now();
    for digest in store
        .plugin_digests()
        .map_err(|e| ServerError::Storage(e.to_string()))?
    {
        let bytes = store
            .plugin_bytes(digest)
            .map_err(|e| ServerError::Storage(e.to_string()))?
            .ok_or_else(|| ServerError::Start(format!("plugin {digest} has no stored bytes")))?;
        let runtime = plugins.clone();
        let outcome = tokio::task::spawn_blocking(move || runtime.load(digest, &bytes))
            .await
            .map_err(|e| ServerError::Start(e.to_string()))?
            .map_err(|e| ServerError::Plugin(format!("{digest}: {e}")))?;
        tracing::info!(%digest, ?outcome, "plugin loaded");
    }
    if identity.meta_nodes.contains(&identity.node_id) {
        let voters: Vec<PeerId> = identity
            .meta_nodes
            .iter()
            .map(|n| PeerId::compose(0, NodeId(*n)))
            .collect();
        let first = identity.meta_nodes.iter().min().copied() == Some(identity.node_id);
        node.raft
            .start_peer(PeerSpec {
                group: META_GROUP,
                peer: PeerId::compose(0, node.id),
                voters,
                plugin: META_PLUGIN,
                campaign: fresh && first,
            })
            .await
            .map_err(|e| ServerError::Start(format!("meta group: {e}")))?;
    }
    let groups = store
        .list_groups()
        .map_err(|e| ServerError::Storage(e.to_string()))?;
    for record in &groups {
        if record.group_id == META_GROUP.0 {
            continue;
        }
        let digest = match store
            .apply_state(GroupId(record.group_id))
            .map_err(|e| ServerError::Storage(e.to_string()))?
        {
            Some(s) => s.plugin,
            None => {
                crate::ids::PluginDigest::from_hex(&record.initial_plugin).ok_or_else(|| {
                    ServerError::Storage(format!(
                        "group {} has a corrupt plugin digest",
                        record.group_id
                    ))
                })?
            }
        };
        let req = StartReplicaRequest {
            group_id: record.group_id,
            peer_id: record.peer_id,
            voters: record.voters.clone(),
            plugin_digest: digest.0.to_vec(),
            campaign: false,
            plugin_holders: Vec::new(),
        };
        if let Err(e) = node.start_replica(&req).await {
            tracing::warn!(
                group = record.group_id,
                "replica not restarted: {}",
                e.message()
            );
        }
    }
    tracing::info!(
        node = identity.node_id,
        groups = groups.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "recovered"
    );
    Ok(())
}
