//! `--target flotilla`: deploys `kv`, creates fresh groups, and makes one client per
//! benchmark client on the node that leads its group; deletes the groups afterwards.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use tonic::transport::Channel;

use super::Api;
use super::client::Client;
use super::kv_wire::KvWire;
use super::mux::Mux;
use crate::cli::connect::{admin, channel, status_error};
use crate::cli::plugin::deploy_bytes;
use crate::examples;
use crate::limits;
use crate::proto::v1::client_client::ClientClient;
use crate::proto::v1::cluster_client::ClusterClient;
use crate::proto::v1::{ClusterStatusRequest, CreateGroupRequest, DeleteGroupRequest};

pub struct FlotillaSetup {
    pub clients: Vec<Client>,
    pub groups: Vec<u64>,
    /// Groups whose leader was found (their clients talk to the leader's node).
    pub routed: usize,
}

/// Deploys `kv` through `endpoint`, creates `groups` groups of 3 (or fewer) replicas and
/// spreads `clients` over them: client i works on group i mod groups. With
/// [`Api::Batch`], each connection carries one `Batch` stream that its clients share.
pub async fn setup(
    endpoint: &str,
    groups: usize,
    clients: usize,
    connections: usize,
    api: Api,
    wire: &KvWire,
) -> anyhow::Result<FlotillaSetup> {
    let (info, _) = deploy_bytes(endpoint, "kv", examples::KV.to_vec(), false).await?;
    let plugin = format!("kv@{}", info.version);
    let mut admin = admin(endpoint).await?;
    let mut ids = Vec::with_capacity(groups);
    for _ in 0..groups {
        let g = admin
            .create_group(CreateGroupRequest {
                plugin: plugin.clone(),
                replicas: 0,
                ..Default::default()
            })
            .await
            .map_err(status_error)?
            .into_inner()
            .group
            .context("no group in the answer")?;
        ids.push(g.group_id);
    }
    // Like a smart client, send each group's requests to its leader's node (found from
    // `cluster status`); groups whose leader is unknown go to `endpoint` (forwarded).
    let leaders = leader_addrs(endpoint, &ids).await;
    let mut pools: HashMap<String, Vec<(Channel, Option<Mux>)>> = HashMap::new();
    for addr in leaders
        .values()
        .cloned()
        .chain(std::iter::once(endpoint.to_string()))
    {
        if pools.contains_key(&addr) {
            continue;
        }
        let mut channels = Vec::new();
        for _ in 0..connections.max(1) {
            let ch = channel(&addr).await?;
            let mux = match api {
                Api::Unary => None,
                Api::Batch => Some(
                    Mux::open(ch.clone())
                        .await
                        .map_err(status_error)
                        .with_context(|| format!("cannot open a Batch stream to {addr}"))?,
                ),
            };
            channels.push((ch, mux));
        }
        pools.insert(addr, channels);
    }
    let mut out = Vec::with_capacity(clients);
    for i in 0..clients {
        let group = ids[i % ids.len()];
        let addr = leaders.get(&group).map_or(endpoint, String::as_str);
        let channels = pools.get(addr).context("no connection pool")?;
        let (ch, mux) = &channels[i % channels.len()];
        out.push(match mux {
            Some(mux) => Client::FlotillaBatch {
                mux: mux.clone(),
                group,
                wire: wire.clone(),
            },
            None => Client::Flotilla {
                c: ClientClient::new(ch.clone())
                    .max_decoding_message_size(limits::GRPC_MESSAGE_BYTES_MAX)
                    .max_encoding_message_size(limits::GRPC_MESSAGE_BYTES_MAX),
                group,
                wire: wire.clone(),
            },
        });
    }
    Ok(FlotillaSetup {
        clients: out,
        routed: ids.iter().filter(|g| leaders.contains_key(g)).count(),
        groups: ids,
    })
}

/// Deletes the bench's groups so repeated runs do not pile up idle groups.
pub async fn cleanup(endpoint: &str, groups: &[u64]) -> anyhow::Result<()> {
    let mut admin = admin(endpoint).await?;
    for &g in groups {
        admin
            .delete_group(DeleteGroupRequest { group_id: g })
            .await
            .map_err(status_error)
            .with_context(|| format!("cannot delete bench group {g}"))?;
    }
    Ok(())
}

/// Group → the address of the node that leads it, once leaders are elected (best effort).
async fn leader_addrs(endpoint: &str, groups: &[u64]) -> HashMap<u64, String> {
    let mut out = HashMap::new();
    let Ok(ch) = channel(endpoint).await else {
        return out;
    };
    let mut c = ClusterClient::new(ch);
    for _ in 0..50 {
        if let Ok(st) = c.cluster_status(ClusterStatusRequest {}).await {
            let st = st.into_inner();
            out.clear();
            for g in &st.groups {
                if let Some(n) = st.nodes.iter().find(|n| n.node_id == g.leader_node_id) {
                    out.insert(g.group_id, n.addr.clone());
                }
            }
            if groups.iter().all(|g| out.contains_key(g)) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    out
}
