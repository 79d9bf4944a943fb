//! Node metadata on fjall: deployed plugins (name, version, digest, bytes) and the
//! groups this node hosts. Written rarely, always synced.

use serde::{Deserialize, Serialize};

use super::keys;
use super::store::{Store, err};
use crate::ids::{GroupId, PeerId, PluginDigest};
use crate::raftstore::traits::StoreError;

/// One deployed plugin version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginRecord {
    pub name: String,
    pub version: u32,
    /// Lower-case hex sha256 of the uploaded bytes.
    pub digest: String,
    pub size_bytes: u64,
    pub stateful: bool,
    pub deployed_at_ms: u64,
}

impl PluginRecord {
    pub fn digest(&self) -> Result<PluginDigest, StoreError> {
        PluginDigest::from_hex(&self.digest)
            .ok_or_else(|| StoreError(format!("corrupt digest in plugin record {}", self.name)))
    }
}

/// One group hosted by this node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    pub group_id: u64,
    pub peer_id: u64,
    /// Every voter of the group (peer ids).
    pub voters: Vec<u64>,
    /// The plugin digest the group was created with (the current one is in its apply
    /// state, because upgrades go through the log).
    pub initial_plugin: String,
    pub created_at_ms: u64,
}

impl GroupRecord {
    pub fn group(&self) -> GroupId {
        GroupId(self.group_id)
    }
    pub fn peer(&self) -> PeerId {
        PeerId(self.peer_id)
    }
}

impl Store {
    /// Stores a plugin's bytes and its record in one synced batch.
    pub fn put_plugin(&self, record: &PluginRecord, bytes: &[u8]) -> Result<(), StoreError> {
        let digest = record.digest()?;
        let json = serde_json::to_vec(record).map_err(err)?;
        let mut batch = self
            .db
            .batch()
            .durability(Some(fjall::PersistMode::SyncData));
        batch.insert(&self.plugins, digest.0.to_vec(), bytes.to_vec());
        batch.insert(
            &self.meta,
            keys::plugin_meta_key(&record.name, record.version),
            json,
        );
        batch.commit().map_err(err)
    }

    /// The bytes of a stored plugin.
    pub fn plugin_bytes(&self, digest: PluginDigest) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.plugins.get(digest.0).map_err(err)?.map(|v| v.to_vec()))
    }

    /// The digest of every stored plugin blob.
    pub fn plugin_digests(&self) -> Result<Vec<PluginDigest>, StoreError> {
        self.plugins
            .iter()
            .map(|item| {
                let k = item.key().map_err(err)?;
                PluginDigest::from_slice(&k)
                    .ok_or_else(|| StoreError("corrupt plugin blob key".into()))
            })
            .collect()
    }

    /// Every plugin version, ordered by name then version.
    pub fn list_plugins(&self) -> Result<Vec<PluginRecord>, StoreError> {
        self.meta
            .prefix("plugin/")
            .map(|item| {
                let (_, v) = item.into_inner().map_err(err)?;
                serde_json::from_slice(&v).map_err(err)
            })
            .collect()
    }

    /// Records a group this node hosts (synced).
    pub fn put_group(&self, record: &GroupRecord) -> Result<(), StoreError> {
        let json = serde_json::to_vec(record).map_err(err)?;
        let mut batch = self
            .db
            .batch()
            .durability(Some(fjall::PersistMode::SyncData));
        batch.insert(&self.meta, keys::group_meta_key(record.group()), json);
        batch.commit().map_err(err)
    }

    /// Forgets a hosted group's record (synced).
    pub fn remove_group_record(&self, group: GroupId) -> Result<(), StoreError> {
        let mut batch = self
            .db
            .batch()
            .durability(Some(fjall::PersistMode::SyncData));
        batch.remove(&self.meta, keys::group_meta_key(group));
        batch.commit().map_err(err)
    }

    /// Every group this node hosts, ordered by id.
    pub fn list_groups(&self) -> Result<Vec<GroupRecord>, StoreError> {
        self.meta
            .prefix("group/")
            .map(|item| {
                let (_, v) = item.into_inner().map_err(err)?;
                serde_json::from_slice(&v).map_err(err)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugins_and_groups_persist_in_order() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(err)?;
        let bytes = b"\0asm fake".to_vec();
        let rec = |v| PluginRecord {
            name: "kv".into(),
            version: v,
            digest: PluginDigest::of(&bytes).to_hex(),
            size_bytes: bytes.len() as u64,
            stateful: false,
            deployed_at_ms: 1,
        };
        {
            let store = Store::open(dir.path())?;
            store.put_plugin(&rec(10), &bytes)?;
            store.put_plugin(&rec(2), &bytes)?;
            for id in [10, 9] {
                store.put_group(&GroupRecord {
                    group_id: id,
                    peer_id: id,
                    voters: vec![id],
                    initial_plugin: rec(2).digest,
                    created_at_ms: 0,
                })?;
            }
        }
        let store = Store::open(dir.path())?;
        let versions: Vec<u32> = store.list_plugins()?.iter().map(|p| p.version).collect();
        assert_eq!(versions, [2, 10]);
        let ids: Vec<u64> = store.list_groups()?.iter().map(|g| g.group_id).collect();
        assert_eq!(ids, [9, 10]);
        assert_eq!(store.plugin_bytes(PluginDigest::of(&bytes))?, Some(bytes));
        Ok(())
    }
}
