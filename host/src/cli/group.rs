//! `flotilla group create|list|status|delete|upgrade|set-quota`.

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
        /// Keys the group may store (default: the node's, 10,000,000).
        #[arg(long)]
        quota_keys: Option<u64>,
        /// Bytes of keys and values the group may store, like `512MiB` or `2GiB`
        /// (default: the node's, 1GiB).
        #[arg(long, value_parser = parse_size)]
        quota_bytes: Option<u64>,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Change a group's storage quota (through its log; writes past it are refused).
    SetQuota {
        group: u64,
        /// Keys the group may store (omitted: unchanged).
        #[arg(long)]
        keys: Option<u64>,
        /// Bytes of keys and values, like `512MiB` (omitted: unchanged).
        #[arg(long, value_parser = parse_size)]
        bytes: Option<u64>,
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
            quota_keys,
            quota_bytes,
            opts,
        } if count > 1 => {
            let template = CreateGroupRequest {
                plugin,
                replicas,
                quota_keys: quota_keys.unwrap_or(0),
                quota_bytes: quota_bytes.unwrap_or(0),
            };
            super::group_many::create_many(&opts, template, count).await?
        }
        GroupCmd::Create {
            plugin,
            replicas,
            quota_keys,
            quota_bytes,
            opts,
            ..
        } => {
            let mut c = admin(&opts.endpoint).await?;
            let g = c
                .create_group(CreateGroupRequest {
                    plugin,
                    replicas,
                    quota_keys: quota_keys.unwrap_or(0),
                    quota_bytes: quota_bytes.unwrap_or(0),
                })
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
                    "storage": s.storage.as_ref().map(|u| serde_json::json!({
                        "keys": u.keys, "bytes": u.bytes, "keys_max": u.keys_max, "bytes_max": u.bytes_max,
                    })),
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
                        vec![
                            "storage".into(),
                            s.storage.as_ref().map_or_else(String::new, |u| {
                                format!(
                                    "{} of {} keys, {} of {} (quota)",
                                    u.keys,
                                    u.keys_max,
                                    show_size(u.bytes),
                                    show_size(u.bytes_max)
                                )
                            }),
                        ],
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
        GroupCmd::SetQuota {
            group,
            keys,
            bytes,
            opts,
        } => {
            let mut c = admin(&opts.endpoint).await?;
            let now = c
                .group_status(GroupStatusRequest { group_id: group })
                .await
                .map_err(status_error)?
                .into_inner()
                .storage
                .unwrap_or_default();
            let (keys_max, bytes_max) =
                (keys.unwrap_or(now.keys_max), bytes.unwrap_or(now.bytes_max));
            if keys_max == 0 || bytes_max == 0 {
                anyhow::bail!(
                    "a quota of 0 would refuse every write; give a positive --keys and --bytes"
                );
            }
            let r = c
                .set_group_quota(SetGroupQuotaRequest {
                    group_id: group,
                    keys_max,
                    bytes_max,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            match opts.output {
                OutputFormat::Json => print_json(&serde_json::json!({
                    "group_id": group, "keys_max": keys_max, "bytes_max": bytes_max, "index": r.index,
                })),
                OutputFormat::Table => println!(
                    "group {group} may store {keys_max} keys and {} from log index {}",
                    show_size(bytes_max),
                    r.index
                ),
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

/// Bytes from `512`, `64KiB`, `512MiB`, `2GiB` or `1TiB` (also `KB`/`MB`/`GB`/`TB`
/// meaning the same powers of 1024, and lower case).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits.parse().map_err(|_| {
        format!("{text:?} is not a size: write a number of bytes like 512MiB or 2GiB")
    })?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {text:?}: use B, KiB, MiB, GiB or TiB"
            ));
        }
    };
    number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// `bytes` in the largest binary unit that keeps it at least 1, like `1.5 GiB`.
pub fn show_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_size, show_size};

    #[test]
    fn sizes_parse_in_binary_units_and_bad_ones_say_why() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("2gib"), Ok(2 << 30));
        assert_eq!(parse_size("1 MB"), Ok(1 << 20));
        assert!(
            parse_size("12 parsecs")
                .expect_err("refused")
                .contains("unknown size unit")
        );
        assert!(
            parse_size("GiB")
                .expect_err("refused")
                .contains("not a size")
        );
        assert!(
            parse_size("99999999999TiB")
                .expect_err("refused")
                .contains("too large")
        );
        assert_eq!(show_size(512), "512 B");
        assert_eq!(show_size(3 << 29), "1.5 GiB");
    }
}
