//! `flotilla server` (run a node) and `flotilla dev` (a node with the example plugins
//! deployed and one group per plugin, for trying things out).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::cluster::cluster_client;
use super::connect::{admin, status_error};
use super::plugin::deploy_bytes;
use crate::examples;
use crate::proto::v1::{ClusterStatusRequest, CreateGroupRequest, ListGroupsRequest};
use crate::server::{Server, ServerConfig};

#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Address for gRPC (client, admin, cluster, raft transport, health).
    #[arg(long, default_value = super::DEFAULT_ENDPOINT)]
    pub listen: SocketAddr,
    /// Where the node keeps its fjall database, snapshots and compiled plugins.
    #[arg(long, default_value_os_t = super::default_data_dir())]
    pub data_dir: PathBuf,
    /// This node's id, 1..=65535 (default 1 for a lone node).
    #[arg(long)]
    pub id: Option<u64>,
    /// Bootstrap a new cluster: every founding node as ID=HOST:PORT, comma-separated
    /// (e.g. 1=127.0.0.1:7420,2=127.0.0.1:7421,3=127.0.0.1:7422). Ignored once the data
    /// dir holds a node.
    #[arg(long, value_delimiter = ',', value_parser = parse_member)]
    pub initial_cluster: Vec<(u64, String)>,
    /// Join a running cluster through any of its nodes (HOST:PORT); needs --id.
    #[arg(long, conflicts_with = "initial_cluster")]
    pub join: Option<String>,
    /// Check every group this node leads for replica divergence this often (e.g. 10m):
    /// a digest entry goes through the log and every replica's state hash is compared,
    /// as `flotilla group check` does. Off by default.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub consistency_check_interval: Option<std::time::Duration>,
    /// Serve Prometheus metrics over HTTP at http://HOST:PORT/metrics (off if not given).
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_listen: Option<SocketAddr>,
    /// Threads that flush and compact the node's fjall database (1 to 16).
    #[arg(long, default_value_t = crate::limits::STORAGE_THREADS_DEFAULT,
          value_parser = parse_storage_threads)]
    pub storage_threads: usize,
    /// Worker threads of the node's async runtime, which serves client and admin gRPC
    /// and the raft transport (1 to 256; default: one per core). Nodes that share a
    /// machine can each be given a share of its cores; whether that pays depends on the
    /// load, so measure yours (the README has what we measured).
    #[arg(long, value_parser = parse_worker_threads)]
    pub worker_threads: Option<usize>,
}

fn parse_thread_count(s: &str, max: usize) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!("{s:?} is not a thread count from 1 to {max}")),
    }
}

fn parse_worker_threads(s: &str) -> Result<usize, String> {
    parse_thread_count(s, crate::limits::WORKER_THREADS_MAX)
}

fn parse_storage_threads(s: &str) -> Result<usize, String> {
    parse_thread_count(s, crate::limits::STORAGE_THREADS_MAX)
}

fn parse_member(s: &str) -> Result<(u64, String), String> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not ID=HOST:PORT"))?;
    let id: u64 = id
        .trim()
        .parse()
        .map_err(|_| format!("{id:?} in {s:?} is not a node id"))?;
    let addr = addr.trim();
    addr.parse::<SocketAddr>()
        .map_err(|e| format!("{addr:?} in {s:?} is not HOST:PORT: {e}"))?;
    Ok((id, addr.to_string()))
}

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Address of the first node; the others take the next ports.
    #[arg(long, default_value = super::DEFAULT_ENDPOINT)]
    pub listen: SocketAddr,
    /// Parent of the nodes' data dirs (node-1, node-2, ...).
    #[arg(long, default_value_os_t = super::default_data_dir())]
    pub data_dir: PathBuf,
    /// How many nodes to run (in this one process, each with its own port and data dir).
    #[arg(long, default_value_t = 3)]
    pub nodes: u16,
    /// Where the first node serves Prometheus metrics (GET /metrics); the others take the
    /// next ports.
    #[arg(long, value_name = "HOST:PORT", default_value = DEV_METRICS_LISTEN)]
    pub metrics_listen: SocketAddr,
    /// Serve no metrics.
    #[arg(long)]
    pub no_metrics: bool,
}

/// Where `flotilla dev`'s first node serves metrics by default.
pub const DEV_METRICS_LISTEN: &str = "127.0.0.1:9420";

/// How long `flotilla dev` waits for its nodes to register in the meta group.
const DEV_REGISTER_WAIT: Duration = Duration::from_secs(60);

/// Waits until the meta group lists every node in `ids` as up. A node registers itself
/// in the background once it serves, and the meta group refuses to record a plugin on a
/// node it does not know ("node 1 is not registered"): on a slow or busy machine the
/// first deploy could overtake the registration.
async fn wait_registered(endpoint: &str, ids: &[u64]) -> anyhow::Result<()> {
    let deadline = Instant::now() + DEV_REGISTER_WAIT;
    loop {
        let status = match cluster_client(endpoint).await {
            Ok(mut c) => c
                .cluster_status(ClusterStatusRequest {})
                .await
                .map(tonic::Response::into_inner)
                .map_err(|s| s.message().to_string()),
            Err(e) => Err(format!("{e:#}")),
        };
        let missing: Vec<u64> = match &status {
            Ok(st) => ids
                .iter()
                .copied()
                .filter(|id| !st.nodes.iter().any(|n| n.node_id == *id && n.state == "up"))
                .collect(),
            Err(_) => ids.to_vec(),
        };
        if missing.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let why = status
                .err()
                .map_or(String::new(), |e| format!(" (last answer: {e})"));
            anyhow::bail!(
                "nodes {missing:?} did not register in the meta group within {} s{why}",
                DEV_REGISTER_WAIT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
    tracing::info!("shutdown requested");
}

async fn start(args: &ServerArgs) -> anyhow::Result<Server> {
    let config = ServerConfig {
        listen: args.listen,
        data_dir: args.data_dir.clone(),
        id: args.id,
        initial_cluster: args.initial_cluster.clone(),
        join: args.join.clone(),
        check_interval: args.consistency_check_interval,
        metrics_listen: args.metrics_listen,
        storage_threads: args.storage_threads,
    };
    let server = Server::start(&config).await.with_context(|| {
        format!(
            "cannot start the node (data dir {})",
            args.data_dir.display()
        )
    })?;
    let addr = server.local_addr().unwrap_or(args.listen);
    tracing::info!(%addr, data_dir = %args.data_dir.display(), "flotilla node serving");
    let metrics = server
        .metrics_addr()
        .map(|m| format!(", metrics on http://{m}/metrics"))
        .unwrap_or_default();
    println!(
        "flotilla node serving on {addr} (data dir {}{metrics})",
        args.data_dir.display()
    );
    Ok(server)
}

pub async fn server(args: ServerArgs) -> anyhow::Result<()> {
    let server = start(&args).await?;
    server.serve(shutdown_signal()).await?;
    Ok(())
}

pub async fn dev(args: DevArgs) -> anyhow::Result<()> {
    let n = args.nodes.clamp(1, 7);
    let members: Vec<(u64, String)> = (0..n)
        .map(|i| {
            let mut a = args.listen;
            a.set_port(args.listen.port() + i);
            (u64::from(i) + 1, a.to_string())
        })
        .collect();
    let metrics_addr = |i: u16| {
        let mut a = args.metrics_listen;
        a.set_port(args.metrics_listen.port().saturating_add(i));
        (!args.no_metrics).then_some(a)
    };
    let mut servers = Vec::new();
    let mut metrics_urls = Vec::new();
    for (i, (id, addr)) in (0u16..).zip(&members) {
        let server_args = ServerArgs {
            listen: addr.parse()?,
            data_dir: args.data_dir.join(format!("node-{id}")),
            id: Some(*id),
            initial_cluster: members.clone(),
            join: None,
            consistency_check_interval: None,
            metrics_listen: metrics_addr(i),
            storage_threads: crate::limits::STORAGE_THREADS_DEFAULT,
            // The nodes share this process's runtime.
            worker_threads: None,
        };
        let server = start(&server_args).await?;
        if let Some(m) = server.metrics_addr() {
            metrics_urls.push(format!("http://{m}/metrics"));
        }
        servers.push(server);
    }
    let endpoint = members[0].1.clone();
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut serving = Vec::new();
    for server in servers {
        let mut stop = stop_tx.subscribe();
        serving.push(tokio::spawn(server.serve(async move {
            let _ = stop.recv().await;
        })));
    }
    let setup = async {
        let ids: Vec<u64> = members.iter().map(|m| m.0).collect();
        wait_registered(&endpoint, &ids).await?;
        for (name, bytes) in examples::EXAMPLES {
            let (info, _) = deploy_bytes(&endpoint, name, bytes.to_vec(), false).await?;
            println!(
                "plugin {}@{} deployed ({})",
                info.name, info.version, info.digest
            );
        }
        let mut c = admin(&endpoint).await?;
        let existing = c
            .list_groups(ListGroupsRequest {
                start_after: 0,
                limit: 100,
            })
            .await
            .map_err(status_error)?
            .into_inner()
            .groups;
        let mut groups = existing;
        if groups.is_empty() {
            for (name, _) in examples::EXAMPLES {
                let g = c
                    .create_group(CreateGroupRequest {
                        plugin: name.to_string(),
                        replicas: 0,
                        ..Default::default()
                    })
                    .await
                    .map_err(status_error)?
                    .into_inner()
                    .group
                    .unwrap_or_default();
                groups.push(g);
            }
        }
        println!("\nnodes:");
        for (i, (id, addr)) in members.iter().enumerate() {
            match metrics_urls.get(i) {
                Some(url) => println!("  node {id} on {addr}, metrics {url}"),
                None => println!("  node {id} on {addr}"),
            }
        }
        println!("\ngroups:");
        for g in &groups {
            println!(
                "  group {:<4} runs {:<12} replicas (peer ids) {:?}",
                g.group_id, g.plugin, g.peers
            );
        }
        let kv = groups
            .iter()
            .find(|g| g.plugin.starts_with("kv@"))
            .map_or(1, |g| g.group_id);
        let other = members.last().map_or(endpoint.clone(), |m| m.1.clone());
        let (bench_metrics, scrape) = match metrics_urls.first() {
            Some(first) => (
                format!(" --metrics {}", metrics_urls.join(",")),
                format!("  curl -s {first} | grep -v '^#'\n"),
            ),
            None => (String::new(), String::new()),
        };
        println!(
            "\ntry next (in another terminal):\n  \
             flotilla propose --group {kv} '{{\"put\":{{\"key\":\"hello\",\"value\":\"world\"}}}}'\n  \
             flotilla query   --group {kv} '{{\"get\":{{\"key\":\"hello\"}}}}' --endpoint {other}\n  \
             flotilla cluster status\n  \
             flotilla group status {kv}\n  \
             flotilla group transfer-leader {kv} --node 2\n  \
             flotilla bench --clients 64 --duration 10s{bench_metrics}\n{scrape}\
             (cargo users: `cargo run --release --bin flotilla -- <args>`)\n\
             Ctrl-C stops the nodes; their data stays in {}.",
            args.data_dir.display()
        );
        anyhow::Ok(())
    };
    if let Err(e) = setup.await {
        eprintln!("flotilla dev: setup failed: {e:#}");
    }
    shutdown_signal().await;
    let _ = stop_tx.send(());
    for s in serving {
        s.await.context("a node task failed")??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{parse_storage_threads, parse_worker_threads};

    #[test]
    fn storage_threads_must_be_a_count_within_the_limit() {
        assert_eq!(parse_storage_threads("1"), Ok(1));
        assert_eq!(parse_storage_threads("16"), Ok(16));
        for bad in ["0", "17", "-1", "two", ""] {
            let err = parse_storage_threads(bad).expect_err(bad);
            assert!(err.contains("from 1 to 16"), "{bad}: {err}");
        }
    }

    #[test]
    fn worker_threads_must_be_a_count_within_the_limit() {
        assert_eq!(parse_worker_threads("1"), Ok(1));
        assert_eq!(parse_worker_threads("256"), Ok(256));
        for bad in ["0", "257", "-3", "many", ""] {
            let err = parse_worker_threads(bad).expect_err(bad);
            assert!(
                err.contains(&format!("{bad:?} is not a thread count from 1 to 256")),
                "{bad}: {err}"
            );
        }
    }
}
