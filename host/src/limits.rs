//! Every bound in the node, in one place. Queues, batches, messages and the plugin
//! sandbox all take their limits from here; where two limits relate, a compile-time
//! assertion says how.

/// Largest command (or query request) a client may send, in bytes. Checked at the API
/// before anything reaches Raft.
pub const COMMAND_SIZE_BYTES_MAX: usize = 1024 * 1024;
/// Largest output a plugin may return from one apply or query, in bytes.
pub const OUTPUT_SIZE_BYTES_MAX: usize = 1024 * 1024;
/// Largest gRPC message the server accepts or sends.
pub const GRPC_MESSAGE_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Largest plugin (wasm bytes) accepted by deploy.
pub const PLUGIN_SIZE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Chunk size used by the CLI when streaming a plugin to the server.
pub const PLUGIN_CHUNK_BYTES: usize = 256 * 1024;

/// Commands packed into one raft entry by the leader, at most.
pub const ENTRY_COMMANDS_MAX: usize = 256;
/// Bytes of commands packed into one raft entry, at most.
pub const ENTRY_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Messages one group's mailbox holds before senders are told to back off.
pub const MAILBOX_CAPACITY: usize = 1024;
/// Groups that are polled in one store-loop round, at most (the rest wait for the next).
pub const ROUND_GROUPS_MAX: usize = 4096;
/// Messages drained from one mailbox per round, at most.
pub const ROUND_MESSAGES_PER_GROUP_MAX: usize = 1024;
/// Proposals waiting for apply in one group before new ones get RESOURCE_EXHAUSTED.
pub const PENDING_PROPOSALS_MAX: usize = 8192;
/// Committed-but-not-applied entries in one group before new proposals are refused.
pub const APPLY_LAG_ENTRIES_MAX: u64 = 4096;
/// Apply tasks queued between the store loop and the apply worker.
pub const APPLY_QUEUE_CAPACITY: usize = 4096;
/// Reads that passed their barrier and wait for a query thread, per node.
pub const QUERY_QUEUE_CAPACITY: usize = 4096;
/// Reads a query thread takes from the queue at once.
pub const QUERY_BATCH_MAX: usize = 256;
/// Threads answering reads in the plugin (more than one, so one slow query does not
/// hold up every read).
pub const QUERY_THREADS: usize = 4;
/// Worker threads a node's async runtime may be given (`flotilla server --worker-threads`).
pub const WORKER_THREADS_MAX: usize = 256;
/// Entries kept in a group's raft log after they are applied (compaction keeps the
/// log from growing without bound).
pub const LOG_RETAIN_ENTRIES: u64 = 1024;
/// Groups one node hosts, at most.
pub const GROUPS_PER_NODE_MAX: usize = 100_000;
/// Replicas created by a leader's message (not by `StartReplica`) that may wait for
/// their first snapshot at once; messages that would create more are dropped.
pub const UNINITIALIZED_PEERS_MAX: usize = 256;

/// Milliseconds between raft ticks.
pub const TICK_INTERVAL_MS: u64 = 100;
/// Raft election timeout, in ticks.
pub const ELECTION_TICKS: usize = 10;
/// Raft heartbeat interval, in ticks.
pub const HEARTBEAT_TICKS: usize = 2;
/// Bytes of committed entries handed to the apply loop by one ready, at most (the rest
/// follow in the next round).
pub const READY_COMMITTED_BYTES_MAX: u64 = 16 * 1024 * 1024;
/// Bytes of entries sent in one raft append message.
pub const RAFT_MESSAGE_BYTES_MAX: u64 = 1024 * 1024;
/// Append messages in flight per follower.
pub const RAFT_INFLIGHT_MESSAGES_MAX: usize = 256;

/// Fuel (roughly wasm instructions, host work priced in the same unit; see
/// `plugin::meter`) one apply or query call may burn.
pub const PLUGIN_FUEL_PER_CALL: u64 = 200_000_000;
/// Fuel the commands of one entry may burn together: a command that would start past it
/// does not run and may be retried. With the last command allowed its full budget, an
/// entry costs at most this plus [`PLUGIN_FUEL_PER_CALL`], which bounds how long one
/// entry holds the apply thread.
pub const ENTRY_FUEL_MAX: u64 = PLUGIN_FUEL_PER_CALL;
/// Linear memory one plugin instance may grow to, in bytes.
pub const PLUGIN_MEMORY_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Wasm call stack available to a plugin, in bytes.
pub const PLUGIN_STACK_BYTES_MAX: usize = 512 * 1024;
/// Plugin instances alive at once (the pooling allocator's slots).
pub const PLUGIN_INSTANCES_MAX: u32 = 64;
/// Stack of threads that run plugins (the apply thread, blocking query threads): the
/// plugin's wasm stack lives on the calling thread, on top of the host's own frames.
pub const APPLY_THREAD_STACK_BYTES: usize = 8 * 1024 * 1024;
/// Pairs one `kv.scan` call returns, at most (a larger `limit` is capped).
pub const KV_SCAN_PAIRS_MAX: usize = 10_000;
/// Bytes of keys and values one `kv.scan` call returns, at most (but always one pair,
/// so a scan makes progress): the host reads no more than one page ahead, and the
/// guest SDK's `scan_all` walks a range page by page.
pub const KV_SCAN_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Bytes of one key written by a plugin, at most.
pub const KV_KEY_BYTES_MAX: usize = 16 * 1024;
/// Bytes of one value written by a plugin, at most.
pub const KV_VALUE_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Items one `Batch` stream message may carry; a longer message ends the stream with
/// INVALID_ARGUMENT.
pub const BATCH_ITEMS_PER_MESSAGE_MAX: usize = 1024;
/// Items of one `Batch` stream in flight on the server: it stops reading the stream at
/// this many (so at most this plus one message's items run at once).
pub const BATCH_INFLIGHT_MAX: usize = 4096;
/// Request bytes of one `Batch` stream in flight on the server: it stops reading the
/// stream at this many (plus at most one message).
pub const BATCH_INFLIGHT_BYTES_MAX: usize = 32 * 1024 * 1024;
/// `Batch` streams one node serves at once; more are refused with RESOURCE_EXHAUSTED.
pub const BATCH_STREAMS_MAX: usize = 256;
/// A `Batch` response message stops gathering results at this size (one result, at
/// most an output's size plus a little, always fits a gRPC message).
pub const BATCH_RESPONSE_BYTES_MAX: usize = 2 * 1024 * 1024;
/// `Batch` response messages queued for a slow reader before the stream's results wait.
pub const BATCH_RESPONSES_QUEUED_MAX: usize = 16;
/// Bytes written by one command (sum of keys and values), at most.
pub const KV_WRITE_BYTES_PER_COMMAND_MAX: usize = 16 * 1024 * 1024;
/// Bytes written by the commands of one entry together, at most: a command that would
/// pass it does not run (and may be retried in a later entry).
pub const KV_WRITE_BYTES_PER_ENTRY_MAX: usize = 64 * 1024 * 1024;
/// Keys a group may store unless created with another quota (`group create
/// --quota-keys`, `group set-quota`).
pub const GROUP_QUOTA_KEYS_DEFAULT: u64 = 10_000_000;
/// Bytes of keys and values a group may store unless created with another quota
/// (`--quota-bytes`).
pub const GROUP_QUOTA_BYTES_DEFAULT: u64 = 1024 * 1024 * 1024;
/// Bytes of one guest log line kept; the rest is cut.
pub const GUEST_LOG_LINE_BYTES_MAX: usize = 4 * 1024;
/// Guest log lines one apply or query call may write to the node's log; later lines
/// of the call are dropped (a panic line is still reported as the call's error).
pub const GUEST_LOG_LINES_PER_CALL_MAX: u32 = 64;
/// fjall's flush and compaction threads per node, by default (`flotilla server
/// --storage-threads`). One, not fjall's default of one per core (up to 4): in fjall 3.1
/// with two or more workers, worker 0 hands every compaction request back to the queue
/// and takes it again while the others are busy, a busy loop that took about a fifth of
/// the workers' CPU under 1 KiB writes. Measured (issue 5's note, bench/ab-compare.sh
/// with SERVER_ARGS): one worker gave about +20% writes/s and -16% CPU per write at 1 KiB
/// values on 2 cores, and no change at 16 B.
pub const STORAGE_THREADS_DEFAULT: usize = 1;
/// Most fjall worker threads `--storage-threads` accepts.
pub const STORAGE_THREADS_MAX: usize = 16;
/// A persist round (one write batch and its fsync) at least this long is logged at
/// debug level (`FLOTILLA_LOG=flotilla::raftstore=debug`), to match a latency tail
/// with the storage events around it.
pub const SLOW_PERSIST_ROUND: std::time::Duration = std::time::Duration::from_millis(20);

const _: () = assert!(COMMAND_SIZE_BYTES_MAX <= ENTRY_BYTES_MAX);
const _: () = assert!(ENTRY_BYTES_MAX < GRPC_MESSAGE_BYTES_MAX + COMMAND_SIZE_BYTES_MAX * 4);
const _: () = assert!(OUTPUT_SIZE_BYTES_MAX < GRPC_MESSAGE_BYTES_MAX);
const _: () = assert!(BATCH_RESPONSE_BYTES_MAX + OUTPUT_SIZE_BYTES_MAX < GRPC_MESSAGE_BYTES_MAX);
const _: () = assert!(PLUGIN_CHUNK_BYTES < GRPC_MESSAGE_BYTES_MAX);
const _: () = assert!(HEARTBEAT_TICKS < ELECTION_TICKS);
const _: () = assert!(PLUGIN_STACK_BYTES_MAX * 4 <= APPLY_THREAD_STACK_BYTES);
const _: () = assert!(OUTPUT_SIZE_BYTES_MAX < PLUGIN_MEMORY_BYTES_MAX);
const _: () = assert!(KV_VALUE_BYTES_MAX <= KV_WRITE_BYTES_PER_COMMAND_MAX);
const _: () = assert!(KV_WRITE_BYTES_PER_COMMAND_MAX <= KV_WRITE_BYTES_PER_ENTRY_MAX);
// Every key the host writes fits the store: a user key behind the 8-byte group prefix,
// and the host's own records (request ids of at most 128 bytes behind a short prefix).
const _: () = assert!(8 + KV_KEY_BYTES_MAX <= u16::MAX as usize);
// A scan page (its budget, or one pair when the first is larger) fits a guest's memory
// with room to spare.
const _: () = assert!(
    2 * (KV_SCAN_BYTES_MAX + KV_KEY_BYTES_MAX + KV_VALUE_BYTES_MAX) < PLUGIN_MEMORY_BYTES_MAX
);
const _: () = assert!(ENTRY_COMMANDS_MAX <= PENDING_PROPOSALS_MAX);

#[cfg(test)]
mod tests {
    use super::*;

    /// The guest SDK states the host's KV limits to plugin authors; they must agree.
    #[test]
    fn the_sdk_states_the_hosts_kv_limits() {
        assert_eq!(flotilla_sdk::kv::KEY_BYTES_MAX, KV_KEY_BYTES_MAX);
        assert_eq!(flotilla_sdk::kv::VALUE_BYTES_MAX, KV_VALUE_BYTES_MAX);
        assert_eq!(flotilla_sdk::kv::SCAN_PAGE_BYTES_MAX, KV_SCAN_BYTES_MAX);
    }
}
