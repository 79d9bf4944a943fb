//! `flotilla group create|list|status|delete|upgrade`.

use super::ClientOpts;
use super::connect::{admin, status_error};
use super::output::{OutputFormat, print_json, table};
use crate::proto::v1::*;

#[derive(Debug, clap::Subcommand)]
pub enum GroupCmd {
    /// Create a group running a plugin (`kv`, `kv@2` or `sha256:<hex>`).
    Create {
        #[arg(long)]
        plugin: String,
        /// Replicas on distinct nodes (default: 3, or fewer if fewer nodes are up).
        #[arg(long, default_value_t = 0)]
        replicas: u32,
        /// How many such groups to create (1..=100000), 16 requests at a time.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        count: u32,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// List groups.
    List {
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Show a group's raft and apply state.
    Status {
        group: u64,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Delete a group and all its data.
    Delete {
        group: u64,
        #[command(flatten)]
        opts: ClientOpts,
    },
    #[command(flatten)]
    Member(super::cluster::MemberCmd),
    /// Switch a group to other plugin code, through the log.
    Upgrade {
        group: u64,
        #[arg(long)]
        plugin: String,
        #[command(flatten)]
        opts: ClientOpts,
    },
}

fn group_json(g: &GroupInfo) -> serde_json::Value {
    serde_json::json!({ "group_id": g.group_id, "plugin": g.plugin, "plugin_digest": g.plugin_digest, "peers": g.peers })
}

pub async fn run(cmd: GroupCmd) -> anyhow::Result<()> {
    match cmd {
        GroupCmd::Member(m) => return super::cluster::run_member(m).await,
        GroupCmd::Create {
            plugin,
            replicas,
            count,
            opts,
        } if count > 1 => super::group_many::create_many(&opts, &plugin, replicas, count).await?,
        GroupCmd::Create {
            plugin,
            replicas,
            opts,
            ..
        } => {
            let mut c = admin(&opts.endpoint).await?;
            let g = c
                .create_group(CreateGroupRequest { plugin, replicas })
                .await
                .map_err(status_error)?
                .into_inner()
                .group
                .unwrap_or_default();
            match opts.output {
                OutputFormat::Json => print_json(&group_json(&g)),
                OutputFormat::Table => {
                    println!("created group {} running {}", g.group_id, g.plugin)
                }
            }
        }
        GroupCmd::List { opts } => {
            let mut c = admin(&opts.endpoint).await?;
            let mut all = Vec::new();
            let mut start_after = 0;
            loop {
                let page = c
                    .list_groups(ListGroupsRequest {
                        start_after,
                        limit: 1000,
                    })
                    .await
                    .map_err(status_error)?
                    .into_inner()
                    .groups;
                let Some(last) = page.last() else { break };
                start_after = last.group_id;
                all.extend(page);
            }
            match opts.output {
                OutputFormat::Json => print_json(&serde_json::Value::Array(
                    all.iter().map(group_json).collect(),
                )),
                OutputFormat::Table => {
                    let rows = all
                        .iter()
                        .map(|g| {
                            vec![
                                g.group_id.to_string(),
                                g.plugin.clone(),
                                format!("{:?}", g.peers),
                            ]
                        })
                        .collect();
                    println!("{}", table(&["GROUP", "PLUGIN", "PEERS"], rows));
                }
            }
        }
        GroupCmd::Status { group, opts } => {
            let mut c = admin(&opts.endpoint).await?;
            let s = c
                .group_status(GroupStatusRequest { group_id: group })
                .await
                .map_err(status_error)?
                .into_inner();
            let g = s.group.clone().unwrap_or_default();
            match opts.output {
                OutputFormat::Json => print_json(&serde_json::json!({
                    "group": group_json(&g), "role": s.role, "term": s.term,
                    "leader_peer_id": s.leader_peer_id, "commit_index": s.commit_index,
                    "applied_index": s.applied_index, "first_index": s.first_index,
                    "last_index": s.last_index, "pending_proposals": s.pending_proposals,
                    "applied_timestamp_ms": s.applied_timestamp_ms, "node_id": s.node_id,
                    "replicas": s.replicas.iter().map(|r| serde_json::json!({
                        "peer_id": r.peer_id, "node_id": r.node_id, "learner": r.learner,
                    })).collect::<Vec<_>>(),
                    "last_check": s.last_check,
                })),
                OutputFormat::Table => {
                    let rows = vec![
                        vec!["group".into(), g.group_id.to_string()],
                        vec!["plugin".into(), g.plugin.clone()],
                        vec!["role".into(), s.role.clone()],
                        vec!["term".into(), s.term.to_string()],
                        vec!["leader".into(), s.leader_peer_id.to_string()],
                        vec!["commit index".into(), s.commit_index.to_string()],
                        vec!["applied index".into(), s.applied_index.to_string()],
                        vec![
                            "log".into(),
                            format!("[{}, {}]", s.first_index, s.last_index),
                        ],
                        vec!["pending proposals".into(), s.pending_proposals.to_string()],
                        vec!["answered by node".into(), s.node_id.to_string()],
                        vec![
                            "replicas".into(),
                            s.replicas
                                .iter()
                                .map(|r| {
                                    format!(
                                        "{}@node{}{}",
                                        r.peer_id,
                                        r.node_id,
                                        if r.learner { " (learner)" } else { "" }
                                    )
                                })
                                .collect::<Vec<_>>()
                                .join(", "),
                        ],
                        vec![
                            "last consistency check".into(),
                            if s.last_check.is_empty() {
                                "none (flotilla group check)".into()
                            } else {
                                s.last_check.clone()
                            },
                        ],
                    ];
                    println!("{}", table(&["FIELD", "VALUE"], rows));
                }
            }
        }
        GroupCmd::Delete { group, opts } => {
            let mut c = admin(&opts.endpoint).await?;
            c.delete_group(DeleteGroupRequest { group_id: group })
                .await
                .map_err(status_error)?;
            match opts.output {
                OutputFormat::Json => print_json(&serde_json::json!({ "deleted": group })),
                OutputFormat::Table => println!("deleted group {group}"),
            }
        }
        GroupCmd::Upgrade {
            group,
            plugin,
            opts,
        } => {
            let mut c = admin(&opts.endpoint).await?;
            let r = c
                .upgrade_group(UpgradeGroupRequest {
                    group_id: group,
                    plugin,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            let g = r.group.unwrap_or_default();
            match opts.output {
                OutputFormat::Json => {
                    print_json(&serde_json::json!({ "index": r.index, "group": group_json(&g) }))
                }
                OutputFormat::Table => println!(
                    "group {} runs {} from log index {}",
                    g.group_id, g.plugin, r.index
                ),
            }
        }
    }
    Ok(())
}
