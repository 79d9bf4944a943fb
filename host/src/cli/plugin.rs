//! `flotilla plugin deploy|list`.

use std::path::PathBuf;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use tokio_stream::StreamExt as _;

use super::ClientOpts;
use super::connect::{admin, status_error};
use super::output::{OutputFormat, print_json, table};
use crate::limits;
use crate::proto::v1::{DeployPluginChunk, ListPluginsRequest, PluginInfo};

#[derive(Debug, clap::Subcommand)]
pub enum PluginCmd {
    /// Upload a plugin (a .wasm core module built with flotilla-sdk, or a component).
    Deploy {
        /// The .wasm file.
        file: PathBuf,
        /// The name groups will use (`kv`, then `kv@2` for the next version).
        #[arg(long)]
        name: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// List deployed plugins.
    List {
        #[command(flatten)]
        opts: ClientOpts,
    },
}

pub async fn run(cmd: PluginCmd) -> anyhow::Result<()> {
    match cmd {
        PluginCmd::Deploy { file, name, opts } => {
            let bytes = std::fs::read(&file)
                .with_context(|| format!("cannot read plugin file {}", file.display()))?;
            let (info, already) = deploy_bytes(&opts.endpoint, &name, bytes, true).await?;
            match opts.output {
                OutputFormat::Json => print_json(&serde_json::json!({
                    "plugin": info_json(&info), "already_present": already })),
                OutputFormat::Table => {
                    if already {
                        println!(
                            "{}@{} is already deployed ({})",
                            info.name, info.version, info.digest
                        );
                    } else {
                        println!(
                            "deployed {}@{} ({}, {} bytes)",
                            info.name, info.version, info.digest, info.size_bytes
                        );
                    }
                }
            }
            Ok(())
        }
        PluginCmd::List { opts } => {
            let mut c = admin(&opts.endpoint).await?;
            let list = c
                .list_plugins(ListPluginsRequest {})
                .await
                .map_err(status_error)?
                .into_inner()
                .plugins;
            match opts.output {
                OutputFormat::Json => print_json(&serde_json::Value::Array(
                    list.iter().map(info_json).collect(),
                )),
                OutputFormat::Table => {
                    let rows = list
                        .iter()
                        .map(|p| {
                            vec![
                                format!("{}@{}", p.name, p.version),
                                p.digest.chars().take(19).collect(),
                                p.size_bytes.to_string(),
                                if p.stateful { "stateful" } else { "host-kv" }.to_string(),
                            ]
                        })
                        .collect();
                    println!("{}", table(&["PLUGIN", "DIGEST", "BYTES", "STATE"], rows));
                }
            }
            Ok(())
        }
    }
}

fn info_json(p: &PluginInfo) -> serde_json::Value {
    serde_json::json!({
        "name": p.name, "version": p.version, "digest": p.digest,
        "size_bytes": p.size_bytes, "stateful": p.stateful, "deployed_at_ms": p.deployed_at_ms,
    })
}

/// Streams `bytes` to the node in chunks, with a progress bar if `progress`.
pub async fn deploy_bytes(
    endpoint: &str,
    name: &str,
    bytes: Vec<u8>,
    progress: bool,
) -> anyhow::Result<(PluginInfo, bool)> {
    let total = bytes.len() as u64;
    let bar = if progress {
        let b = ProgressBar::new(total);
        if let Ok(style) =
            ProgressStyle::with_template("uploading {msg} [{bar:30}] {bytes}/{total_bytes}")
        {
            b.set_style(style.progress_chars("=> "));
        }
        b.set_message(name.to_string());
        b
    } else {
        ProgressBar::hidden()
    };
    let name = name.to_string();
    let chunks: Vec<DeployPluginChunk> = bytes
        .chunks(limits::PLUGIN_CHUNK_BYTES)
        .enumerate()
        .map(|(i, c)| DeployPluginChunk {
            name: if i == 0 { name.clone() } else { String::new() },
            total_size_bytes: if i == 0 { total } else { 0 },
            data: c.to_vec(),
        })
        .collect();
    let bar2 = bar.clone();
    let stream = tokio_stream::iter(chunks).map(move |c| {
        bar2.inc(c.data.len() as u64);
        c
    });
    let mut c = admin(endpoint).await?;
    let resp = c.deploy_plugin(stream).await.map_err(status_error);
    bar.finish_and_clear();
    let resp = resp?.into_inner();
    let info = resp
        .plugin
        .ok_or_else(|| anyhow::anyhow!("the node answered without plugin info"))?;
    Ok((info, resp.already_present))
}
