//! The fjall database and its keyspaces, opened once per node.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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
    /// The last persist round written (see [`super::durable_mark`]).
    round: Arc<AtomicU64>,
    mark: Arc<super::durable_mark::DurableMark>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the database in `dir`; snapshot files live beside it, in
    /// `<dir>.snap`, and the durability mark in `<dir>.mark`. Refuses a database whose
    /// journal lost rounds that were synced before.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, crate::limits::STORAGE_THREADS_DEFAULT)
    }

    /// [`Store::open`] with `threads` fjall flush and compaction workers (at least 1).
    pub fn open_with(dir: &Path, threads: usize) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError(format!("cannot create {}: {e}", dir.display())))?;
        let db = Database::builder(dir)
            .worker_threads(threads.max(1))
            .open()
            .map_err(|e| StoreError(format!("cannot open fjall at {}: {e}", dir.display())))?;
        let open = |name: &str| {
            db.keyspace(name, KeyspaceCreateOptions::default)
                .map_err(|e| StoreError(format!("cannot open keyspace {name}: {e}")))
        };
        let meta = open("meta")?;
        let round = match meta.get(super::durable_mark::ROUND_KEY).map_err(err)? {
            Some(v) => u64::from_be_bytes(
                v.as_ref()
                    .try_into()
                    .map_err(|_| StoreError("corrupt durable round record".into()))?,
            ),
            None => 0,
        };
        let mark_path = dir.with_extension("mark");
        super::durable_mark::check(&mark_path, round)?;
        let mark = super::durable_mark::DurableMark::start(mark_path, round)?;
        Ok(Self {
            raft_log: open("raft_log")?,
            raft_state: open("raft_state")?,
            apply_state: open("apply_state")?,
            kv: open("kv")?,
            plugins: open("plugins")?,
            meta,
            round: Arc::new(AtomicU64::new(round)),
            mark: Arc::new(mark),
            snaps: super::snapfile::SnapDir::open(&dir.with_extension("snap"))
                .map_err(|e| StoreError(format!("cannot open the snapshot dir: {e}")))?,
            db,
        })
    }

    /// The node's snapshot files.
    pub fn snap_dir(&self) -> &super::snapfile::SnapDir {
        &self.snaps
    }

    /// Adds the next round counter to a persist round's batch; call
    /// [`Store::round_synced`] with it once the batch is synced.
    pub(crate) fn stamp_round(&self, batch: &mut fjall::OwnedWriteBatch) -> u64 {
        let next = self.round.fetch_add(1, Ordering::AcqRel) + 1;
        batch.insert(
            &self.meta,
            super::durable_mark::ROUND_KEY,
            next.to_be_bytes(),
        );
        next
    }

    /// Records that round `round` is durable.
    pub(crate) fn round_synced(&self, round: u64) {
        self.mark.advance(round);
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
