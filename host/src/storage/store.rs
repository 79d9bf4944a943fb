//! The fjall database and its keyspaces, opened once per node.

use std::path::Path;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use crate::raftstore::traits::StoreError;

/// The node's database. Cheap to clone (fjall handles are reference counted).
#[derive(Clone)]
pub struct Store {
    pub(crate) db: Database,
    pub(crate) raft_log: Keyspace,
    pub(crate) raft_state: Keyspace,
    pub(crate) apply_state: Keyspace,
    pub(crate) kv: Keyspace,
    pub(crate) plugins: Keyspace,
    pub(crate) meta: Keyspace,
    pub(crate) snaps: super::snapfile::SnapDir,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the database in `dir`; snapshot files live beside it, in
    /// `<dir>.snap`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError(format!("cannot create {}: {e}", dir.display())))?;
        let db = Database::builder(dir)
            .open()
            .map_err(|e| StoreError(format!("cannot open fjall at {}: {e}", dir.display())))?;
        let open = |name: &str| {
            db.keyspace(name, KeyspaceCreateOptions::default)
                .map_err(|e| StoreError(format!("cannot open keyspace {name}: {e}")))
        };
        Ok(Self {
            raft_log: open("raft_log")?,
            raft_state: open("raft_state")?,
            apply_state: open("apply_state")?,
            kv: open("kv")?,
            plugins: open("plugins")?,
            meta: open("meta")?,
            snaps: super::snapfile::SnapDir::open(&dir.with_extension("snap"))
                .map_err(|e| StoreError(format!("cannot open the snapshot dir: {e}")))?,
            db,
        })
    }

    /// The node's snapshot files.
    pub fn snap_dir(&self) -> &super::snapfile::SnapDir {
        &self.snaps
    }

    /// Syncs everything written so far.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.db
            .persist(PersistMode::SyncData)
            .map_err(|e| StoreError(format!("fsync failed: {e}")))
    }

    /// Removes every key in `[start, end)` of `keyspace` into `batch`, returning how many.
    pub(crate) fn remove_range(
        &self,
        batch: &mut fjall::OwnedWriteBatch,
        keyspace: &Keyspace,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> Result<usize, StoreError> {
        let iter = match end {
            Some(e) => keyspace.range(start.to_vec()..e.to_vec()),
            None => keyspace.range(start.to_vec()..),
        };
        let mut n = 0;
        for item in iter {
            let key = item.key().map_err(err)?;
            batch.remove(keyspace, key);
            n += 1;
        }
        Ok(n)
    }
}

pub(crate) fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}
