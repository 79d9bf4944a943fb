//! [`Node`]: what the gRPC services share — the raft store, the fjall store (metadata and
//! plugin blobs) and the plugin runtime — and the admin operations built on them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use tonic::Status;

use super::status;
use crate::ids::{GroupId, PeerId, PluginDigest};
use crate::plugin::PluginRuntime;
use crate::raftstore::{PeerSpec, RaftStore};
use crate::storage::Store;
use crate::storage::meta::{GroupRecord, PluginRecord};

pub struct Node {
    pub raft: RaftStore,
    pub store: Store,
    pub plugins: Arc<PluginRuntime>,
    /// digest → the records that name it (a digest may be deployed under several names).
    catalog: RwLock<Vec<PluginRecord>>,
    next_group: AtomicU64,
    /// Serializes deploys so versions are assigned without races.
    deploy_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").finish_non_exhaustive()
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Node {
    pub fn new(raft: RaftStore, store: Store, plugins: Arc<PluginRuntime>) -> Result<Self, Status> {
        let catalog = store.list_plugins().map_err(status::from_store)?;
        let next = store
            .list_groups()
            .map_err(status::from_store)?
            .iter()
            .map(|g| g.group_id)
            .max()
            .unwrap_or(0)
            + 1;
        Ok(Self {
            raft,
            store,
            plugins,
            catalog: RwLock::new(catalog),
            next_group: AtomicU64::new(next),
            deploy_lock: tokio::sync::Mutex::new(()),
        })
    }

    pub fn plugin_records(&self) -> Vec<PluginRecord> {
        self.catalog.read().clone()
    }

    /// "name@version" for a digest, or the digest itself if no record names it.
    pub fn plugin_label(&self, digest: PluginDigest) -> String {
        let hex = digest.to_hex();
        self.catalog
            .read()
            .iter()
            .rev()
            .find(|r| r.digest == hex)
            .map_or_else(
                || digest.to_string(),
                |r| format!("{}@{}", r.name, r.version),
            )
    }

    /// Resolves "name", "name@version" or "sha256:<hex>" to a deployed digest.
    pub fn resolve_plugin(&self, spec: &str) -> Result<PluginDigest, Status> {
        let spec = spec.trim();
        if let Some(hex) = spec.strip_prefix("sha256:") {
            let d = PluginDigest::from_hex(hex).ok_or_else(|| {
                Status::invalid_argument(format!("{spec:?} is not sha256:<64 hex digits>"))
            })?;
            if self.catalog.read().iter().any(|r| r.digest == d.to_hex()) {
                return Ok(d);
            }
            return Err(Status::not_found(format!(
                "no plugin with digest {spec} is deployed"
            )));
        }
        let (name, version) = match spec.split_once('@') {
            Some((n, v)) => {
                let v: u32 = v.parse().map_err(|_| {
                    Status::invalid_argument(format!(
                        "{spec:?}: the version after '@' must be a number, like kv@2"
                    ))
                })?;
                (n, Some(v))
            }
            None => (spec, None),
        };
        if name.is_empty() {
            return Err(Status::invalid_argument(
                "a plugin name is required (like kv or kv@2)",
            ));
        }
        let catalog = self.catalog.read();
        let found = catalog
            .iter()
            .filter(|r| r.name == name && version.is_none_or(|v| v == r.version))
            .max_by_key(|r| r.version);
        match found {
            Some(r) => r.digest().map_err(status::from_store),
            None => {
                let known: Vec<String> = catalog
                    .iter()
                    .map(|r| format!("{}@{}", r.name, r.version))
                    .collect();
                Err(Status::not_found(format!(
                    "plugin {spec:?} is not deployed (deployed: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )))
            }
        }
    }

    /// Validates, compiles and stores a plugin under `name`, assigning the next version.
    pub async fn deploy(&self, name: &str, bytes: Vec<u8>) -> Result<(PluginRecord, bool), Status> {
        validate_name(name)?;
        let _guard = self.deploy_lock.lock().await;
        let runtime = self.plugins.clone();
        let (validated, bytes) = tokio::task::spawn_blocking(move || {
            let v = runtime.validate(&bytes);
            let v = v.and_then(|v| runtime.load(v.digest, &bytes).map(|_| v));
            (v, bytes)
        })
        .await
        .map_err(|e| Status::internal(format!("deploy task failed: {e}")))?;
        let validated = validated.map_err(status::from_plugin)?;
        let hex = validated.digest.to_hex();
        let existing: Vec<PluginRecord> = self
            .catalog
            .read()
            .iter()
            .filter(|r| r.name == name)
            .cloned()
            .collect();
        if let Some(latest) = existing.iter().max_by_key(|r| r.version)
            && latest.digest == hex
        {
            return Ok((latest.clone(), true));
        }
        let record = PluginRecord {
            name: name.to_string(),
            version: existing.iter().map(|r| r.version).max().unwrap_or(0) + 1,
            digest: hex,
            size_bytes: bytes.len() as u64,
            stateful: validated.stateful,
            deployed_at_ms: now_ms(),
        };
        self.store
            .put_plugin(&record, &bytes)
            .map_err(status::from_store)?;
        self.catalog.write().push(record.clone());
        Ok((record, false))
    }

    /// Creates a single-replica group running `plugin`.
    pub async fn create_group(&self, plugin: &str) -> Result<GroupRecord, Status> {
        let digest = self.resolve_plugin(plugin)?;
        let id = self.next_group.fetch_add(1, Ordering::SeqCst);
        // Peer ids are unique in the cluster; on one node the group id serves.
        let record = GroupRecord {
            group_id: id,
            peer_id: id,
            voters: vec![id],
            initial_plugin: digest.to_hex(),
            created_at_ms: now_ms(),
        };
        self.store.put_group(&record).map_err(status::from_store)?;
        self.start_group(&record, digest).await?;
        Ok(record)
    }

    /// Starts the peer of a recorded group (creation or restart).
    pub async fn start_group(
        &self,
        record: &GroupRecord,
        digest: PluginDigest,
    ) -> Result<(), Status> {
        self.raft
            .start_peer(PeerSpec {
                group: record.group(),
                peer: record.peer(),
                voters: record.voters.iter().copied().map(PeerId).collect(),
                plugin: digest,
                campaign: false,
            })
            .await
            .map_err(status::from_raft)
    }

    /// The plugin a group runs now ("name@version", digest).
    pub fn group_plugin(&self, group: GroupId) -> Option<(String, PluginDigest)> {
        let state = self.raft.applied(group)?;
        Some((self.plugin_label(state.plugin), state.plugin))
    }

    /// Every deployed digest, so a restarted node can load them before groups start.
    pub fn deployed_digests(&self) -> HashMap<PluginDigest, String> {
        self.catalog
            .read()
            .iter()
            .filter_map(|r| {
                r.digest()
                    .ok()
                    .map(|d| (d, format!("{}@{}", r.name, r.version)))
            })
            .collect()
    }
}

fn validate_name(name: &str) -> Result<(), Status> {
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
