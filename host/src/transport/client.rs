//! The sending side: [`GrpcTransport`], the raft core's [`Transport`] over tonic. `send`
//! routes each message into its destination node's bounded queue and returns at once;
//! one task per destination connects lazily, keeps one long-lived client-streaming
//! `Stream` call open and packs whatever is queued into bounded `RaftBatch`es. A broken
//! stream is reopened with exponential backoff, and what it may have lost is reported
//! unreachable. Snapshot messages leave the stream: a snapshot task (bounded
//! concurrency) streams the snapshot file with the `Snapshot` RPC and reports the outcome.
//! The helpers that connect to another node and fetch a plugin blob live here too.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use prost::Message as _;
use raft::eraftpb::MessageType;
use tokio::io::AsyncReadExt;
use tokio::runtime::Handle;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, info, warn};

use super::stats::{TransportStats, bump};
use super::{
    AddressBook, BACKOFF_INITIAL, BACKOFF_MAX, BATCH_BYTES_MAX, BATCH_MESSAGES_MAX,
    CONNECT_TIMEOUT, DECODE_BYTES_MAX, Inbound, KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT, LOST_WINDOW,
    MESSAGE_BYTES_MAX, PLUGIN_FETCH_BYTES_MAX, PLUGIN_FETCH_TIMEOUT, QUEUE_CAPACITY,
    SNAPSHOT_CHUNK_BYTES, SNAPSHOT_SENDS_MAX, SNAPSHOT_SENDS_QUEUED_MAX, STREAM_BATCHES_IN_FLIGHT,
    STREAM_HEALTHY_AFTER, TransportError,
};
use crate::ids::{GroupId, NodeId, PeerId, PluginDigest};
use crate::proto::v1::raft_transport_client::RaftTransportClient;
use crate::proto::v1::{
    FetchPluginRequest, RaftBatch, RaftEnvelope, SnapshotChunk, SnapshotHeader, StreamAck,
};
use crate::raftstore::transport::{OutMessage, Transport};
use crate::storage::snapfile::SnapDir;

/// What every task of the transport shares.
struct Ctx {
    self_node: NodeId,
    addresses: Arc<dyn AddressBook>,
    inbound: Arc<dyn Inbound>,
    snaps: SnapDir,
    runtime: Handle,
    stats: Arc<TransportStats>,
}

impl Ctx {
    /// Reports each distinct (group, peer) once.
    fn report_unreachable(&self, pairs: impl IntoIterator<Item = (GroupId, PeerId)>) {
        let pairs: HashSet<(GroupId, PeerId)> = pairs.into_iter().collect();
        for (group, peer) in pairs {
            self.inbound.report_unreachable(group, peer);
        }
    }
}

/// The raft core's transport over gRPC. Cheap to share; dropping the last handle stops
/// the per-destination tasks once their queues drain.
pub struct GrpcTransport {
    ctx: Arc<Ctx>,
    queues: parking_lot::Mutex<HashMap<NodeId, mpsc::Sender<OutMessage>>>,
    snapshot_slots: Arc<Semaphore>,
    snapshots_queued: Arc<AtomicUsize>,
}

impl std::fmt::Debug for GrpcTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcTransport")
            .field("self_node", &self.ctx.self_node)
            .finish_non_exhaustive()
    }
}

impl GrpcTransport {
    /// A transport for node `self_node` whose tasks run on `runtime`. `send` may be
    /// called from any thread, tokio or not.
    pub fn new(
        self_node: NodeId,
        addresses: Arc<dyn AddressBook>,
        inbound: Arc<dyn Inbound>,
        snaps: SnapDir,
        runtime: Handle,
    ) -> Arc<Self> {
        Arc::new(Self {
            ctx: Arc::new(Ctx {
                self_node,
                addresses,
                inbound,
                snaps,
                runtime,
                stats: Arc::new(TransportStats::default()),
            }),
            queues: parking_lot::Mutex::new(HashMap::new()),
            snapshot_slots: Arc::new(Semaphore::new(SNAPSHOT_SENDS_MAX)),
            snapshots_queued: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The sending side's counters.
    pub fn stats(&self) -> Arc<TransportStats> {
        self.ctx.stats.clone()
    }

    /// Hands a snapshot message to a snapshot task.
    fn send_snapshot(&self, out: OutMessage) {
        let peer = PeerId(out.msg.to);
        if self.snapshots_queued.fetch_add(1, Ordering::AcqRel) >= SNAPSHOT_SENDS_QUEUED_MAX {
            self.snapshots_queued.fetch_sub(1, Ordering::AcqRel);
            warn!(
                group = %out.group,
                %peer,
                "too many snapshots waiting to be sent ({SNAPSHOT_SENDS_QUEUED_MAX}); failing this one"
            );
            bump(&self.ctx.stats.snapshots_failed, 1);
            self.ctx.inbound.report_snapshot(out.group, peer, false);
            return;
        }
        let ctx = self.ctx.clone();
        let slots = self.snapshot_slots.clone();
        let queued = self.snapshots_queued.clone();
        self.ctx.runtime.spawn(async move {
            let result = match slots.acquire_owned().await {
                Ok(_slot) => send_snapshot_file(&ctx, &out).await,
                Err(_) => Err(TransportError::BadSnapshot(
                    "the snapshot sender is shut down".into(),
                )),
            };
            queued.fetch_sub(1, Ordering::AcqRel);
            match result {
                Ok(bytes) => {
                    info!(group = %out.group, %peer, to_node = %out.to_node, bytes, "snapshot sent");
                    bump(&ctx.stats.snapshots_sent, 1);
                    bump(&ctx.stats.snapshot_bytes_sent, bytes);
                    ctx.inbound.report_snapshot(out.group, peer, true);
                }
                Err(error) => {
                    warn!(group = %out.group, %peer, to_node = %out.to_node, %error, "snapshot not sent");
                    bump(&ctx.stats.snapshots_failed, 1);
                    ctx.inbound.report_snapshot(out.group, peer, false);
                }
            }
        });
    }
}

impl Transport for GrpcTransport {
    fn send(&self, msgs: Vec<OutMessage>) {
        let mut unreachable = Vec::new();
        {
            let mut queues = self.queues.lock();
            for out in msgs {
                if out.msg.get_msg_type() == MessageType::MsgSnapshot {
                    self.send_snapshot(out);
                    continue;
                }
                let queue = match queues.entry(out.to_node) {
                    Entry::Occupied(e) => e.into_mut(),
                    Entry::Vacant(e) => {
                        if self.ctx.addresses.address(out.to_node).is_none() {
                            debug!(node = %out.to_node, group = %out.group, "no address for node; dropping");
                            bump(&self.ctx.stats.dropped_unreachable, 1);
                            unreachable.push((out.group, PeerId(out.msg.to)));
                            continue;
                        }
                        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
                        let worker = NodeWorker::new(self.ctx.clone(), out.to_node, rx);
                        self.ctx.runtime.spawn(worker.run());
                        e.insert(tx)
                    }
                };
                match queue.try_send(out) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(out)) => {
                        bump(&self.ctx.stats.dropped_queue_full, 1);
                        unreachable.push((out.group, PeerId(out.msg.to)));
                    }
                    Err(mpsc::error::TrySendError::Closed(out)) => {
                        // The worker is gone (the runtime is shutting down); the next
                        // send starts a new one.
                        bump(&self.ctx.stats.dropped_unreachable, 1);
                        queues.remove(&out.to_node);
                        unreachable.push((out.group, PeerId(out.msg.to)));
                    }
                }
            }
        }
        if !unreachable.is_empty() {
            self.ctx.report_unreachable(unreachable);
        }
    }
}

/// One encoded message waiting for a batch.
struct Encoded {
    group: GroupId,
    peer: PeerId,
    envelope: RaftEnvelope,
    /// Bytes the envelope adds to a `RaftBatch`.
    size: usize,
}

/// The open `Stream` call to one node.
struct OpenStream {
    batches: mpsc::Sender<RaftBatch>,
    call: JoinHandle<Result<tonic::Response<StreamAck>, tonic::Status>>,
    opened: Instant,
}

/// Exponential backoff between connection attempts.
struct Backoff {
    next: std::time::Duration,
    retry_at: Option<Instant>,
}

impl Backoff {
    fn new() -> Self {
        Self {
            next: BACKOFF_INITIAL,
            retry_at: None,
        }
    }

    fn ready(&self) -> bool {
        self.retry_at.is_none_or(|t| Instant::now() >= t)
    }

    fn failed(&mut self) {
        self.retry_at = Some(Instant::now() + self.next);
        self.next = (self.next * 2).min(BACKOFF_MAX);
    }

    fn reset(&mut self) {
        self.next = BACKOFF_INITIAL;
        self.retry_at = None;
    }
}

/// The (group, peer) pairs that got messages on the current stream lately: two
/// generations of about [`LOST_WINDOW`] each.
struct Recent {
    current: HashSet<(GroupId, PeerId)>,
    previous: HashSet<(GroupId, PeerId)>,
    since: Instant,
}

impl Recent {
    fn new() -> Self {
        Self {
            current: HashSet::new(),
            previous: HashSet::new(),
            since: Instant::now(),
        }
    }

    fn note(&mut self, pairs: impl IntoIterator<Item = (GroupId, PeerId)>) {
        if self.since.elapsed() >= LOST_WINDOW {
            self.previous = std::mem::take(&mut self.current);
            self.since = Instant::now();
        }
        self.current.extend(pairs);
    }

    fn take(&mut self) -> HashSet<(GroupId, PeerId)> {
        let mut all = std::mem::take(&mut self.current);
        all.extend(self.previous.drain());
        all
    }
}

/// What woke an idle worker.
enum Wake {
    Message(Option<OutMessage>),
    StreamEnded(String),
}

/// The task that owns one destination node's queue and stream.
struct NodeWorker {
    ctx: Arc<Ctx>,
    node: NodeId,
    queue: mpsc::Receiver<OutMessage>,
    /// A message taken from the queue that did not fit the previous batch.
    carry: Option<Encoded>,
    stream: Option<OpenStream>,
    backoff: Backoff,
    recent: Recent,
}

impl NodeWorker {
    fn new(ctx: Arc<Ctx>, node: NodeId, queue: mpsc::Receiver<OutMessage>) -> Self {
        Self {
            ctx,
            node,
            queue,
            carry: None,
            stream: None,
            backoff: Backoff::new(),
            recent: Recent::new(),
        }
    }

    async fn run(mut self) {
        loop {
            let first = match self.carry.take() {
                Some(e) => e,
                None => {
                    let wake = match &mut self.stream {
                        Some(open) => tokio::select! {
                            m = self.queue.recv() => Wake::Message(m),
                            r = &mut open.call => Wake::StreamEnded(call_outcome(r)),
                        },
                        None => Wake::Message(self.queue.recv().await),
                    };
                    match wake {
                        Wake::Message(None) => break,
                        Wake::Message(Some(out)) => match self.encode(out) {
                            Some(e) => e,
                            None => continue,
                        },
                        Wake::StreamEnded(why) => {
                            self.broken(why);
                            continue;
                        }
                    }
                }
            };
            let batch = self.fill(first);
            self.deliver(batch).await;
        }
        if let Some(open) = self.stream.take() {
            // Closing the batch channel ends the call cleanly.
            drop(open.batches);
            let _ = tokio::time::timeout(CONNECT_TIMEOUT, open.call).await;
        }
        debug!(node = %self.node, "raft stream worker stopped");
    }

    /// Encodes a message; a message that cannot travel is dropped and reported.
    fn encode(&self, out: OutMessage) -> Option<Encoded> {
        let peer = PeerId(out.msg.to);
        let bytes = match protobuf::Message::write_to_bytes(&out.msg) {
            Ok(b) => b,
            Err(error) => {
                warn!(group = %out.group, %peer, %error, "cannot encode a raft message; dropping it");
                self.drop_messages([(out.group, peer)]);
                return None;
            }
        };
        if bytes.len() > MESSAGE_BYTES_MAX {
            warn!(
                group = %out.group,
                %peer,
                bytes = bytes.len(),
                "raft message larger than {MESSAGE_BYTES_MAX} bytes; dropping it"
            );
            self.drop_messages([(out.group, peer)]);
            return None;
        }
        let envelope = RaftEnvelope {
            group_id: out.group.0,
            message: bytes,
        };
        let len = envelope.encoded_len();
        Some(Encoded {
            group: out.group,
            peer,
            envelope,
            size: 1 + prost::length_delimiter_len(len) + len,
        })
    }

    /// Packs `first` and whatever else is queued into one bounded batch.
    fn fill(&mut self, first: Encoded) -> Vec<Encoded> {
        let mut bytes = first.size;
        let mut batch = vec![first];
        while batch.len() < BATCH_MESSAGES_MAX {
            let Ok(out) = self.queue.try_recv() else {
                break;
            };
            let Some(e) = self.encode(out) else {
                continue;
            };
            if bytes + e.size > BATCH_BYTES_MAX {
                self.carry = Some(e);
                break;
            }
            bytes += e.size;
            batch.push(e);
        }
        batch
    }

    /// Sends one batch, opening the stream first if needed.
    async fn deliver(&mut self, batch: Vec<Encoded>) {
        if self.stream.is_none() {
            if !self.backoff.ready() {
                self.drop_messages(batch.iter().map(|e| (e.group, e.peer)));
                return;
            }
            match self.open().await {
                Ok(open) => self.stream = Some(open),
                Err(error) => {
                    warn!(node = %self.node, %error, retry_in_ms = self.backoff.next.as_millis() as u64, "raft stream not opened");
                    bump(&self.ctx.stats.connect_failures, 1);
                    self.backoff.failed();
                    self.drop_messages(batch.iter().map(|e| (e.group, e.peer)));
                    return;
                }
            }
        }
        let Some(open) = self.stream.as_mut() else {
            return;
        };
        let count = batch.len();
        let mut pairs = Vec::with_capacity(count);
        let mut messages = Vec::with_capacity(count);
        for e in batch {
            pairs.push((e.group, e.peer));
            messages.push(e.envelope);
        }
        self.recent.note(pairs);
        let sent = open
            .batches
            .send(RaftBatch {
                from_node: self.ctx.self_node.0,
                messages,
            })
            .await;
        match sent {
            Ok(()) => self.ctx.stats.record_batch(count),
            Err(_) => {
                // The call ended and dropped its side of the channel; its outcome
                // follows at once.
                let why = match tokio::time::timeout(CONNECT_TIMEOUT, &mut open.call).await {
                    Ok(r) => call_outcome(r),
                    Err(_) => "the stream closed".to_string(),
                };
                bump(&self.ctx.stats.dropped_unreachable, count as u64);
                self.broken(why);
            }
        }
    }

    async fn open(&self) -> Result<OpenStream, TransportError> {
        let mut client = connect(&*self.ctx.addresses, self.node).await?;
        let (batches, rx) = mpsc::channel(STREAM_BATCHES_IN_FLIGHT);
        let call = self
            .ctx
            .runtime
            .spawn(async move { client.stream(ReceiverStream::new(rx)).await });
        bump(&self.ctx.stats.streams_opened, 1);
        debug!(node = %self.node, "raft stream opened");
        Ok(OpenStream {
            batches,
            call,
            opened: Instant::now(),
        })
    }

    /// The stream is gone: report what it may have lost, and back off unless it had
    /// been healthy for a while.
    fn broken(&mut self, why: String) {
        let Some(open) = self.stream.take() else {
            return;
        };
        open.call.abort();
        bump(&self.ctx.stats.stream_breaks, 1);
        if open.opened.elapsed() >= STREAM_HEALTHY_AFTER {
            self.backoff.reset();
        } else {
            self.backoff.failed();
        }
        warn!(node = %self.node, why, "raft stream broke");
        self.ctx.report_unreachable(self.recent.take());
    }

    fn drop_messages(&self, pairs: impl IntoIterator<Item = (GroupId, PeerId)>) {
        let pairs: Vec<_> = pairs.into_iter().collect();
        bump(&self.ctx.stats.dropped_unreachable, pairs.len() as u64);
        self.ctx.report_unreachable(pairs);
    }
}

fn call_outcome(
    r: Result<Result<tonic::Response<StreamAck>, tonic::Status>, tokio::task::JoinError>,
) -> String {
    match r {
        Ok(Ok(_)) => "the receiver ended the stream".to_string(),
        Ok(Err(status)) => format!("{:?}: {}", status.code(), status.message()),
        Err(e) => format!("the stream task failed: {e}"),
    }
}

/// An error and its causes, for people (tonic's transport errors hide the cause).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Connects to `node`'s transport service.
pub(crate) async fn connect(
    addresses: &dyn AddressBook,
    node: NodeId,
) -> Result<RaftTransportClient<Channel>, TransportError> {
    let addr = addresses
        .address(node)
        .ok_or(TransportError::UnknownNode(node))?;
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| TransportError::BadAddress {
            node,
            addr: addr.clone(),
            reason: error_chain(&e),
        })?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| TransportError::Connect {
            node,
            addr,
            reason: error_chain(&e),
        })?;
    Ok(RaftTransportClient::new(channel)
        .max_decoding_message_size(DECODE_BYTES_MAX)
        .max_encoding_message_size(DECODE_BYTES_MAX))
}

/// Streams the snapshot file of a MsgSnapshot to its node; returns the file's size.
async fn send_snapshot_file(ctx: &Ctx, out: &OutMessage) -> Result<u64, TransportError> {
    let snapshot = out.msg.get_snapshot();
    let header = SnapshotHeader::decode(snapshot.get_data()).map_err(|e| {
        TransportError::BadSnapshot(format!("its data is not a SnapshotHeader: {e}"))
    })?;
    if header.group_id != out.group.0 {
        return Err(TransportError::BadSnapshot(format!(
            "its header is for group {}, the message for group {}",
            header.group_id, out.group
        )));
    }
    let path = ctx.snaps.gen_path(out.group, header.index, header.term);
    let mut file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| TransportError::io(format!("cannot open {}", path.display()), e))?;
    let size = file
        .metadata()
        .await
        .map_err(|e| TransportError::io(format!("cannot stat {}", path.display()), e))?
        .len();
    if size != header.file_size_bytes {
        return Err(TransportError::BadSnapshot(format!(
            "{} has {size} bytes, its header says {}",
            path.display(),
            header.file_size_bytes
        )));
    }
    let raft_message = protobuf::Message::write_to_bytes(&out.msg)
        .map_err(|e| TransportError::Encode(e.to_string()))?;
    let mut client = connect(&*ctx.addresses, out.to_node).await?;
    let (tx, rx) = mpsc::channel::<SnapshotChunk>(2);
    let from_node = ctx.self_node.0;
    let group_id = out.group.0;
    let reader = async move {
        let mut first = Some(raft_message);
        loop {
            let mut data = vec![0u8; SNAPSHOT_CHUNK_BYTES];
            let mut filled = 0;
            while filled < data.len() {
                let n = file.read(&mut data[filled..]).await.map_err(|e| {
                    TransportError::io(format!("cannot read {}", path.display()), e)
                })?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            data.truncate(filled);
            let last = filled < SNAPSHOT_CHUNK_BYTES;
            if filled == 0 && first.is_none() {
                break;
            }
            let chunk = SnapshotChunk {
                from_node,
                group_id,
                raft_message: first.take().unwrap_or_default(),
                data,
            };
            if tx.send(chunk).await.is_err() {
                // The call ended early; its outcome says why.
                break;
            }
            if last {
                break;
            }
        }
        Ok::<(), TransportError>(())
    };
    let call = client.snapshot(ReceiverStream::new(rx));
    let (read, answer) = tokio::join!(reader, call);
    read?;
    answer.map_err(|status| TransportError::rpc(out.to_node, &status))?;
    Ok(size)
}

/// Fetches plugin `digest` from `node` and checks that the bytes have that digest.
pub(crate) async fn fetch_plugin(
    addresses: &dyn AddressBook,
    node: NodeId,
    digest: PluginDigest,
) -> Result<Vec<u8>, TransportError> {
    let fetch = async {
        let mut client = connect(addresses, node).await?;
        let mut chunks = client
            .fetch_plugin(FetchPluginRequest {
                digest: digest.0.to_vec(),
            })
            .await
            .map_err(|s| TransportError::rpc(node, &s))?
            .into_inner();
        let plugin_error = |reason: String| TransportError::Plugin {
            digest,
            node,
            reason,
        };
        let mut bytes = Vec::new();
        let mut total: Option<u64> = None;
        while let Some(chunk) = chunks
            .message()
            .await
            .map_err(|s| TransportError::rpc(node, &s))?
        {
            let claimed = chunk.total_size_bytes;
            if claimed > PLUGIN_FETCH_BYTES_MAX as u64 {
                return Err(plugin_error(format!(
                    "{claimed} bytes is more than the {PLUGIN_FETCH_BYTES_MAX} a plugin may have"
                )));
            }
            if *total.get_or_insert(claimed) != claimed {
                return Err(plugin_error("the chunks disagree on the total size".into()));
            }
            if (bytes.len() + chunk.data.len()) as u64 > claimed {
                return Err(plugin_error(format!(
                    "more than the announced {claimed} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk.data);
        }
        let expected = total.unwrap_or(0);
        if bytes.len() as u64 != expected {
            return Err(plugin_error(format!(
                "truncated: got {} of {expected} bytes",
                bytes.len()
            )));
        }
        let actual = PluginDigest::of(&bytes);
        if actual != digest {
            return Err(plugin_error(format!(
                "the fetched bytes have digest {actual}"
            )));
        }
        Ok(bytes)
    };
    tokio::time::timeout(PLUGIN_FETCH_TIMEOUT, fetch)
        .await
        .map_err(|_| TransportError::Plugin {
            digest,
            node,
            reason: format!("not fetched within {} s", PLUGIN_FETCH_TIMEOUT.as_secs()),
        })?
}
