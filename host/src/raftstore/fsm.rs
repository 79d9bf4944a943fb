//! The state-machine contract between the raft core and whatever runs the user's code.
//!
//! The apply loop hands a [`StateMachineHost`] the commands of one committed entry with a
//! [`KvView`] of the group's state; the host runs them (in the product: a Wasm plugin,
//! see the `plugin` room) and returns one outcome per command. Writes of a command that
//! fails are dropped from the view; the apply loop commits what is left together with
//! the applied index. Nothing here does IO: reads of committed state go through the
//! [`KvReader`] trait that the storage room implements.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use crate::ids::{GroupId, PluginDigest};
use crate::limits;

/// What the guest learns about the entry being applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryContext {
    pub group: GroupId,
    pub index: u64,
    pub term: u64,
    /// Leader-assigned, milliseconds since the Unix epoch, non-decreasing per group.
    pub timestamp_ms: u64,
    /// Derived from group and index, identical on every replica.
    pub random_seed: u64,
}

impl EntryContext {
    /// The deterministic seed for `(group, index)`: splitmix64 over both.
    pub fn seed_for(group: GroupId, index: u64) -> u64 {
        use crate::splitmix::{INCREMENT, finalize};
        finalize(group.0.wrapping_mul(INCREMENT).wrapping_add(index))
    }
}

/// What the guest learns about a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryContext {
    pub group: GroupId,
    pub applied_index: u64,
    pub applied_timestamp_ms: u64,
}

/// Why one command (or query) failed. Every variant is deterministic for a given plugin,
/// state and entry, so all replicas agree on it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FsmError {
    /// The plugin could not decode the bytes; the message is its decoder's.
    #[error("the plugin could not decode the command: {0}")]
    Invalid(String),
    /// The plugin understood the command and refused it.
    #[error("the plugin rejected the command: {0}")]
    Rejected(String),
    /// The plugin panicked; the message is the panic's.
    #[error("the plugin panicked: {0}")]
    Panicked(String),
    /// The plugin trapped (unreachable, out-of-bounds access, stack overflow, ...).
    #[error("the plugin trapped: {0}")]
    Trapped(String),
    /// The call used up its fuel budget (an endless or too-long computation).
    #[error("the plugin ran out of fuel (budget {budget} units per call)")]
    OutOfFuel { budget: u64 },
    /// The plugin tried to grow its memory past the per-instance limit.
    #[error("the plugin exceeded its memory limit of {limit_bytes} bytes")]
    MemoryLimit { limit_bytes: usize },
    /// The output was larger than the node accepts.
    #[error("the plugin returned {size_bytes} bytes, over the limit of {limit_bytes}")]
    OutputTooLarge {
        size_bytes: usize,
        limit_bytes: usize,
    },
    /// The plugin broke a KV rule (oversized key or value, too many bytes written, a
    /// write during a query).
    #[error("the plugin misused the KV interface: {0}")]
    KvMisuse(String),
    /// The group's plugin code is not present on this node (should not happen: deploy
    /// stores blobs before a group can reference them).
    #[error("plugin {0} is not available on this node")]
    MissingPlugin(PluginDigest),
    /// A storage read failed underneath the plugin. Not deterministic: the apply loop
    /// treats it as fatal for the node rather than as a command outcome.
    #[error("storage error while running the plugin: {0}")]
    Storage(String),
    /// The node could not run the plugin at all (an instance could not be allocated).
    /// Not deterministic either: fatal for the node, never a command outcome, so that
    /// replicas cannot diverge over a local resource failure.
    #[error("the node could not run the plugin: {0}")]
    HostFault(String),
}

/// The output of one command, or why it failed.
pub type CommandOutcome = Result<Vec<u8>, FsmError>;

/// Reads of a group's committed KV state (implemented by the storage room).
pub trait KvReader: Send + Sync + 'static {
    /// The value of `key` in `group`'s state.
    fn get(&self, group: GroupId, key: &[u8]) -> Result<Option<Vec<u8>>, String>;
    /// Pairs with keys in `[start, end)` in ascending order, at most `limit`.
    fn scan(
        &self,
        group: GroupId,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<KvPairs, String>;
}

/// Key-value pairs in ascending key order, as scans return them.
pub type KvPairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Buffered writes: `Some(value)` is a put, `None` a delete.
pub type WriteSet = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// A group's state as one entry's commands see it: committed state, then the writes of
/// earlier commands in the entry, then the current command's writes.
pub struct KvView {
    reader: Arc<dyn KvReader>,
    group: GroupId,
    read_only: bool,
    entry: WriteSet,
    command: WriteSet,
    command_bytes: usize,
}

impl std::fmt::Debug for KvView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvView")
            .field("group", &self.group)
            .field("read_only", &self.read_only)
            .field("entry_writes", &self.entry.len())
            .field("command_writes", &self.command.len())
            .finish()
    }
}

impl KvView {
    /// A view for applying an entry of `group`.
    pub fn for_apply(reader: Arc<dyn KvReader>, group: GroupId) -> Self {
        Self {
            reader,
            group,
            read_only: false,
            entry: WriteSet::new(),
            command: WriteSet::new(),
            command_bytes: 0,
        }
    }

    /// A view for a query: writes are refused.
    pub fn for_query(reader: Arc<dyn KvReader>, group: GroupId) -> Self {
        Self {
            read_only: true,
            ..Self::for_apply(reader, group)
        }
    }

    pub fn group(&self) -> GroupId {
        self.group
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, FsmError> {
        if key.starts_with(super::dedup::RESERVED_PREFIX) {
            return Err(reserved());
        }
        if let Some(v) = self.command.get(key) {
            return Ok(v.clone());
        }
        if let Some(v) = self.entry.get(key) {
            return Ok(v.clone());
        }
        self.reader.get(self.group, key).map_err(FsmError::Storage)
    }

    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), FsmError> {
        self.check_write(key, Some(value))?;
        self.command.insert(key.to_vec(), Some(value.to_vec()));
        Ok(())
    }

    pub fn delete(&mut self, key: &[u8]) -> Result<(), FsmError> {
        self.check_write(key, None)?;
        self.command.insert(key.to_vec(), None);
        Ok(())
    }

    fn check_write(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), FsmError> {
        if self.read_only {
            return Err(FsmError::KvMisuse("a query may not write".into()));
        }
        if key.starts_with(super::dedup::RESERVED_PREFIX) {
            return Err(reserved());
        }
        if key.len() > limits::KV_KEY_BYTES_MAX {
            return Err(FsmError::KvMisuse(format!(
                "key of {} bytes is over the limit of {}",
                key.len(),
                limits::KV_KEY_BYTES_MAX
            )));
        }
        let value_len = value.map_or(0, <[u8]>::len);
        if value_len > limits::KV_VALUE_BYTES_MAX {
            return Err(FsmError::KvMisuse(format!(
                "value of {value_len} bytes is over the limit of {}",
                limits::KV_VALUE_BYTES_MAX
            )));
        }
        self.command_bytes = self.command_bytes.saturating_add(key.len() + value_len);
        if self.command_bytes > limits::KV_WRITE_BYTES_PER_COMMAND_MAX {
            return Err(FsmError::KvMisuse(format!(
                "one command wrote more than {} bytes",
                limits::KV_WRITE_BYTES_PER_COMMAND_MAX
            )));
        }
        Ok(())
    }

    /// Pairs in `[start, end)`, ascending, at most `limit` (capped by
    /// [`limits::KV_SCAN_PAIRS_MAX`]), merging buffered writes over committed state.
    pub fn scan(&self, start: &[u8], end: Option<&[u8]>, limit: u32) -> Result<KvPairs, FsmError> {
        let limit = limit.min(limits::KV_SCAN_PAIRS_MAX) as usize;
        // Host-reserved keys sort last; a scan never reaches them.
        let reserved = super::dedup::RESERVED_PREFIX;
        let end = match end {
            Some(e) if e <= reserved => Some(e),
            _ => Some(reserved),
        };
        if limit == 0 || end.is_some_and(|e| e <= start) {
            return Ok(Vec::new());
        }
        let range = (
            Bound::Included(start.to_vec()),
            end.map_or(Bound::Unbounded, |e| Bound::Excluded(e.to_vec())),
        );
        let command: Vec<_> = self.command.range(range.clone()).collect();
        let entry: Vec<_> = self.entry.range(range).collect();
        // Buffered deletes can hide committed keys, so ask for enough extra pairs.
        let want = limit + command.len() + entry.len();
        let committed = self
            .reader
            .scan(self.group, start, end, want)
            .map_err(FsmError::Storage)?;
        Ok(merge_layers(&command, &entry, &committed, limit))
    }

    /// Keeps the current command's writes (it succeeded).
    pub fn commit_command(&mut self) {
        let writes = std::mem::take(&mut self.command);
        self.entry.extend(writes);
        self.command_bytes = 0;
    }

    /// Drops the current command's writes (it failed).
    pub fn discard_command(&mut self) {
        self.command.clear();
        self.command_bytes = 0;
    }

    /// The writes of every committed command of the entry.
    pub fn into_writes(mut self) -> WriteSet {
        self.discard_command();
        self.entry
    }
}

fn reserved() -> FsmError {
    FsmError::KvMisuse("keys starting with 0xFF 0xFF are reserved for the host".into())
}

/// Merges three ascending layers; the first layer that has a key decides its value.
pub(crate) fn merge_layers(
    top: &[(&Vec<u8>, &Option<Vec<u8>>)],
    middle: &[(&Vec<u8>, &Option<Vec<u8>>)],
    bottom: &[(Vec<u8>, Vec<u8>)],
    limit: usize,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let (mut t, mut m, mut b) = (0usize, 0usize, 0usize);
    while out.len() < limit {
        let keys = [
            top.get(t).map(|(k, _)| k.as_slice()),
            middle.get(m).map(|(k, _)| k.as_slice()),
            bottom.get(b).map(|(k, _)| k.as_slice()),
        ];
        let Some(min) = keys.iter().flatten().min().copied() else {
            break;
        };
        let value: Option<Vec<u8>> = if keys[0] == Some(min) {
            top.get(t).and_then(|(_, v)| (*v).clone())
        } else if keys[1] == Some(min) {
            middle.get(m).and_then(|(_, v)| (*v).clone())
        } else {
            bottom.get(b).map(|(_, v)| v.clone())
        };
        let key = min.to_vec();
        if keys[0] == Some(min) {
            t += 1;
        }
        if keys[1] == Some(min) {
            m += 1;
        }
        if keys[2] == Some(min) {
            b += 1;
        }
        if let Some(v) = value {
            out.push((key, v));
        }
    }
    out
}

/// Runs user state machines. The plugin room implements this with wasmtime; tests and
/// benchmarks may implement it natively.
pub trait StateMachineHost: Send + Sync + 'static {
    /// Applies the commands of one entry in order against `kv`. For each command that
    /// succeeds the implementation calls [`KvView::commit_command`], for each that fails
    /// [`KvView::discard_command`]. Returns the view and one outcome per command.
    fn apply_entry(
        &self,
        plugin: PluginDigest,
        ctx: EntryContext,
        commands: &[&[u8]],
        kv: KvView,
    ) -> (KvView, Vec<CommandOutcome>);

    /// Answers one read-only request.
    fn query(
        &self,
        plugin: PluginDigest,
        ctx: QueryContext,
        request: &[u8],
        kv: KvView,
    ) -> CommandOutcome;

    /// Answers several read-only requests of one group against the same state, one
    /// outcome per request, in order. Each answer must be the one [`Self::query`] would
    /// give alone; an implementation may share work between them (one plugin instance).
    fn query_batch(
        &self,
        plugin: PluginDigest,
        ctx: QueryContext,
        requests: &[&[u8]],
        reader: Arc<dyn KvReader>,
    ) -> Vec<CommandOutcome> {
        requests
            .iter()
            .map(|r| self.query(plugin, ctx, r, KvView::for_query(reader.clone(), ctx.group)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raftstore::mem_kv::MemKv;

    fn view_over(pairs: &[(&str, &str)]) -> KvView {
        let reader = MemKv::default();
        for (k, v) in pairs {
            reader.insert(k.as_bytes(), v.as_bytes());
        }
        KvView::for_apply(Arc::new(reader), GroupId(1))
    }

    fn keys(pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<String> {
        pairs
            .into_iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    String::from_utf8_lossy(&k),
                    String::from_utf8_lossy(&v)
                )
            })
            .collect()
    }

    #[test]
    fn later_layers_shadow_committed_state() {
        let mut kv = view_over(&[("a", "1"), ("b", "2"), ("c", "3")]);
        kv.put(b"b", b"20").expect("put");
        kv.commit_command();
        kv.delete(b"a").expect("delete");
        kv.put(b"d", b"4").expect("put");
        assert_eq!(kv.get(b"a").expect("get"), None);
        assert_eq!(kv.get(b"b").expect("get"), Some(b"20".to_vec()));
        let all = kv.scan(b"", None, 10).expect("scan");
        assert_eq!(keys(all), ["b=20", "c=3", "d=4"]);
        let bounded = kv.scan(b"b", Some(b"d"), 10).expect("scan");
        assert_eq!(keys(bounded), ["b=20", "c=3"]);
        let limited = kv.scan(b"", None, 1).expect("scan");
        assert_eq!(keys(limited), ["b=20"]);
    }

    #[test]
    fn discarded_command_leaves_no_trace() {
        let mut kv = view_over(&[("a", "1")]);
        kv.put(b"x", b"1").expect("put");
        kv.commit_command();
        kv.put(b"y", b"2").expect("put");
        kv.delete(b"a").expect("delete");
        kv.discard_command();
        let writes = kv.into_writes();
        assert_eq!(writes.len(), 1);
        assert_eq!(writes.get(b"x".as_slice()), Some(&Some(b"1".to_vec())));
    }

    #[test]
    fn queries_cannot_write_and_keys_are_bounded() {
        let reader = Arc::new(MemKv::default());
        let mut q = KvView::for_query(reader.clone(), GroupId(1));
        assert!(matches!(q.put(b"k", b"v"), Err(FsmError::KvMisuse(_))));
        let mut a = KvView::for_apply(reader, GroupId(1));
        let huge = vec![0u8; limits::KV_KEY_BYTES_MAX + 1];
        assert!(matches!(a.put(&huge, b"v"), Err(FsmError::KvMisuse(_))));
    }

    #[test]
    fn seeds_differ_by_group_and_index() {
        let a = EntryContext::seed_for(GroupId(1), 1);
        assert_ne!(a, EntryContext::seed_for(GroupId(1), 2));
        assert_ne!(a, EntryContext::seed_for(GroupId(2), 1));
        assert_eq!(a, EntryContext::seed_for(GroupId(1), 1));
    }
}
