//! `flotilla server` (run a node) and `flotilla dev` (a node with the example plugins
//! deployed and one group per plugin, for trying things out).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;

use super::connect::{admin, status_error};
use super::plugin::deploy_bytes;
use crate::examples;
use crate::proto::v1::{CreateGroupRequest, ListGroupsRequest};
use crate::server::{Server, ServerConfig};

#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Address for gRPC (client, admin, health).
    #[arg(long, default_value = super::DEFAULT_ENDPOINT)]
    pub listen: SocketAddr,
    /// Where the node keeps its fjall database and compiled plugins.
    #[arg(long, default_value_os_t = super::default_data_dir())]
    pub data_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    #[command(flatten)]
    pub server: ServerArgs,
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
    };
    let server = Server::start(&config).await.with_context(|| {
        format!(
            "cannot start the node (data dir {})",
            args.data_dir.display()
        )
    })?;
    let addr = server.local_addr().unwrap_or(args.listen);
    tracing::info!(%addr, data_dir = %args.data_dir.display(), "flotilla node serving");
    println!(
        "flotilla node serving on {addr} (data dir {})",
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
    let server = start(&args.server).await?;
    let endpoint = server
        .local_addr()
        .unwrap_or(args.server.listen)
        .to_string();
    let serving = tokio::spawn(server.serve(shutdown_signal()));
    let setup = async {
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
                    })
                    .await
                    .map_err(status_error)?
                    .into_inner()
                    .group
                    .unwrap_or_default();
                groups.push(g);
            }
        }
        println!("\ngroups:");
        for g in &groups {
            println!("  group {:<4} runs {}", g.group_id, g.plugin);
        }
        let kv = groups
            .iter()
            .find(|g| g.plugin.starts_with("kv@"))
            .map_or(1, |g| g.group_id);
        println!(
            "\ntry next (in another terminal):\n  \
             flotilla propose --group {kv} '{{\"put\":{{\"key\":\"hello\",\"value\":\"world\"}}}}'\n  \
             flotilla query   --group {kv} '{{\"get\":{{\"key\":\"hello\"}}}}'\n  \
             flotilla group list\n  \
             flotilla bench --clients 64 --duration 10s\n\
             (cargo users: `cargo run --release --bin flotilla -- <args>`)\n\
             Ctrl-C stops the node; its data stays in {}.",
            args.server.data_dir.display()
        );
        anyhow::Ok(())
    };
    if let Err(e) = setup.await {
        eprintln!("flotilla dev: setup failed: {e:#}");
    }
    serving.await.context("the node task failed")??;
    Ok(())
}
