//! The fjall database and its keyspaces, opened once per node.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use fjall::{
    CompressionType, Database, Keyspace, KeyspaceCreateOptions, KvSeparationOptions, PersistMode,
};

use crate::raftstore::traits::StoreError;

/// Raft log entries at least this large (encoded) are kept in fjall's blob files
/// (key-value separation), and only a pointer to each goes through the LSM tree. A log
/// entry is written once and deleted about a thousand entries later
/// ([`crate::limits::LOG_RETAIN_ENTRIES`]), so in the tree's own tables it was flushed
/// and then rewritten by every compaction it lived through; in a blob file it is
/// written once, and the file is deleted whole when compaction has dropped the last
/// pointer into it. The price is disk: a blob file is only freed once all of its
/// entries are truncated (or rewritten once a quarter of it is dead), so the log's files
/// hold more dead entries than the tables did. Small entries stay in the tables: with
/// 64 B here, 16 B writes (entries of about 100 B) lost about a tenth of their
/// throughput at 64 groups, and with 512 B they are where they were without
/// separation. Measured with [`KV_SEPARATION_THRESHOLD_BYTES`], values that differ
/// from put to put (`bench/results/kv-separation-2026-12-06.txt`): 1 KiB writes 1.12x
/// at 1 group and 0.97x at 64, p99 0.72x and 0.87x, CPU per write 0.95x and 0.98x.
/// Applies to a database created with it: fjall keeps a keyspace's options from its
/// creation.
pub(crate) const LOG_SEPARATION_THRESHOLD_BYTES: u32 = 512;

/// Plugin values at least this large are kept in blob files too, for the same reason at
/// a smaller scale: a value overwritten or deleted is then not rewritten by every
/// compaction until it is dropped, and a flush or compaction of 1 KiB values holds up
/// the writes behind it less (added to the log's separation, with one value written by
/// every put: 1 KiB write p99 0.63-0.69x, throughput 1.00-1.04x,
/// `bench/results/kv-separation-2026-12-02.txt`). Smaller values stay in the tables,
/// where a read needs no second lookup. fjall's own default threshold.
pub(crate) const KV_SEPARATION_THRESHOLD_BYTES: u32 = 1024;

/// The smallest and largest memtable of the raft log's and the plugin state's
/// keyspaces: the size each of them fills before it is sealed and flushed to disk. Each
/// keyspace draws its size at random in this range when the node opens its database, so
/// that the replicas of a cluster, which receive the same writes, do not all flush at
/// the same moment. The node seals them itself ([`super::sealer`]); see there for why
/// not fjall. A flush writes a memtable out and syncs it while the node goes on
/// committing; with fjall's 64 MiB, persist rounds that overlapped a flush took 20-96
/// ms (5 others in the same run reached 20 ms, none 30), at the same moment on all
/// three nodes, and 1 KiB writes slowed for about a second, to a quarter of their rate
/// at worst (the stalls lined up with the flushes in the node logs and in `flotilla
/// bench --interval`). Smaller memtables make each stall shorter; sizes spread between
/// replicas keep the stalls apart. Measured against 64 MiB everywhere on 3 nodes on one
/// 2-core host, 256 clients, in seven A/Bs over three builds
/// (`bench/results/memtable-2026-12-06.txt`): 1 KiB writes had 0.50-0.86x the p99 in
/// thirteen of fourteen cases (1.06x in one), 0.28-0.54x the p999 at 1 group and
/// 0.64-1.34x at 64 groups, and 0.86-1.31x the throughput. The price is at 16 B: on
/// Batch streams the same throughput and CPU per write, 1.26-1.42x the p999, from more
/// frequent flushes.
pub(crate) const MEMTABLE_BYTES_MIN: u64 = 12 << 20;
/// See [`MEMTABLE_BYTES_MIN`].
pub(crate) const MEMTABLE_BYTES_MAX: u64 = 20 << 20;

/// The memtable size of the keyspaces of small records a persist round or an apply also
/// writes (raft state, meta, apply state): sealed by the node too, so that fjall's own
/// limit is never reached, but near fjall's size, since they fill slowly and sealing
/// them at 12-20 MiB cost 16 B writes CPU (with it, 1.04-1.10x the CPU per write and
/// 0.90-0.92x the throughput of 64 MiB everywhere on Batch streams).
pub(crate) const SMALL_MEMTABLE_BYTES: u64 = 48 << 20;

/// A memtable size from [`MEMTABLE_BYTES_MIN`] to [`MEMTABLE_BYTES_MAX`], at random (1 MiB
/// steps): drawn from the standard library's random hash keys (seeded randomly once per
/// thread, then stepped on each call).
fn memtable_bytes() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let draw = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let steps = (MEMTABLE_BYTES_MAX - MEMTABLE_BYTES_MIN) >> 20;
    MEMTABLE_BYTES_MIN + ((draw % (steps + 1)) << 20)
}

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
    /// Seals the memtables of the keyspaces persist rounds write (raft log, raft state,
    /// meta) and applies write (plugin state, apply state).
    sealer: Arc<super::sealer::Sealer>,
    /// The last persist round written (see [`super::durable_mark`]).
    round: Arc<AtomicU64>,
    mark: Arc<super::durable_mark::DurableMark>,
}

/// The raft log's keyspace: values from [`LOG_SEPARATION_THRESHOLD_BYTES`] up in blob
/// files, uncompressed: an entry lives for seconds, so compressing it would cost CPU on
/// every write to save disk space only briefly.
fn raft_log_options() -> KeyspaceCreateOptions {
    let blobs = KvSeparationOptions::default()
        .separation_threshold(LOG_SEPARATION_THRESHOLD_BYTES)
        .compression(CompressionType::None);
    KeyspaceCreateOptions::default().with_kv_separation(Some(blobs))
}

/// The plugins' state: values from [`KV_SEPARATION_THRESHOLD_BYTES`] up in blob files,
/// compressed as fjall does by default (the state stays on disk).
fn kv_options() -> KeyspaceCreateOptions {
    let blobs = KvSeparationOptions::default().separation_threshold(KV_SEPARATION_THRESHOLD_BYTES);
    KeyspaceCreateOptions::default().with_kv_separation(Some(blobs))
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
        let open_with = |name: &str, options: fn() -> KeyspaceCreateOptions| {
            db.keyspace(name, options)
                .map_err(|e| StoreError(format!("cannot open keyspace {name}: {e}")))
        };
        let open = |name: &str| open_with(name, KeyspaceCreateOptions::default);
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
        let raft_log = open_with("raft_log", raft_log_options)?;
        let raft_state = open("raft_state")?;
        let apply_state = open("apply_state")?;
        let kv = open_with("kv", kv_options)?;
        let sealer = super::sealer::Sealer::start(
            vec![
                (raft_log.clone(), memtable_bytes()),
                (raft_state.clone(), SMALL_MEMTABLE_BYTES),
                (meta.clone(), SMALL_MEMTABLE_BYTES),
            ],
            vec![
                (kv.clone(), memtable_bytes()),
                (apply_state.clone(), SMALL_MEMTABLE_BYTES),
            ],
        )?;
        Ok(Self {
            sealer: Arc::new(sealer),
            raft_log,
            raft_state,
            apply_state,
            kv,
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

    /// Asks for the keyspaces a persist round writes to be sealed where full (see
    /// [`super::sealer`]).
    pub(crate) fn seal_full_log(&self) {
        self.sealer.check_log();
    }

    /// Asks for the keyspaces an apply writes to be sealed where full.
    pub(crate) fn seal_full_apply(&self) {
        self.sealer.check_apply();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memtable_sizes_are_whole_mebibytes_drawn_across_the_range() {
        let draws: std::collections::BTreeSet<u64> = (0..256).map(|_| memtable_bytes()).collect();
        // Both ends are drawn (each missed by 256 draws with odds of about 1e-13).
        assert!(draws.contains(&MEMTABLE_BYTES_MIN), "{draws:?}");
        assert!(draws.contains(&MEMTABLE_BYTES_MAX), "{draws:?}");
        for d in &draws {
            assert!((MEMTABLE_BYTES_MIN..=MEMTABLE_BYTES_MAX).contains(d), "{d}");
            assert_eq!(d % (1 << 20), 0, "{d}");
        }
    }

    /// The plugin state and the raft log are sealed and flushed once their memtable
    /// passes its size, without being told to, and a tight loop of small writes does
    /// not wedge fjall's flush worker (fjall's own limit, 64 MiB, is not
    /// reached here, and with fjall left to rotate at its limit this same loop of
    /// single writes stopped all flushing).
    #[test]
    fn memtables_are_sealed_and_flushed_once_they_pass_their_size() -> Result<(), StoreError> {
        use crate::ids::{GroupId, PluginDigest};
        use crate::raftstore::traits::{
            ApplyState, ApplyStore, GroupApply, GroupRaftWrite, LogStore, RaftWriteBatch,
        };
        let dir = tempfile::tempdir().map_err(err)?;
        let store = Store::open(dir.path())?;
        let value = vec![b'v'; 4096];
        let writes = (MEMTABLE_BYTES_MAX + (4 << 20)) / value.len() as u64;
        let g = GroupId(1);
        for i in 0..writes {
            store.commit_applies(vec![GroupApply {
                group: g,
                writes: crate::raftstore::fsm::WriteSet::from([(
                    i.to_be_bytes().to_vec(),
                    Some(value.clone()),
                )]),
                state: ApplyState {
                    applied_index: i + 1,
                    applied_term: 1,
                    applied_timestamp_ms: 0,
                    plugin: PluginDigest::of(b"p"),
                },
                conf: None,
            }])?;
            let entry = raft::eraftpb::Entry {
                index: i + 1,
                term: 1,
                data: value.clone().into(),
                ..Default::default()
            };
            store.persist_round(RaftWriteBatch {
                groups: vec![GroupRaftWrite {
                    group: g,
                    entries: vec![entry],
                    ..Default::default()
                }],
            })?;
        }
        for keyspace in [&store.kv, &store.raft_log] {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while keyspace.blob_file_count() == 0 {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{:?}: {} MiB written and no flush after 30 s",
                    keyspace.name(),
                    (writes * value.len() as u64) >> 20
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        // The sealing thread let go of the database with the store: it opens again.
        drop(store);
        let store = Store::open(dir.path())?;
        assert_eq!(store.apply_state(g)?.map(|s| s.applied_index), Some(writes));
        Ok(())
    }
}
