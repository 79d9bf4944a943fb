//! The receiving side: [`TransportService`], the `RaftTransport` gRPC service. `Stream`
//! decodes each envelope and steps it into the raft core, skipping (and logging) bad
//! ones without breaking the stream; `Snapshot` checks the first chunk, makes sure the
//! snapshot's plugin is present (fetching it from the sender if not), writes the file to
//! `recv/` through a synced temporary file and only then steps the MsgSnapshot;
//! `FetchPlugin` serves plugin blobs in chunks.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use prost::Message as _;
use raft::eraftpb::{Message, MessageType};
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use super::client::fetch_plugin;
use super::stats::{TransportStats, bump};
use super::{
    AddressBook, DECODE_BYTES_MAX, Inbound, PLUGIN_CHUNK_BYTES, PluginBlobs,
    SNAPSHOT_CHUNK_TIMEOUT, SNAPSHOT_RECVS_MAX, TransportError,
};
use crate::ids::{GroupId, NodeId, PeerId, PluginDigest};
use crate::proto::v1::raft_transport_server::{RaftTransport, RaftTransportServer};
use crate::proto::v1::{
    FetchPluginRequest, PluginBytesChunk, RaftBatch, RaftEnvelope, SnapshotAck, SnapshotChunk,
    SnapshotHeader, StreamAck,
};
use crate::storage::snapfile::SnapDir;

/// The `RaftTransport` service of one node.
pub struct TransportService {
    self_node: NodeId,
    inbound: Arc<dyn Inbound>,
    snaps: SnapDir,
    blobs: Arc<dyn PluginBlobs>,
    addresses: Arc<dyn AddressBook>,
    recv_slots: Arc<Semaphore>,
    /// Groups with a snapshot being received (one at a time per group: they share the
    /// temporary file name).
    receiving: Arc<parking_lot::Mutex<HashSet<GroupId>>>,
    /// Serializes plugin fetches, so concurrent snapshots fetch a missing plugin once.
    fetching: tokio::sync::Mutex<()>,
    stats: Arc<TransportStats>,
}

impl std::fmt::Debug for TransportService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportService")
            .field("self_node", &self.self_node)
            .finish_non_exhaustive()
    }
}

impl TransportService {
    pub fn new(
        self_node: NodeId,
        inbound: Arc<dyn Inbound>,
        snaps: SnapDir,
        blobs: Arc<dyn PluginBlobs>,
        addresses: Arc<dyn AddressBook>,
    ) -> Self {
        Self {
            self_node,
            inbound,
            snaps,
            blobs,
            addresses,
            recv_slots: Arc::new(Semaphore::new(SNAPSHOT_RECVS_MAX)),
            receiving: Arc::new(parking_lot::Mutex::new(HashSet::new())),
            fetching: tokio::sync::Mutex::new(()),
            stats: Arc::new(TransportStats::default()),
        }
    }

    /// The receiving side's counters.
    pub fn stats(&self) -> Arc<TransportStats> {
        self.stats.clone()
    }

    /// The tonic service, with the message size bound the transport needs.
    pub fn service(self) -> RaftTransportServer<TransportService> {
        RaftTransportServer::new(self)
            .max_decoding_message_size(DECODE_BYTES_MAX)
            .max_encoding_message_size(DECODE_BYTES_MAX)
    }

    /// Steps one envelope, or says why it is skipped.
    fn deliver(&self, from_node: NodeId, envelope: RaftEnvelope) {
        let group = GroupId(envelope.group_id);
        match self.check_envelope(from_node, &envelope) {
            Ok(msg) => {
                bump(&self.stats.messages_received, 1);
                if let Err(error) = self.inbound.step(group, msg) {
                    debug!(%group, %from_node, %error, "raft message not stepped");
                }
            }
            Err(error) => {
                bump(&self.stats.envelopes_rejected, 1);
                warn!(%group, %from_node, error, "skipping a bad raft envelope");
            }
        }
    }

    fn check_envelope(
        &self,
        from_node: NodeId,
        envelope: &RaftEnvelope,
    ) -> Result<Message, String> {
        let msg = <Message as protobuf::Message>::parse_from_bytes(&envelope.message)
            .map_err(|e| format!("the raft message does not decode: {e}"))?;
        if msg.get_msg_type() == MessageType::MsgSnapshot {
            return Err("a MsgSnapshot must come through the Snapshot call with its file".into());
        }
        self.check_peers(from_node, &msg)?;
        Ok(msg)
    }

    /// The message must be for a peer on this node and from a peer on the sender.
    fn check_peers(&self, from_node: NodeId, msg: &Message) -> Result<(), String> {
        let to = PeerId(msg.to);
        if to.node() != self.self_node {
            return Err(format!(
                "addressed to peer {to} on node {}, but this is node {}",
                to.node(),
                self.self_node
            ));
        }
        let from = PeerId(msg.from);
        if from.node() != from_node {
            return Err(format!(
                "sent by peer {from} of node {}, but it came from node {from_node}",
                from.node()
            ));
        }
        Ok(())
    }

    /// Checks the first chunk of a snapshot transfer.
    fn check_first_chunk(&self, chunk: &SnapshotChunk) -> Result<IncomingSnapshot, Status> {
        let group = GroupId(chunk.group_id);
        let from_node = NodeId(chunk.from_node);
        if chunk.raft_message.is_empty() {
            return Err(invalid(format!(
                "the first snapshot chunk for group {group} carries no raft message"
            )));
        }
        let msg = <Message as protobuf::Message>::parse_from_bytes(&chunk.raft_message).map_err(
            |e| {
                invalid(format!(
                    "the raft message of the first snapshot chunk for group {group} does not decode: {e}"
                ))
            },
        )?;
        if msg.get_msg_type() != MessageType::MsgSnapshot {
            return Err(invalid(format!(
                "the first snapshot chunk for group {group} carries a {:?}, not a MsgSnapshot",
                msg.get_msg_type()
            )));
        }
        self.check_peers(from_node, &msg)
            .map_err(|e| invalid(format!("snapshot for group {group}: {e}")))?;
        let snapshot = msg.get_snapshot();
        let header = SnapshotHeader::decode(snapshot.get_data()).map_err(|e| {
            invalid(format!(
                "the snapshot data for group {group} is not a SnapshotHeader: {e}"
            ))
        })?;
        if header.group_id != group.0 {
            return Err(invalid(format!(
                "the snapshot header is for group {}, the chunk for group {group}",
                header.group_id
            )));
        }
        let meta = snapshot.get_metadata();
        if header.index != meta.index || header.term != meta.term {
            return Err(invalid(format!(
                "the snapshot header of group {group} is at ({}, {}), its raft metadata at ({}, {})",
                header.index, header.term, meta.index, meta.term
            )));
        }
        let digest = PluginDigest::from_slice(&header.plugin_digest).ok_or_else(|| {
            invalid(format!(
                "the snapshot header of group {group} has a {}-byte plugin digest, not a 32-byte sha256",
                header.plugin_digest.len()
            ))
        })?;
        Ok(IncomingSnapshot {
            group,
            from_node,
            msg,
            header,
            digest,
        })
    }

    /// Makes sure the snapshot's plugin is installed here, fetching it from the sender.
    async fn ensure_plugin(&self, incoming: &IncomingSnapshot) -> Result<(), Status> {
        let digest = incoming.digest;
        if self.blobs.has(digest) {
            return Ok(());
        }
        let _one_fetch = self.fetching.lock().await;
        if self.blobs.has(digest) {
            return Ok(());
        }
        let from = incoming.from_node;
        info!(group = %incoming.group, %digest, %from, "fetching the plugin of an incoming snapshot");
        let bytes = fetch_plugin(&*self.addresses, from, digest)
            .await
            .map_err(|e| {
                let text = format!(
                    "cannot get plugin {digest} for the snapshot of group {}: {e}",
                    incoming.group
                );
                match e {
                    TransportError::Plugin { .. } => Status::data_loss(text),
                    _ => Status::unavailable(text),
                }
            })?;
        let blobs = self.blobs.clone();
        tokio::task::spawn_blocking(move || blobs.install(digest, bytes))
            .await
            .map_err(|e| Status::internal(format!("plugin install task failed: {e}")))?
            .map_err(|e| {
                Status::failed_precondition(format!(
                    "plugin {digest} fetched from node {from} does not install: {e}"
                ))
            })
    }

    /// Writes the data of every chunk to `tmp`, checks the size, and syncs the file.
    async fn write_snapshot_file(
        &self,
        incoming: &IncomingSnapshot,
        first_data: Vec<u8>,
        chunks: &mut Streaming<SnapshotChunk>,
        tmp: &Path,
    ) -> Result<u64, Status> {
        let group = incoming.group;
        let expected = incoming.header.file_size_bytes;
        let mut file = tokio::fs::File::create(tmp)
            .await
            .map_err(|e| io_status("cannot create", tmp, &e))?;
        let mut got: u64 = 0;
        let mut data = first_data;
        loop {
            if got + data.len() as u64 > expected {
                return Err(invalid(format!(
                    "snapshot too long: more than the announced {expected} bytes for group {group}"
                )));
            }
            file.write_all(&data)
                .await
                .map_err(|e| io_status("cannot write", tmp, &e))?;
            got += data.len() as u64;
            let next = tokio::time::timeout(SNAPSHOT_CHUNK_TIMEOUT, chunks.message())
                .await
                .map_err(|_| {
                    Status::deadline_exceeded(format!(
                        "no snapshot chunk for group {group} within {} s (got {got} of {expected} bytes)",
                        SNAPSHOT_CHUNK_TIMEOUT.as_secs()
                    ))
                })??;
            let Some(chunk) = next else {
                break;
            };
            if chunk.group_id != 0 && chunk.group_id != group.0 {
                return Err(invalid(format!(
                    "a chunk for group {} inside the snapshot of group {group}",
                    chunk.group_id
                )));
            }
            if !chunk.raft_message.is_empty() {
                return Err(invalid(format!(
                    "only the first chunk of a snapshot may carry a raft message (group {group})"
                )));
            }
            data = chunk.data;
        }
        if got < expected {
            return Err(invalid(format!(
                "snapshot truncated: got {got} of {expected} bytes"
            )));
        }
        file.flush()
            .await
            .map_err(|e| io_status("cannot flush", tmp, &e))?;
        file.sync_all()
            .await
            .map_err(|e| io_status("cannot sync", tmp, &e))?;
        Ok(got)
    }

    /// Claims `group` for one inbound snapshot; the claim ends when the guard drops.
    fn claim(&self, group: GroupId) -> Result<ReceivingGuard, Status> {
        if !self.receiving.lock().insert(group) {
            return Err(Status::aborted(format!(
                "a snapshot of group {group} is already being received"
            )));
        }
        Ok(ReceivingGuard {
            receiving: self.receiving.clone(),
            group,
        })
    }
}

/// A checked first chunk.
struct IncomingSnapshot {
    group: GroupId,
    from_node: NodeId,
    msg: Message,
    header: SnapshotHeader,
    digest: PluginDigest,
}

struct ReceivingGuard {
    receiving: Arc<parking_lot::Mutex<HashSet<GroupId>>>,
    group: GroupId,
}

impl Drop for ReceivingGuard {
    fn drop(&mut self) {
        self.receiving.lock().remove(&self.group);
    }
}

/// Removes a half-written temporary file unless disarmed, also when the call is
/// dropped mid-transfer.
struct TmpFile {
    path: Option<PathBuf>,
}

impl Drop for TmpFile {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn invalid(message: impl Into<String>) -> Status {
    Status::invalid_argument(message)
}

fn io_status(what: &str, path: &Path, e: &std::io::Error) -> Status {
    Status::internal(format!("{what} {}: {e}", path.display()))
}

/// Syncs a directory so a rename inside it survives a crash.
async fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
        .await
        .map_err(std::io::Error::other)?
}

type PluginStream = Pin<Box<dyn Stream<Item = Result<PluginBytesChunk, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl RaftTransport for TransportService {
    async fn stream(
        &self,
        request: Request<Streaming<RaftBatch>>,
    ) -> Result<Response<StreamAck>, Status> {
        let mut batches = request.into_inner();
        while let Some(batch) = batches.message().await? {
            let from_node = NodeId(batch.from_node);
            for envelope in batch.messages {
                self.deliver(from_node, envelope);
            }
        }
        Ok(Response::new(StreamAck {}))
    }

    async fn snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<SnapshotAck>, Status> {
        let _slot = self.recv_slots.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "node {} is already receiving {SNAPSHOT_RECVS_MAX} snapshots; retry later",
                self.self_node
            ))
        })?;
        let mut chunks = request.into_inner();
        let first = tokio::time::timeout(SNAPSHOT_CHUNK_TIMEOUT, chunks.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no first snapshot chunk"))??
            .ok_or_else(|| invalid("empty snapshot stream: no first chunk"))?;
        let incoming = self.check_first_chunk(&first)?;
        let group = incoming.group;
        let _claim = self.claim(group)?;
        self.ensure_plugin(&incoming).await?;
        let (index, term) = (incoming.header.index, incoming.header.term);
        let tmp = self.snaps.recv_tmp_path(group, index, term);
        let path = self.snaps.recv_path(group, index, term);
        let mut tmp_guard = TmpFile {
            path: Some(tmp.clone()),
        };
        let bytes = self
            .write_snapshot_file(&incoming, first.data, &mut chunks, &tmp)
            .await?;
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(|e| io_status("cannot rename", &tmp, &e))?;
        tmp_guard.path = None;
        if let Some(dir) = path.parent() {
            sync_dir(dir)
                .await
                .map_err(|e| io_status("cannot sync", dir, &e))?;
        }
        info!(%group, index, term, bytes, from = %incoming.from_node, "snapshot received");
        self.inbound.step(group, incoming.msg).map_err(|e| {
            Status::unavailable(format!(
                "the snapshot of group {group} was received but not accepted: {e}"
            ))
        })?;
        bump(&self.stats.snapshots_received, 1);
        bump(&self.stats.snapshot_bytes_received, bytes);
        Ok(Response::new(SnapshotAck {}))
    }

    type FetchPluginStream = PluginStream;

    async fn fetch_plugin(
        &self,
        request: Request<FetchPluginRequest>,
    ) -> Result<Response<Self::FetchPluginStream>, Status> {
        let raw = request.into_inner().digest;
        let digest = PluginDigest::from_slice(&raw).ok_or_else(|| {
            invalid(format!(
                "a plugin digest is a 32-byte sha256, got {} bytes",
                raw.len()
            ))
        })?;
        let blobs = self.blobs.clone();
        let bytes = tokio::task::spawn_blocking(move || blobs.bytes(digest))
            .await
            .map_err(|e| Status::internal(format!("plugin read task failed: {e}")))?
            .ok_or_else(|| {
                Status::not_found(format!(
                    "plugin {digest} is not stored on node {}",
                    self.self_node
                ))
            })?;
        let total = bytes.len() as u64;
        let bytes = Arc::new(bytes);
        let chunks = bytes.len().div_ceil(PLUGIN_CHUNK_BYTES).max(1);
        let stream = futures::stream::iter((0..chunks).map(move |i| {
            let start = i * PLUGIN_CHUNK_BYTES;
            let end = (start + PLUGIN_CHUNK_BYTES).min(bytes.len());
            Ok(PluginBytesChunk {
                data: bytes.get(start..end).unwrap_or_default().to_vec(),
                total_size_bytes: total,
            })
        }));
        Ok(Response::new(Box::pin(stream)))
    }
}
