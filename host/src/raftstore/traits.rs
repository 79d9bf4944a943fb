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

    /// Commits `writes` and `state` for `group` in one atomic batch (not synced: the raft
    /// log is durable, so a crash only rolls the group back to an earlier applied index
    /// together with its state).
    fn commit_apply(
        &self,
        group: GroupId,
        writes: WriteSet,
        state: ApplyState,
    ) -> Result<(), StoreError>;

    /// The apply state of `group`.
    fn apply_state(&self, group: GroupId) -> Result<Option<ApplyState>, StoreError>;

    /// Removes every trace of `group`: log, raft state, apply state and KV data.
    fn destroy_group(&self, group: GroupId) -> Result<(), StoreError>;
}
