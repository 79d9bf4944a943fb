//! The persistence traits the raft core needs. The storage room implements them with
//! fjall; simulations may implement them in memory. Errors from them are fatal for the
//! node: a failed fsync is never retried (fail-stop).

use raft::eraftpb::{ConfState, Entry, HardState};

use super::fsm::{KvReader, WriteSet};
use crate::ids::{GroupId, PluginDigest};

/// A storage failure. The store loop stops the node on any of these.
#[derive(Debug, thiserror::Error)]
#[error("storage failure: {0}")]
pub struct StoreError(pub String);

/// One group's share of a persistence round.
#[derive(Debug, Default)]
pub struct GroupRaftWrite {
    pub group: GroupId,
    /// Entries to append. Any stored entry at or after the first one's index is replaced
    /// (a new leader may overwrite an uncommitted suffix).
    pub entries: Vec<Entry>,
    /// The last index stored before this write, so a replaced suffix can be removed.
    pub previous_last_index: u64,
    pub hard_state: Option<HardState>,
    pub conf_state: Option<ConfState>,
    /// Remove log entries up to and including this index, remembering its term.
    pub compact_to: Option<(u64, u64)>,
    /// The truncated index before this write: entries after it up to `compact_to` are
    /// the ones to remove (no scan over earlier, already removed keys).
    pub previous_truncated: u64,
    /// A snapshot at `(index, term)` is being installed: remove the whole log, record
    /// `(index, term)` as truncated, and leave a marker that the apply side has yet to
    /// load the snapshot's data (a restart redoes that from the received file).
    pub snapshot: Option<(u64, u64)>,
    /// This write must be synced before the round's `persisted_messages` leave and its
    /// entries count as stored (entries, snapshot, term or vote). Commit-index and
    /// compaction-only writes need not be.
    pub must_sync: bool,
}

/// Everything a persistence round writes, for every group with work.
#[derive(Debug, Default)]
pub struct RaftWriteBatch {
    pub groups: Vec<GroupRaftWrite>,
}

impl RaftWriteBatch {
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Whether the round needs an fsync (any group's write does).
    pub fn must_sync(&self) -> bool {
        self.groups.iter().any(|g| g.must_sync)
    }

    /// Log entries the batch appends, over all groups.
    pub fn entry_count(&self) -> usize {
        self.groups.iter().map(|g| g.entries.len()).sum()
    }
}

/// What a group left on disk, read at startup.
#[derive(Debug, Clone, Default)]
pub struct PersistedRaftState {
    pub hard_state: HardState,
    pub conf_state: ConfState,
    /// Index and term of the last entry removed by compaction (0, 0 if none).
    pub truncated: (u64, u64),
    /// Index of the last stored entry (== truncated.0 if the log is empty).
    pub last_index: u64,
    /// A snapshot whose data has not been loaded into the apply side yet.
    pub pending_snapshot: Option<(u64, u64)>,
}

/// A snapshot written to a file by [`ApplyStore::generate_snapshot`].
#[derive(Clone, Debug)]
pub struct SnapshotInfo {
    /// The apply state the snapshot captures (its index and term are the snapshot's).
    pub state: ApplyState,
    /// The group's configuration at that index.
    pub conf_state: ConfState,
    pub file_size_bytes: u64,
}

/// The applied state of a group, committed atomically with the state changes of the
/// entries it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApplyState {
    pub applied_index: u64,
    pub applied_term: u64,
    pub applied_timestamp_ms: u64,
    /// The plugin the group runs after `applied_index`.
    pub plugin: PluginDigest,
}

/// One group's part of an apply commit.
#[derive(Debug)]
pub struct GroupApply {
    pub group: GroupId,
    pub writes: WriteSet,
    pub state: ApplyState,
    /// The configuration after a membership change among the committed entries.
    pub conf: Option<ConfState>,
}

/// The raft log and raft state.
pub trait LogStore: Send + Sync + 'static {
    /// Writes every group's changes of one round in one atomic batch and syncs it to disk
    /// once (group commit). Returns only after the data is durable.
    fn persist_round(&self, batch: RaftWriteBatch) -> Result<(), StoreError>;

    /// Entries `[low, high)` of `group`, stopping early once `max_size_bytes` is passed
    /// (but always at least one entry).
    fn entries(
        &self,
        group: GroupId,
        low: u64,
        high: u64,
        max_size_bytes: u64,
    ) -> Result<Vec<Entry>, StoreError>;

    /// The raft state of `group`, or `None` if the group has none on disk.
    fn raft_state(&self, group: GroupId) -> Result<Option<PersistedRaftState>, StoreError>;

    /// The highest peer id of `group` that was removed from this node: messages to it
    /// (or to an older peer) must not bring the group back.
    fn tombstone(&self, group: GroupId) -> Result<Option<u64>, StoreError>;
}

/// A point-in-time view of committed state: KV data and apply state agree, so a query
/// sees exactly the state at the applied index it reports, however long it runs.
pub trait ReadSnapshot: KvReader {
    fn apply_state(&self, group: GroupId) -> Result<Option<ApplyState>, StoreError>;
}

/// The state machine's side of storage: committed KV state and apply state.
pub trait ApplyStore: KvReader {
    /// A consistent view of everything committed so far.
    fn read_snapshot(&self) -> std::sync::Arc<dyn ReadSnapshot>;

    /// Commits, for every group in `applies`, its `writes`, `state` and (after a
    /// membership change) its new configuration, all in one atomic batch: the apply
    /// loop's group commit across groups. Not synced: the raft log is durable, so a
    /// crash only rolls each group back to an earlier applied index together with its
    /// state and configuration.
    fn commit_applies(&self, applies: Vec<GroupApply>) -> Result<(), StoreError>;

    /// [`ApplyStore::commit_applies`] for one group.
    fn commit_apply(
        &self,
        group: GroupId,
        writes: WriteSet,
        state: ApplyState,
        conf: Option<&ConfState>,
    ) -> Result<(), StoreError> {
        self.commit_applies(vec![GroupApply {
            group,
            writes,
            state,
            conf: conf.cloned(),
        }])
    }

    /// The apply state of `group`.
    fn apply_state(&self, group: GroupId) -> Result<Option<ApplyState>, StoreError>;

    /// The configuration committed with the apply state, if a membership change or a
    /// snapshot ever set one (otherwise the raft state's initial one holds).
    fn conf_state(&self, group: GroupId) -> Result<Option<ConfState>, StoreError>;

    /// Removes every trace of `group`: log, raft state, apply state and KV data. With
    /// `tombstone`, remembers that this peer was removed, so it is never recreated.
    fn destroy_group(&self, group: GroupId, tombstone: Option<u64>) -> Result<(), StoreError>;

    /// Writes the group's applied state (KV data, apply state, configuration) to a
    /// snapshot file, from one consistent point in time. Runs off the raft loop.
    fn generate_snapshot(&self, group: GroupId) -> Result<SnapshotInfo, StoreError>;

    /// Loads a received snapshot at `(index, term)` into the group: replaces its KV data,
    /// apply state and configuration, then clears the pending-snapshot marker. Safe to
    /// redo after a crash. Fails (fatally) if the file is missing or corrupt.
    fn install_snapshot(
        &self,
        group: GroupId,
        index: u64,
        term: u64,
    ) -> Result<SnapshotInfo, StoreError>;
}
