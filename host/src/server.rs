//! Wiring: opens the fjall store and the plugin runtime, starts the raft core, reloads
//! deployed plugins and hosted groups, serves gRPC (client, admin, health) on one port,
//! and shuts down in order on a signal: stop accepting, stop the raft loops, sync.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

use crate::api::Node;
use crate::api::admin::AdminService;
use crate::api::client::ClientService;
use crate::limits;
use crate::plugin::PluginRuntime;
use crate::proto::v1::admin_server::AdminServer;
use crate::proto::v1::client_server::ClientServer;
use crate::raftstore::traits::ApplyStore;
use crate::raftstore::{FatalHandler, RaftStore, StoreDeps, SystemClock};
use crate::storage::Store;

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
    #[error("cannot start: {0}")]
    Start(String),
    #[error("gRPC server failed: {0}")]
    Serve(String),
}

/// How to run a node.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
}

/// A node that has recovered its state and is ready to serve.
pub struct Server {
    node: Arc<Node>,
    threads: crate::raftstore::StoreThreads,
    listener: TcpListener,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").finish_non_exhaustive()
    }
}

impl Server {
    /// Opens storage, recovers plugins and groups, and binds the port.
    pub async fn start(config: &ServerConfig) -> Result<Self, ServerError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Listen {
                    addr: config.listen,
                    source,
                })?;
        let store = Store::open(&config.data_dir.join("db"))
            .map_err(|e| ServerError::Storage(e.to_string()))?;
        let plugins = Arc::new(
            PluginRuntime::new(config.data_dir.join("compiled"))
                .map_err(|e| ServerError::Plugin(e.to_string()))?,
        );
        let fatal: FatalHandler = Arc::new(|why: &str| {
            tracing::error!("fatal: {why}; stopping the node (fail-stop)");
            eprintln!("flotilla: fatal: {why}; stopping the node");
            std::process::exit(70);
        });
        let (raft, threads) = RaftStore::start(StoreDeps {
            log: Arc::new(store.clone()),
            apply: Arc::new(store.clone()),
            fsm: plugins.clone(),
            clock: Arc::new(SystemClock),
            fatal,
            node: crate::ids::NodeId(1),
            transport: Arc::new(crate::raftstore::transport::NoTransport),
        })
        .map_err(|e| ServerError::Start(e.to_string()))?;
        let node = Arc::new(
            Node::new(raft, store.clone(), plugins.clone())
                .map_err(|e| ServerError::Start(e.message().to_string()))?,
        );
        recover(&node, &store, &plugins).await?;
        Ok(Self {
            node,
            threads,
            listener,
        })
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
        let result = tonic::transport::Server::builder()
            .concurrency_limit_per_connection(1024)
            .add_service(health)
            .add_service(client)
            .add_service(admin)
            .serve_with_incoming_shutdown(
                // No Nagle: small responses must not wait for the peer's delayed ACK.
                TcpIncoming::from(self.listener).with_nodelay(Some(true)),
                shutdown,
            )
            .await;
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

/// Loads every stored plugin (from the compile cache when possible) and restarts every
/// hosted group from its persisted state.
async fn recover(
    node: &Arc<Node>,
    store: &Store,
    plugins: &Arc<PluginRuntime>,
) -> Result<(), ServerError> {
    let started = std::time::Instant::now();
    for (digest, label) in node.deployed_digests() {
        let bytes = store
            .plugin_bytes(digest)
            .map_err(|e| ServerError::Storage(e.to_string()))?
            .ok_or_else(|| ServerError::Start(format!("plugin {label} has no stored bytes")))?;
        let runtime = plugins.clone();
        let outcome = tokio::task::spawn_blocking(move || runtime.load(digest, &bytes))
            .await
            .map_err(|e| ServerError::Start(e.to_string()))?
            .map_err(|e| ServerError::Plugin(format!("{label}: {e}")))?;
        tracing::info!(plugin = %label, ?outcome, "plugin loaded");
    }
    let groups = store
        .list_groups()
        .map_err(|e| ServerError::Storage(e.to_string()))?;
    for record in &groups {
        let digest = match store
            .apply_state(record.group())
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
        node.start_group(record, digest).await.map_err(|e| {
            ServerError::Start(format!("group {}: {}", record.group_id, e.message()))
        })?;
    }
    tracing::info!(
        groups = groups.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "recovered"
    );
    Ok(())
}
