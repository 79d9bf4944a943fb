//! The state-machine contract between the raft core and whatever runs the user's code.
//!
//! The apply loop hands a [`StateMachineHost`] the commands of one committed entry with a
//! [`KvView`] of the group's state; the host runs them (in the product: a Wasm plugin,
//! see the `plugin` room) and returns one outcome per command. Writes of a command that
//! fails are dropped from the view; the apply loop commits what is left together with
//! the applied index. Nothing here does IO: reads of committed state go through the
//! [`KvReader`] trait that the storage room implements.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use super::kv_iter::{Overlay, collect_page, is_empty_range};
use super::quota::Account;

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
    /// The call used up its fuel budget (an endless or too-long computation, or too
    /// much host work asked for: host calls are paid from the same budget).
    #[error(
        "the plugin ran out of fuel (budget {budget} units per call, for its instructions \
         and the host work it asks for)"
    )]
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
    /// The plugin broke a KV rule (a write during a query, a host-reserved key).
    #[error("the plugin misused the KV interface: {0}")]
    KvMisuse(String),
    /// A key, value or write volume over the host's limits, usually because the
    /// request carried one (a key longer than the host stores).
    #[error("{0}")]
    KvLimit(String),
    /// The command was not run (or ran and had every effect discarded) because the
    /// entry it was packed into had used up its shared budget; nothing changed, and it
    /// may be sent again as it is.
    #[error("the command did not run: {0}; it may be retried")]
    NotRun(String),
    /// Host code panicked while running the command. Deterministic like every other
    /// outcome (the same entry panics the same way on every replica), so the command is
    /// rejected everywhere instead of the node stopping; the node logs it loudly.
    #[error(
        "the node hit an internal error running this command (rejected on every replica, \
         state unchanged): {0}"
    )]
    HostPanic(String),
    /// The command's writes would take the group past its quota of stored keys or
    /// bytes; its writes were discarded.
    #[error(
        "the group's storage quota refused the command: {0} (delete data, or raise the quota with `flotilla group set-quota`)"
    )]
    QuotaExceeded(String),
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

pub use super::kv_iter::{KvItem, KvIter, KvPairs, ScanLimit};

/// Reads of a group's committed KV state (implemented by the storage room). Reads never
/// fail on what they are asked: a key longer than any stored key is simply absent.
pub trait KvReader: Send + Sync + 'static {
    /// The value of `key` in `group`'s state.
    fn get(&self, group: GroupId, key: &[u8]) -> Result<Option<Vec<u8>>, String>;
    /// The size in bytes of `key`'s value, if it has one (a store may answer without
    /// reading the value).
    fn value_size(&self, group: GroupId, key: &[u8]) -> Result<Option<usize>, String> {
        Ok(self.get(group, key)?.map(|v| v.len()))
    }
    /// Pairs with keys in `[start, end)` (`None`: to the end of the group) in ascending
    /// order, read as the caller iterates.
    fn scan<'a>(&'a self, group: GroupId, start: &[u8], end: Option<&[u8]>) -> KvIter<'a>;
}

/// One page of a [`KvView::scan`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub pairs: KvPairs,
    /// Bytes of the pairs' keys and values.
    pub bytes: usize,
    /// Items the merge read from every layer to make the page (at least `pairs.len()`).
    pub visited: usize,
}

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
    /// Bytes written by the entry's commands that succeeded so far.
    entry_bytes: usize,
    /// The group's quota and usage, kept current command by command when the group
    /// has a quota (plugin groups do; the meta group does not).
    account: Option<Account>,
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
            entry_bytes: 0,
            account: None,
        }
    }

    /// Holds the entry's commands to `account`'s quota, tracking its usage.
    pub fn with_account(mut self, account: Account) -> Self {
        self.account = Some(account);
        self
    }

    /// The quota and usage after the commands kept so far, if tracked.
    pub fn account(&self) -> Option<Account> {
        self.account
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
        check_key("get", key)?;
        if let Some(v) = self.command.get(key) {
            return Ok(v.clone());
        }
        if let Some(v) = self.entry.get(key) {
            return Ok(v.clone());
        }
        self.reader.get(self.group, key).map_err(FsmError::Storage)
    }

    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), FsmError> {
        self.check_write("put", key, Some(value))?;
        self.command.insert(key.to_vec(), Some(value.to_vec()));
        Ok(())
    }

    pub fn delete(&mut self, key: &[u8]) -> Result<(), FsmError> {
        self.check_write("delete", key, None)?;
        self.command.insert(key.to_vec(), None);
        Ok(())
    }

    fn check_write(&mut self, op: &str, key: &[u8], value: Option<&[u8]>) -> Result<(), FsmError> {
        if self.read_only {
            return Err(FsmError::KvMisuse(format!(
                "kv.{op}: a query may not write"
            )));
        }
        check_key(op, key)?;
        let value_len = value.map_or(0, <[u8]>::len);
        if value_len > limits::KV_VALUE_BYTES_MAX {
            return Err(FsmError::KvLimit(format!(
                "kv.{op}: a value of {value_len} bytes is over the limit of {} bytes",
                limits::KV_VALUE_BYTES_MAX
            )));
        }
        self.command_bytes = self.command_bytes.saturating_add(key.len() + value_len);
        if self.command_bytes > limits::KV_WRITE_BYTES_PER_COMMAND_MAX {
            return Err(FsmError::KvLimit(format!(
                "one command may write at most {} bytes of keys and values",
                limits::KV_WRITE_BYTES_PER_COMMAND_MAX
            )));
        }
        if self.entry_bytes.saturating_add(self.command_bytes)
            > limits::KV_WRITE_BYTES_PER_ENTRY_MAX
        {
            return Err(FsmError::NotRun(format!(
                "with the {} bytes written by the commands before it in its raft entry, \
                 its writes would pass the entry's limit of {} bytes",
                self.entry_bytes,
                limits::KV_WRITE_BYTES_PER_ENTRY_MAX
            )));
        }
        Ok(())
    }

    /// Pairs in `[start, end)`, ascending, merging buffered writes over committed state,
    /// as one page bounded by `limit` (its pairs capped by [`limits::KV_SCAN_PAIRS_MAX`];
    /// a plugin's scans also carry a byte budget, see the plugin room's `kv.scan`).
    /// Nothing beyond the page is read. The page says how many items the merge visited
    /// in all layers (pairs returned, and the ones hidden or replaced by buffered writes),
    /// so that the caller can charge for the work and not only for what is returned.
    pub fn scan(
        &self,
        start: &[u8],
        end: Option<&[u8]>,
        limit: ScanLimit,
    ) -> Result<Page, FsmError> {
        // Bounds may point into the host's keys (a scan to `0xFF 0xFF` is common): the
        // range is cut below them instead. Only their length is checked.
        check_key_len("scan", start)?;
        if let Some(end) = end {
            check_key_len("scan", end)?;
        }
        let limit = ScanLimit {
            pairs: limit.pairs.min(limits::KV_SCAN_PAIRS_MAX),
            ..limit
        };
        // Host-reserved keys sort last; a scan never reaches them.
        let reserved = super::dedup::RESERVED_PREFIX;
        let end = match end {
            Some(e) if e <= reserved => e,
            _ => reserved,
        };
        if is_empty_range(start, Some(end)) {
            return Ok(Page::default());
        }
        let range = (
            Bound::Included(start.to_vec()),
            Bound::Excluded(end.to_vec()),
        );
        let visited = Cell::new(0usize);
        let bump = || visited.set(visited.get() + 1);
        let committed = self
            .reader
            .scan(self.group, start, Some(end))
            .inspect(|_| bump());
        let below = Overlay::new(layer(&self.entry, &range, &bump), Box::new(committed));
        let merged = Overlay::new(layer(&self.command, &range, &bump), Box::new(below));
        let (pairs, bytes) = collect_page(merged, limit).map_err(FsmError::Storage)?;
        Ok(Page {
            pairs,
            bytes,
            visited: visited.get(),
        })
    }

    /// Keeps the current command's writes (it succeeded), unless they would take the
    /// group past its quota: then they are dropped and the error says which figure.
    pub fn commit_command(&mut self) -> Result<(), FsmError> {
        if let Some(account) = self.account {
            let (keys, bytes) = match self.command_growth() {
                Ok(growth) => growth,
                Err(e) => {
                    self.discard_command();
                    return Err(e);
                }
            };
            match account.after(keys, bytes) {
                Ok(usage) => self.account = Some(Account { usage, ..account }),
                Err(e) => {
                    self.discard_command();
                    return Err(e);
                }
            }
        }
        let writes = std::mem::take(&mut self.command);
        self.entry.extend(writes);
        self.entry_bytes = self.entry_bytes.saturating_add(self.command_bytes);
        self.command_bytes = 0;
        Ok(())
    }

    /// Keys and bytes the current command's writes add to the group (negative: remove),
    /// against what the keys hold before it: earlier commands' writes, then the state.
    fn command_growth(&self) -> Result<(i64, i64), FsmError> {
        let (mut keys, mut bytes) = (0i64, 0i64);
        for (key, new) in &self.command {
            let old = match self.entry.get(key) {
                Some(v) => v.as_ref().map(Vec::len),
                None => self
                    .reader
                    .value_size(self.group, key)
                    .map_err(FsmError::Storage)?,
            };
            let size = |value: Option<usize>| value.map(|v| (key.len() + v) as i64);
            match (size(old), size(new.as_ref().map(Vec::len))) {
                (None, None) => {}
                (None, Some(n)) => (keys, bytes) = (keys + 1, bytes + n),
                (Some(o), None) => (keys, bytes) = (keys - 1, bytes - o),
                (Some(o), Some(n)) => bytes += n - o,
            }
        }
        Ok((keys, bytes))
    }

    /// Keeps the command's writes if `outcome` is a success and the quota allows them,
    /// drops them otherwise; returns the command's final outcome.
    pub fn settle(&mut self, outcome: CommandOutcome) -> CommandOutcome {
        match outcome {
            Ok(output) => self.commit_command().map(|()| output),
            Err(e) => {
                self.discard_command();
                Err(e)
            }
        }
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

/// A layer of buffered writes in `range`, read lazily (a write is copied only when the
/// merge reaches it), calling `visit` for each one read.
fn layer<'a>(
    writes: &'a WriteSet,
    range: &(Bound<Vec<u8>>, Bound<Vec<u8>>),
    visit: &'a dyn Fn(),
) -> impl Iterator<Item = (Vec<u8>, Option<Vec<u8>>)> + 'a {
    writes
        .range::<Vec<u8>, _>(range.clone())
        .map(|(k, v)| (k.clone(), v.clone()))
        .inspect(move |_| visit())
}

/// Refuses a key longer than the host holds ([`limits::KV_KEY_BYTES_MAX`]).
fn check_key_len(op: &str, key: &[u8]) -> Result<(), FsmError> {
    if key.len() > limits::KV_KEY_BYTES_MAX {
        return Err(FsmError::KvLimit(format!(
            "kv.{op}: a key of {} bytes is over the limit of {} bytes",
            key.len(),
            limits::KV_KEY_BYTES_MAX
        )));
    }
    Ok(())
}

/// Refuses a key the host cannot hold (over [`limits::KV_KEY_BYTES_MAX`]) or that
/// belongs to the host (under [`super::dedup::RESERVED_PREFIX`]), naming the call.
fn check_key(op: &str, key: &[u8]) -> Result<(), FsmError> {
    check_key_len(op, key)?;
    if key.starts_with(super::dedup::RESERVED_PREFIX) {
        return Err(FsmError::KvMisuse(format!(
            "kv.{op}: keys starting with 0xFF 0xFF are reserved for the host"
        )));
    }
    Ok(())
}

/// Runs user state machines. The plugin room implements this with wasmtime; tests and
/// benchmarks may implement it natively.
pub trait StateMachineHost: Send + Sync + 'static {
    /// Whether groups running `plugin` are held to a storage quota (user plugins are;
    /// a built-in state machine such as the meta group's need not be).
    fn has_quota(&self, plugin: PluginDigest) -> bool {
        let _ = plugin;
        true
    }

    /// Applies the commands of one entry in order against `kv`. For each command that
    /// succeeds the implementation calls [`KvView::commit_command`] (whose error, a
    /// quota refusal, becomes the command's outcome), for each that fails
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
        kv.commit_command().expect("no quota");
        kv.delete(b"a").expect("delete");
        kv.put(b"d", b"4").expect("put");
        assert_eq!(kv.get(b"a").expect("get"), None);
        assert_eq!(kv.get(b"b").expect("get"), Some(b"20".to_vec()));
        let all = kv
            .scan(b"", None, ScanLimit::pairs(10))
            .expect("scan")
            .pairs;
        assert_eq!(keys(all), ["b=20", "c=3", "d=4"]);
        let bounded = kv
            .scan(b"b", Some(b"d"), ScanLimit::pairs(10))
            .expect("scan")
            .pairs;
        assert_eq!(keys(bounded), ["b=20", "c=3"]);
        let limited = kv.scan(b"", None, ScanLimit::pairs(1)).expect("scan").pairs;
        assert_eq!(keys(limited), ["b=20"]);
    }

    /// A page pays for what the merge walked, not only for what it returns: buffered
    /// deletes that hide committed pairs are visited too.
    #[test]
    fn a_page_counts_the_items_it_walked_in_every_layer() {
        let pairs: Vec<(String, String)> =
            (0..50).map(|i| (format!("k{i:02}"), "v".into())).collect();
        let refs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut kv = view_over(&refs);
        for (k, _) in pairs.iter().take(40) {
            kv.delete(k.as_bytes()).expect("delete");
        }
        let page = kv.scan(b"", None, ScanLimit::pairs(5)).expect("scan");
        assert_eq!(
            keys(page.pairs.clone()),
            ["k40=v", "k41=v", "k42=v", "k43=v", "k44=v"]
        );
        // 40 deletes and the 40 pairs they hide, then the 5 returned (and one peeked).
        assert!(page.visited >= 85, "{}", page.visited);
        assert_eq!(page.bytes, 5 * 4);
    }

    #[test]
    fn discarded_command_leaves_no_trace() {
        let mut kv = view_over(&[("a", "1")]);
        kv.put(b"x", b"1").expect("put");
        kv.commit_command().expect("no quota");
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
        assert!(matches!(a.put(&huge, b"v"), Err(FsmError::KvLimit(_))));
        assert!(matches!(a.get(&huge), Err(FsmError::KvLimit(_))));
        assert!(matches!(a.delete(&huge), Err(FsmError::KvLimit(_))));
        let page = a.scan(&huge, None, ScanLimit::pairs(1));
        assert!(matches!(page, Err(FsmError::KvLimit(m)) if m.contains("kv.scan")));
        let page = a.scan(b"", Some(&huge), ScanLimit::pairs(1));
        assert!(matches!(page, Err(FsmError::KvLimit(_))));
    }

    #[test]
    fn seeds_differ_by_group_and_index() {
        let a = EntryContext::seed_for(GroupId(1), 1);
        assert_ne!(a, EntryContext::seed_for(GroupId(1), 2));
        assert_ne!(a, EntryContext::seed_for(GroupId(2), 1));
        assert_eq!(a, EntryContext::seed_for(GroupId(1), 1));
    }
}
