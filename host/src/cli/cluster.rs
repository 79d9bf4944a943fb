//! `flotilla cluster status`, `flotilla node drain`, `flotilla watch-leaders`, and the
//! membership subcommands of `flotilla group` (add-replica, add-learner, promote,
//! remove-replica, transfer-leader).

use anyhow::Context as _;
use tokio_stream::StreamExt as _;

use super::ClientOpts;
use super::connect::{channel, client, status_error};
use super::output::{OutputFormat, print_json, table};
use crate::limits;
use crate::proto::v1::cluster_client::ClusterClient;
use crate::proto::v1::*;

pub async fn cluster_client(
    endpoint: &str,
) -> anyhow::Result<ClusterClient<tonic::transport::Channel>> {
    Ok(ClusterClient::new(channel(endpoint).await?)
        .max_decoding_message_size(limits::GRPC_MESSAGE_BYTES_MAX))
}

#[derive(Debug, clap::Subcommand)]
pub enum ClusterCmd {
    /// Nodes, liveness, replicas and leaders per node, replication lag per group.
    Status {
        #[command(flatten)]
        opts: ClientOpts,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum NodeCmd {
    /// Move every replica off a node (it takes no new ones), so it can be removed.
    Drain {
        node: u64,
        #[command(flatten)]
        opts: ClientOpts,
    },
}

/// Membership subcommands of `flotilla group`.
#[derive(Debug, clap::Subcommand)]
pub enum MemberCmd {
    /// Add a replica (a learner that catches up, then promoted to voter).
    AddReplica {
        group: u64,
        /// Node to place it on (default: the least loaded node not hosting the group).
        #[arg(long)]
        node: Option<u64>,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Add a learner (a non-voting replica) and stop there.
    AddLearner {
        group: u64,
        #[arg(long)]
        node: Option<u64>,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Promote a learner to a voter.
    Promote {
        group: u64,
        #[arg(long)]
        peer: u64,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Remove a replica; its data is destroyed once the change applies.
    RemoveReplica {
        group: u64,
        #[arg(long)]
        peer: u64,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Check that every replica holds the same state: a digest entry goes through the
    /// log and each replica's hash at that index is compared (exit code 3 on a mismatch).
    Check {
        group: u64,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Hand leadership to another voter (by peer or by node).
    TransferLeader {
        group: u64,
        #[arg(long, conflicts_with = "node")]
        peer: Option<u64>,
        #[arg(long)]
        node: Option<u64>,
        #[command(flatten)]
        opts: ClientOpts,
    },
}

pub async fn run_cluster(cmd: ClusterCmd) -> anyhow::Result<()> {
    let ClusterCmd::Status { opts } = cmd;
    let st = cluster_client(&opts.endpoint)
        .await?
        .cluster_status(ClusterStatusRequest {})
        .await
        .map_err(status_error)?
        .into_inner();
    match opts.output {
        OutputFormat::Json => print_json(&serde_json::json!({
            "meta_leader_node_id": st.meta_leader_node_id,
            "nodes": st.nodes.iter().map(|n| serde_json::json!({
                "node_id": n.node_id, "addr": n.addr, "state": n.state, "alive": n.alive,
                "replicas": n.replicas, "leaders": n.leaders, "hibernating": n.hibernating,
            })).collect::<Vec<_>>(),
            "groups": st.groups.iter().map(|g| serde_json::json!({
                "group_id": g.group_id, "leader_peer_id": g.leader_peer_id,
                "leader_node_id": g.leader_node_id, "commit_index": g.commit_index,
                "replicas": g.replicas.iter().map(|r| serde_json::json!({
                    "peer_id": r.peer_id, "node_id": r.node_id, "matched": r.matched, "behind": r.behind,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })),
        OutputFormat::Table => {
            let rows = st
                .nodes
                .iter()
                .map(|n| {
                    vec![
                        n.node_id.to_string(),
                        n.addr.clone(),
                        n.state.clone(),
                        if n.alive { "yes" } else { "NO" }.to_string(),
                        n.replicas.to_string(),
                        n.leaders.to_string(),
                        n.hibernating.to_string(),
                    ]
                })
                .collect();
            println!(
                "{}",
                table(
                    &[
                        "node",
                        "addr",
                        "state",
                        "alive",
                        "replicas",
                        "leaders",
                        "hibernating"
                    ],
                    rows
                )
            );
            let rows = st
                .groups
                .iter()
                .map(|g| {
                    let lag = g
                        .replicas
                        .iter()
                        .filter(|r| r.peer_id != g.leader_peer_id)
                        .map(|r| format!("{}@n{}:{}", r.peer_id, r.node_id, r.behind))
                        .collect::<Vec<_>>()
                        .join(" ");
                    vec![
                        g.group_id.to_string(),
                        format!("{} (node {})", g.leader_peer_id, g.leader_node_id),
                        g.commit_index.to_string(),
                        lag,
                    ]
                })
                .collect();
            println!(
                "{}",
                table(
                    &[
                        "group",
                        "leader",
                        "commit",
                        "followers behind (peer@node:entries)"
                    ],
                    rows
                )
            );
            println!("meta group leader: node {}", st.meta_leader_node_id);
        }
    }
    Ok(())
}

pub async fn run_node(cmd: NodeCmd) -> anyhow::Result<()> {
    let NodeCmd::Drain { node, opts } = cmd;
    let r = cluster_client(&opts.endpoint)
        .await?
        .drain_node(DrainNodeRequest { node_id: node })
        .await
        .map_err(status_error)?
        .into_inner();
    match opts.output {
        OutputFormat::Json => print_json(
            &serde_json::json!({ "node_id": node, "moved": r.moved, "leaders_moved": r.leaders_moved }),
        ),
        OutputFormat::Table => println!(
            "node {node} drained: {} replicas moved ({} were leaders)",
            r.moved, r.leaders_moved
        ),
    }
    Ok(())
}

pub async fn run_member(cmd: MemberCmd) -> anyhow::Result<()> {
    let (line, json) = match cmd {
        MemberCmd::AddReplica { group, node, opts } => add(group, node, false, opts).await?,
        MemberCmd::AddLearner { group, node, opts } => add(group, node, true, opts).await?,
        MemberCmd::Check { group, opts } => {
            let r = cluster_client(&opts.endpoint)
                .await?
                .check_group(CheckGroupRequest { group_id: group })
                .await
                .map_err(status_error)?
                .into_inner();
            match opts.output {
                OutputFormat::Json => print_json(&serde_json::json!({
                    "group_id": group, "index": r.index, "consistent": r.consistent,
                    "replicas": r.replicas.iter().map(|c| serde_json::json!({
                        "peer_id": c.peer_id, "node_id": c.node_id, "digest": c.digest, "error": c.error,
                    })).collect::<Vec<_>>(),
                })),
                OutputFormat::Table => {
                    let rows = r
                        .replicas
                        .iter()
                        .map(|c| {
                            vec![
                                c.peer_id.to_string(),
                                c.node_id.to_string(),
                                if c.error.is_empty() {
                                    c.digest.clone()
                                } else {
                                    format!("({})", c.error)
                                },
                            ]
                        })
                        .collect();
                    println!("{}", table(&["peer", "node", "sha256 of the state"], rows));
                    println!(
                        "group {group} at index {}: {}",
                        r.index,
                        if r.consistent {
                            "replicas agree"
                        } else {
                            "REPLICAS DIVERGED"
                        }
                    );
                }
            }
            if !r.consistent {
                std::process::exit(3);
            }
            return Ok(());
        }
        MemberCmd::Promote { group, peer, opts } => {
            let r = cluster_client(&opts.endpoint)
                .await?
                .promote(PromoteRequest {
                    group_id: group,
                    peer_id: peer,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            (
                format!(
                    "peer {peer} of group {group} is a voter from index {}",
                    r.index
                ),
                (
                    opts.output,
                    serde_json::json!({ "group_id": group, "peer_id": peer, "index": r.index }),
                ),
            )
        }
        MemberCmd::RemoveReplica { group, peer, opts } => {
            let r = cluster_client(&opts.endpoint)
                .await?
                .remove_replica(RemoveReplicaRequest {
                    group_id: group,
                    peer_id: peer,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            (
                format!(
                    "peer {peer} removed from group {group} at index {}",
                    r.index
                ),
                (
                    opts.output,
                    serde_json::json!({ "group_id": group, "peer_id": peer, "index": r.index }),
                ),
            )
        }
        MemberCmd::TransferLeader {
            group,
            peer,
            node,
            opts,
        } => {
            if peer.is_none() && node.is_none() {
                anyhow::bail!("say where leadership goes: --peer P or --node N");
            }
            let r = cluster_client(&opts.endpoint)
                .await?
                .transfer_leader(TransferLeaderRequest {
                    group_id: group,
                    peer_id: peer.unwrap_or(0),
                    node_id: node.unwrap_or(0),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            (
                format!("group {group} is led by peer {}", r.leader_peer_id),
                (
                    opts.output,
                    serde_json::json!({ "group_id": group, "leader_peer_id": r.leader_peer_id }),
                ),
            )
        }
    };
    match json.0 {
        OutputFormat::Json => print_json(&json.1),
        OutputFormat::Table => println!("{line}"),
    }
    Ok(())
}

type Printed = (String, (OutputFormat, serde_json::Value));

async fn add(
    group: u64,
    node: Option<u64>,
    learner_only: bool,
    opts: ClientOpts,
) -> anyhow::Result<Printed> {
    let r = cluster_client(&opts.endpoint)
        .await?
        .add_replica(AddReplicaRequest {
            group_id: group,
            node_id: node.unwrap_or(0),
            learner_only,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let rep = r.replica.context("the node answered without a replica")?;
    let what = if learner_only { "learner" } else { "voter" };
    Ok((
        format!(
            "group {group}: peer {} on node {} added as a {what} (index {})",
            rep.peer_id, rep.node_id, r.index
        ),
        (
            opts.output,
            serde_json::json!({ "group_id": group, "peer_id": rep.peer_id, "node_id": rep.node_id, "learner": learner_only, "index": r.index }),
        ),
    ))
}

/// `flotilla watch-leaders`: prints leader changes as they happen.
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
}

pub async fn watch(args: WatchArgs) -> anyhow::Result<()> {
    let mut stream = client(&args.opts.endpoint)
        .await?
        .watch_leaders(WatchLeadersRequest {})
        .await
        .map_err(status_error)?
        .into_inner();
    while let Some(ev) = stream.next().await {
        let ev = ev.map_err(status_error)?;
        match args.opts.output {
            OutputFormat::Json => print_json(&serde_json::json!({
                "group_id": ev.group_id, "leader_peer_id": ev.leader_peer_id,
                "leader_node_id": ev.leader_node_id, "term": ev.term,
            })),
            OutputFormat::Table => println!(
                "group {} leader peer {} (node {}) term {}",
                ev.group_id, ev.leader_peer_id, ev.leader_node_id, ev.term
            ),
        }
    }
    Ok(())
}
