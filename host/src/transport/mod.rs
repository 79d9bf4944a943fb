//! The node-to-node transport room: raft messages over tonic, batched per destination
//! node on one long-lived client stream ([`client::GrpcTransport`]), snapshot files
//! streamed in chunks beside them, and plugin blobs fetched on demand
//! ([`server::TransportService`]). This module holds the traits the rest of the node
//! implements (so the transport is testable with fakes), the transport's bounds, its
//! error type and its counters.

pub mod client;
pub mod server;
pub mod stats;

#[cfg(test)]
mod tests;

use std::time::Duration;

use raft::eraftpb::Message;

use crate::ids::{GroupId, NodeId, PeerId, PluginDigest};
use crate::limits;
use crate::raftstore::{RaftError, RaftStore};

pub use client::GrpcTransport;
pub use server::TransportService;
pub use stats::TransportStats;

/// Raft messages waiting for one destination node, at most. `send` drops (and reports
/// unreachable) what does not fit.
pub const QUEUE_CAPACITY: usize = 4096;
/// Raft messages packed into one `RaftBatch`, at most.
pub const BATCH_MESSAGES_MAX: usize = 256;
/// Encoded bytes of one `RaftBatch`, at most (a single message larger than this still
/// travels, alone in its batch, up to [`MESSAGE_BYTES_MAX`]).
pub const BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Encoded bytes of one raft message, at most: one maximal entry plus a full append of
/// smaller ones, plus slack for the message's own fields. Larger messages are dropped
/// and reported unreachable.
pub const MESSAGE_BYTES_MAX: usize =
    limits::ENTRY_BYTES_MAX + limits::RAFT_MESSAGE_BYTES_MAX as usize + 64 * 1024;
/// Largest gRPC message the transport server decodes: the largest batch (or single
/// message) plus slack for envelope framing.
pub const DECODE_BYTES_MAX: usize = max(BATCH_BYTES_MAX, MESSAGE_BYTES_MAX) + 64 * 1024;
/// Batches handed to one open stream and not yet written to the connection, at most.
pub const STREAM_BATCHES_IN_FLIGHT: usize = 2;

/// How long a connection attempt to another node may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// First delay before reconnecting to a node that could not be reached.
pub const BACKOFF_INITIAL: Duration = Duration::from_millis(100);
/// Longest delay between reconnection attempts (the delay doubles up to this).
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A stream that stayed up this long counts as a success: when it breaks, the backoff
/// starts over from [`BACKOFF_INITIAL`].
pub const STREAM_HEALTHY_AFTER: Duration = Duration::from_secs(1);
/// When a stream breaks, every (group, peer) that got a message on it within about this
/// long (between one and two windows) is reported unreachable.
pub const LOST_WINDOW: Duration = Duration::from_secs(1);
/// HTTP/2 keepalive ping interval on node-to-node connections (detects dead peers whose
/// TCP connection does not fail by itself).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
/// How long a keepalive ping may go unanswered before the connection is closed.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3);

/// File bytes per `SnapshotChunk`, at most.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;
/// Snapshots this node sends at once, at most (the rest wait for a slot).
pub const SNAPSHOT_SENDS_MAX: usize = 4;
/// Snapshots waiting for or holding a send slot, at most; beyond that a snapshot
/// message fails at once (`report_snapshot(.., false)`) and raft retries later.
pub const SNAPSHOT_SENDS_QUEUED_MAX: usize = 64;
/// Snapshots this node receives at once, at most; more get `RESOURCE_EXHAUSTED`.
pub const SNAPSHOT_RECVS_MAX: usize = 4;
/// How long a snapshot receiver waits for the next chunk before giving up.
pub const SNAPSHOT_CHUNK_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes per `PluginBytesChunk` served by `FetchPlugin`.
pub const PLUGIN_CHUNK_BYTES: usize = limits::PLUGIN_CHUNK_BYTES;
/// Largest plugin blob accepted from `FetchPlugin`.
pub const PLUGIN_FETCH_BYTES_MAX: usize = limits::PLUGIN_SIZE_BYTES_MAX;
/// How long fetching a plugin blob from another node may take.
pub const PLUGIN_FETCH_TIMEOUT: Duration = Duration::from_secs(30);

const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

const _: () = assert!(BATCH_BYTES_MAX <= MESSAGE_BYTES_MAX);
const _: () = assert!(SNAPSHOT_CHUNK_BYTES + 64 * 1024 <= DECODE_BYTES_MAX);
const _: () = assert!(SNAPSHOT_SENDS_MAX <= SNAPSHOT_SENDS_QUEUED_MAX);

/// Where other nodes listen.
pub trait AddressBook: Send + Sync + 'static {
    /// The `host:port` (e.g. `127.0.0.1:7421`) node `node` serves gRPC on, if known.
    fn address(&self, node: NodeId) -> Option<String>;
}

/// Where the transport delivers what arrives, and where it reports delivery failures:
/// the raft core, or a fake in tests.
pub trait Inbound: Send + Sync + 'static {
    /// Hands a raft message from another node to `group`. Must not block.
    fn step(&self, group: GroupId, msg: Message) -> Result<(), RaftError>;
    /// Tells `group` that messages to `peer` were lost.
    fn report_unreachable(&self, group: GroupId, peer: PeerId);
    /// Tells `group` how a snapshot transfer to `peer` ended.
    fn report_snapshot(&self, group: GroupId, peer: PeerId, ok: bool);
}

impl Inbound for RaftStore {
    fn step(&self, group: GroupId, msg: Message) -> Result<(), RaftError> {
        RaftStore::step(self, group, msg)
    }

    fn report_unreachable(&self, group: GroupId, peer: PeerId) {
        RaftStore::report_unreachable(self, group, peer);
    }

    fn report_snapshot(&self, group: GroupId, peer: PeerId, ok: bool) {
        RaftStore::report_snapshot(self, group, peer, ok);
    }
}

/// The node's content-addressed plugin blobs, as far as snapshots need them: a replica
/// that receives a snapshot must have the snapshot's plugin before it installs it.
pub trait PluginBlobs: Send + Sync + 'static {
    /// Whether the blob is stored (and loaded) on this node.
    fn has(&self, digest: PluginDigest) -> bool;
    /// The blob's original bytes, if stored.
    fn bytes(&self, digest: PluginDigest) -> Option<Vec<u8>>;
    /// Validates, compiles and stores a blob whose digest the caller has checked.
    /// Blocking: call it on a blocking thread.
    fn install(&self, digest: PluginDigest, bytes: Vec<u8>) -> Result<(), String>;
}

/// What can go wrong moving bytes between nodes.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("no address is known for node {0}")]
    UnknownNode(NodeId),
    #[error("bad address {addr:?} for node {node}: {reason}")]
    BadAddress {
        node: NodeId,
        addr: String,
        reason: String,
    },
    #[error("cannot connect to node {node} at {addr}: {reason}")]
    Connect {
        node: NodeId,
        addr: String,
        reason: String,
    },
    #[error("node {node} answered {code:?}: {message}")]
    Rpc {
        node: NodeId,
        code: tonic::Code,
        message: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("cannot encode a raft message: {0}")]
    Encode(String),
    #[error("bad snapshot message: {0}")]
    BadSnapshot(String),
    #[error("plugin {digest} from node {node}: {reason}")]
    Plugin {
        digest: PluginDigest,
        node: NodeId,
        reason: String,
    },
}

impl TransportError {
    fn rpc(node: NodeId, status: &tonic::Status) -> Self {
        Self::Rpc {
            node,
            code: status.code(),
            message: status.message().to_string(),
        }
    }

    fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}
