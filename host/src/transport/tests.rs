//! Tests of the transport over real gRPC on localhost: real tonic servers on
//! `127.0.0.1:0` in this process, real snapshot files in temporary directories, and
//! fakes for the raft core, the address book and the plugin blobs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message as _;
use raft::eraftpb::{Message, MessageType};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;

use super::client::connect;
use super::*;
use crate::proto::v1::{
    FetchPluginRequest, RaftBatch, RaftEnvelope, SnapshotChunk, SnapshotHeader,
};
use crate::raftstore::transport::{OutMessage, Transport};
use crate::storage::snapfile::SnapDir;

const WAIT: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Book(parking_lot::Mutex<HashMap<NodeId, String>>);

impl Book {
    fn set(&self, node: NodeId, addr: &str) {
        self.0.lock().insert(node, addr.to_string());
    }
}

impl AddressBook for Book {
    fn address(&self, node: NodeId) -> Option<String> {
        self.0.lock().get(&node).cloned()
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Event {
    /// A stepped message; for a MsgSnapshot, whether its complete file was in `recv/`
    /// (and no temporary file left) at the moment it was stepped.
    Step {
        group: GroupId,
        msg: Message,
        file_ready: Option<bool>,
    },
    Unreachable(GroupId, PeerId),
    Snapshot(GroupId, PeerId, bool),
}

struct FakeInbound {
    events: parking_lot::Mutex<Vec<Event>>,
    snaps: Option<SnapDir>,
}

impl FakeInbound {
    fn new(snaps: Option<SnapDir>) -> Arc<Self> {
        Arc::new(Self {
            events: parking_lot::Mutex::new(Vec::new()),
            snaps,
        })
    }

    fn events(&self) -> Vec<Event> {
        self.events.lock().clone()
    }

    fn steps(&self) -> Vec<(GroupId, Message)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Step { group, msg, .. } => Some((group, msg)),
                _ => None,
            })
            .collect()
    }

    async fn wait_for(&self, what: &str, done: impl Fn(&[Event]) -> bool) {
        let start = Instant::now();
        loop {
            if done(&self.events.lock()) {
                return;
            }
            assert!(
                start.elapsed() < WAIT,
                "timed out waiting for {what}; events: {:?}",
                self.events()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Inbound for FakeInbound {
    fn step(&self, group: GroupId, msg: Message) -> Result<(), crate::raftstore::RaftError> {
        let file_ready = match (&self.snaps, msg.get_msg_type()) {
            (Some(snaps), MessageType::MsgSnapshot) => {
                let meta = msg.get_snapshot().get_metadata();
                Some(
                    snaps.recv_path(group, meta.index, meta.term).exists()
                        && !snaps.recv_tmp_path(group, meta.index, meta.term).exists(),
                )
            }
            _ => None,
        };
        self.events.lock().push(Event::Step {
            group,
            msg,
            file_ready,
        });
        Ok(())
    }

    fn report_unreachable(&self, group: GroupId, peer: PeerId) {
        self.events.lock().push(Event::Unreachable(group, peer));
    }

    fn report_snapshot(&self, group: GroupId, peer: PeerId, ok: bool) {
        self.events.lock().push(Event::Snapshot(group, peer, ok));
    }
}

#[derive(Default)]
struct FakeBlobs {
    stored: parking_lot::Mutex<HashMap<PluginDigest, Vec<u8>>>,
    installed: parking_lot::Mutex<Vec<PluginDigest>>,
    /// Served instead of the stored bytes (a lying or corrupt sender).
    serve_instead: parking_lot::Mutex<Option<Vec<u8>>>,
}

impl FakeBlobs {
    fn with(bytes: &[u8]) -> Arc<Self> {
        let blobs = Self::default();
        blobs
            .stored
            .lock()
            .insert(PluginDigest::of(bytes), bytes.to_vec());
        Arc::new(blobs)
    }
}

impl PluginBlobs for FakeBlobs {
    fn has(&self, digest: PluginDigest) -> bool {
        self.stored.lock().contains_key(&digest)
    }

    fn bytes(&self, digest: PluginDigest) -> Option<Vec<u8>> {
        let stored = self.stored.lock().get(&digest).cloned()?;
        Some(self.serve_instead.lock().clone().unwrap_or(stored))
    }

    fn install(&self, digest: PluginDigest, bytes: Vec<u8>) -> Result<(), String> {
        self.installed.lock().push(digest);
        self.stored.lock().insert(digest, bytes);
        Ok(())
    }
}

/// One node of a test cluster: its snapshot dir, fakes, and (once started) a server.
struct TestNode {
    id: NodeId,
    _dir: tempfile::TempDir,
    snaps: SnapDir,
    inbound: Arc<FakeInbound>,
    blobs: Arc<FakeBlobs>,
    book: Arc<Book>,
    server: Option<JoinHandle<()>>,
}

impl TestNode {
    fn new(id: u64, book: &Arc<Book>, blobs: Arc<FakeBlobs>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let snaps = SnapDir::open(dir.path()).expect("snap dir");
        Self {
            id: NodeId(id),
            inbound: FakeInbound::new(Some(snaps.clone())),
            snaps,
            _dir: dir,
            blobs,
            book: book.clone(),
            server: None,
        }
    }

    /// Serves the transport on `listener` and publishes its address.
    fn serve(&mut self, listener: TcpListener) {
        let addr = listener.local_addr().expect("local addr");
        self.book.set(self.id, &addr.to_string());
        let service = TransportService::new(
            self.id,
            self.inbound.clone(),
            self.snaps.clone(),
            self.blobs.clone(),
            self.book.clone(),
        )
        .service();
        self.server = Some(tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)))
                .await;
        }));
    }

    async fn start(&mut self) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        self.serve(listener);
    }

    fn transport(&self) -> Arc<GrpcTransport> {
        GrpcTransport::new(
            self.id,
            self.book.clone(),
            self.inbound.clone(),
            self.snaps.clone(),
            tokio::runtime::Handle::current(),
        )
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

fn peer(seq: u64, node: u64) -> PeerId {
    PeerId::compose(seq, NodeId(node))
}

fn heartbeat(from: PeerId, to: PeerId, marker: u64) -> Message {
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgHeartbeat);
    m.from = from.0;
    m.to = to.0;
    m.commit = marker;
    m
}

fn out(group: u64, msg: Message) -> OutMessage {
    OutMessage::new(GroupId(group), msg)
}

fn encode(msg: &Message) -> Vec<u8> {
    protobuf::Message::write_to_bytes(msg).expect("encode")
}

/// A MsgSnapshot from `from` to `to` whose header describes a file of `file_size` bytes.
fn snapshot_msg(
    group: u64,
    from: PeerId,
    to: PeerId,
    (index, term): (u64, u64),
    file_size: u64,
    plugin: PluginDigest,
) -> Message {
    let header = SnapshotHeader {
        group_id: group,
        index,
        term,
        plugin_digest: plugin.0.to_vec(),
        applied_timestamp_ms: 1,
        file_size_bytes: file_size,
        from_node: from.node().0,
    };
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgSnapshot);
    m.from = from.0;
    m.to = to.0;
    m.term = term;
    let snap = m.mut_snapshot();
    snap.mut_metadata().index = index;
    snap.mut_metadata().term = term;
    snap.set_data(header.encode_to_vec().into());
    m
}

/// Bytes that differ from chunk to chunk, so a reordered or dropped chunk shows.
fn file_bytes(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i / 4096) as u8)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_of_several_groups_arrive_in_order_and_batched() {
    let book = Arc::new(Book::default());
    let a = TestNode::new(1, &book, Arc::new(FakeBlobs::default()));
    let mut b = TestNode::new(2, &book, Arc::new(FakeBlobs::default()));
    b.start().await;
    let transport = a.transport();
    let total = 300u64;
    let sent: Vec<(GroupId, u64)> = (0..total).map(|i| (GroupId(1 + i % 3), i)).collect();
    // Several rounds from a plain thread, as the store loop does.
    let msgs: Vec<OutMessage> = sent
        .iter()
        .map(|&(g, i)| out(g.0, heartbeat(peer(g.0, 1), peer(g.0, 2), i)))
        .collect();
    let t = transport.clone();
    std::thread::spawn(move || {
        for round in msgs.chunks(50) {
            t.send(round.to_vec());
        }
    })
    .join()
    .expect("sender thread");
    b.inbound
        .wait_for("all messages", |e| e.len() >= total as usize)
        .await;
    let got: Vec<(GroupId, u64)> = b
        .inbound
        .steps()
        .into_iter()
        .map(|(g, m)| (g, m.commit))
        .collect();
    assert_eq!(got, sent, "messages arrive once, in the order sent");
    for (g, m) in b.inbound.steps() {
        assert_eq!(m.to, peer(g.0, 2).0);
        assert_eq!(m.get_msg_type(), MessageType::MsgHeartbeat);
    }
    let sizes = transport.stats().batch_sizes();
    assert_eq!(sizes.messages, total);
    assert!(
        sizes.batches < total,
        "messages were batched: {} batches for {total} messages",
        sizes.batches
    );
    assert!(
        a.inbound.events().is_empty(),
        "nothing reported unreachable"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_to_an_unknown_node_is_reported_unreachable() {
    let book = Arc::new(Book::default());
    let a = TestNode::new(1, &book, Arc::new(FakeBlobs::default()));
    let transport = a.transport();
    transport.send(vec![out(7, heartbeat(peer(3, 1), peer(4, 9), 1))]);
    // Reported by `send` itself, before it returns.
    assert_eq!(
        a.inbound.events(),
        vec![Event::Unreachable(GroupId(7), peer(4, 9))]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_node_is_reported_and_reached_once_it_is_up() {
    let book = Arc::new(Book::default());
    let a = TestNode::new(1, &book, Arc::new(FakeBlobs::default()));
    let mut b = TestNode::new(2, &book, Arc::new(FakeBlobs::default()));
    // Reserve a port, then close it: node 2 is known but down.
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = reserved.local_addr().expect("addr");
    drop(reserved);
    book.set(b.id, &addr.to_string());
    let transport = a.transport();
    let (g, from, to) = (5, peer(1, 1), peer(2, 2));
    transport.send(vec![out(g, heartbeat(from, to, 0))]);
    a.inbound
        .wait_for("an unreachable report", |e| {
            e.contains(&Event::Unreachable(GroupId(g), to))
        })
        .await;
    assert!(
        transport
            .stats()
            .connect_failures
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    // Keep sending while the node is down: more reports, nothing delivered.
    for i in 1..5 {
        transport.send(vec![out(g, heartbeat(from, to, i))]);
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    // Node 2 comes up on the same address.
    let listener = TcpListener::bind(addr).await.expect("rebind");
    b.serve(listener);
    let start = Instant::now();
    let mut i = 100;
    while b.inbound.steps().is_empty() {
        assert!(
            start.elapsed() < WAIT,
            "node 2 never reached after it came up"
        );
        transport.send(vec![out(g, heartbeat(from, to, i))]);
        i += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Only messages sent after it came up arrived.
    assert!(b.inbound.steps().iter().all(|(_, m)| m.commit >= 100));
    // Backoff: five messages were sent while it was down within ~100 ms, but only the
    // first and (at most) the attempts after 100 ms and 300 ms tried to connect.
    let failures = transport
        .stats()
        .connect_failures
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(failures <= 3, "{failures} connection attempts failed");
    // Every message sent while it was down was reported.
    let reported = a
        .inbound
        .events()
        .iter()
        .filter(|e| **e == Event::Unreachable(GroupId(g), to))
        .count();
    assert!(reported >= 5, "{reported} unreachable reports");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_file_is_streamed_and_stepped_after_it_lands() {
    let plugin = b"plugin bytes".as_slice();
    let book = Arc::new(Book::default());
    let a = TestNode::new(1, &book, FakeBlobs::with(plugin));
    let mut b = TestNode::new(2, &book, FakeBlobs::with(plugin));
    b.start().await;
    let (g, from, to) = (9, peer(1, 1), peer(2, 2));
    // Several chunks, the last one partial.
    let data = file_bytes(2 * SNAPSHOT_CHUNK_BYTES + 12_345);
    std::fs::write(a.snaps.gen_path(GroupId(g), 40, 3), &data).expect("write gen file");
    let msg = snapshot_msg(
        g,
        from,
        to,
        (40, 3),
        data.len() as u64,
        PluginDigest::of(plugin),
    );
    let transport = a.transport();
    // A heartbeat after the snapshot still goes its own way.
    transport.send(vec![out(g, msg.clone()), out(g, heartbeat(from, to, 1))]);
    a.inbound
        .wait_for("the snapshot report", |e| {
            e.iter().any(|e| matches!(e, Event::Snapshot(..)))
        })
        .await;
    assert!(
        a.inbound
            .events()
            .contains(&Event::Snapshot(GroupId(g), to, true))
    );
    let stepped: Vec<_> = b
        .inbound
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::Step { msg, .. } if msg.get_msg_type() == MessageType::MsgSnapshot))
        .collect();
    assert_eq!(
        stepped,
        vec![Event::Step {
            group: GroupId(g),
            msg,
            file_ready: Some(true)
        }],
        "stepped once, with its complete file already in recv/"
    );
    let received = std::fs::read(b.snaps.recv_path(GroupId(g), 40, 3)).expect("recv file");
    assert!(received == data, "the received file equals the sent one");
    assert!(!b.snaps.recv_tmp_path(GroupId(g), 40, 3).exists());
    assert!(
        b.blobs.installed.lock().is_empty(),
        "the plugin was present"
    );
}

/// Opens a raw `Snapshot` call to `node` with `chunks`.
async fn raw_snapshot(book: &Book, node: NodeId, chunks: Vec<SnapshotChunk>) -> tonic::Status {
    let mut client = connect(book, node).await.expect("connect");
    match client.snapshot(futures::stream::iter(chunks)).await {
        Ok(_) => tonic::Status::ok("accepted"),
        Err(status) => status,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_whose_first_chunk_is_not_a_snapshot_is_invalid() {
    let book = Arc::new(Book::default());
    let mut b = TestNode::new(2, &book, Arc::new(FakeBlobs::default()));
    b.start().await;
    let chunk = SnapshotChunk {
        from_node: 1,
        group_id: 4,
        raft_message: encode(&heartbeat(peer(1, 1), peer(2, 2), 0)),
        data: b"data".to_vec(),
    };
    let status = raw_snapshot(&book, b.id, vec![chunk.clone()]).await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("MsgHeartbeat"),
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("not a MsgSnapshot"),
        "{}",
        status.message()
    );
    let garbage = SnapshotChunk {
        raft_message: vec![0xff; 7],
        ..chunk
    };
    let status = raw_snapshot(&book, b.id, vec![garbage]).await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("does not decode"),
        "{}",
        status.message()
    );
    assert!(b.inbound.events().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_snapshot_is_rejected_and_leaves_no_file() {
    let plugin = b"p".as_slice();
    let book = Arc::new(Book::default());
    let mut b = TestNode::new(2, &book, FakeBlobs::with(plugin));
    b.start().await;
    let g = GroupId(6);
    let msg = snapshot_msg(
        g.0,
        peer(1, 1),
        peer(2, 2),
        (10, 2),
        1000,
        PluginDigest::of(plugin),
    );
    let first = SnapshotChunk {
        from_node: 1,
        group_id: g.0,
        raft_message: encode(&msg),
        data: vec![1; 300],
    };
    let second = SnapshotChunk {
        data: vec![2; 200],
        ..Default::default()
    };
    let status = raw_snapshot(&book, b.id, vec![first.clone(), second]).await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert_eq!(
        status.message(),
        "snapshot truncated: got 500 of 1000 bytes"
    );
    assert!(!b.snaps.recv_path(g, 10, 2).exists());
    assert!(!b.snaps.recv_tmp_path(g, 10, 2).exists());
    // Too many bytes are refused as well.
    let long = SnapshotChunk {
        data: vec![3; 701],
        ..Default::default()
    };
    let status = raw_snapshot(&book, b.id, vec![first, long]).await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("too long"),
        "{}",
        status.message()
    );
    assert!(!b.snaps.recv_path(g, 10, 2).exists());
    assert!(!b.snaps.recv_tmp_path(g, 10, 2).exists());
    assert!(b.inbound.steps().is_empty(), "nothing stepped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_plugin_is_fetched_during_a_snapshot_and_checked() {
    // Larger than one plugin chunk, so the fetch takes several.
    let plugin = file_bytes(PLUGIN_CHUNK_BYTES * 2 + 17);
    let digest = PluginDigest::of(&plugin);
    let book = Arc::new(Book::default());
    let mut a = TestNode::new(1, &book, FakeBlobs::with(&plugin));
    let mut b = TestNode::new(2, &book, Arc::new(FakeBlobs::default()));
    a.start().await;
    b.start().await;
    let (g, from, to) = (3, peer(1, 1), peer(2, 2));
    let data = file_bytes(5000);
    std::fs::write(a.snaps.gen_path(GroupId(g), 20, 1), &data).expect("write gen file");
    let transport = a.transport();
    transport.send(vec![out(
        g,
        snapshot_msg(g, from, to, (20, 1), 5000, digest),
    )]);
    a.inbound
        .wait_for("the snapshot report", |e| {
            e.iter().any(|e| matches!(e, Event::Snapshot(..)))
        })
        .await;
    assert_eq!(
        a.inbound.events(),
        vec![Event::Snapshot(GroupId(g), to, true)]
    );
    assert_eq!(*b.blobs.installed.lock(), vec![digest]);
    assert!(b.blobs.stored.lock().get(&digest) == Some(&plugin));
    assert_eq!(b.inbound.steps().len(), 1);

    // A sender that serves other bytes under the digest: the snapshot fails and
    // nothing is installed.
    let mut c = TestNode::new(3, &book, Arc::new(FakeBlobs::default()));
    c.start().await;
    *a.blobs.serve_instead.lock() = Some(b"not the plugin".to_vec());
    let to_c = peer(2, 3);
    transport.send(vec![out(
        g,
        snapshot_msg(g, from, to_c, (20, 1), 5000, digest),
    )]);
    a.inbound
        .wait_for("the second snapshot report", |e| {
            e.iter()
                .any(|e| matches!(e, Event::Snapshot(_, p, _) if *p == to_c))
        })
        .await;
    assert!(
        a.inbound
            .events()
            .contains(&Event::Snapshot(GroupId(g), to_c, false))
    );
    assert!(
        c.blobs.installed.lock().is_empty(),
        "wrong bytes not installed"
    );
    assert!(c.inbound.steps().is_empty());
    assert!(!c.snaps.recv_path(GroupId(g), 20, 1).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_plugin_answers_not_found_and_invalid_argument() {
    let book = Arc::new(Book::default());
    let mut b = TestNode::new(2, &book, FakeBlobs::with(b"x"));
    b.start().await;
    let mut client = connect(&*book, b.id).await.expect("connect");
    let unknown = PluginDigest::of(b"y");
    let err = client
        .fetch_plugin(FetchPluginRequest {
            digest: unknown.0.to_vec(),
        })
        .await
        .expect_err("unknown digest");
    assert_eq!(err.code(), tonic::Code::NotFound);
    let err = client
        .fetch_plugin(FetchPluginRequest { digest: vec![1, 2] })
        .await
        .expect_err("malformed digest");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_envelope_is_skipped_and_the_next_one_delivered() {
    let book = Arc::new(Book::default());
    let mut b = TestNode::new(2, &book, Arc::new(FakeBlobs::default()));
    b.start().await;
    let good = heartbeat(peer(1, 1), peer(2, 2), 42);
    let wrong_node = heartbeat(peer(1, 1), peer(2, 5), 43);
    // Group 0 is the meta group (valid); this one claims a sender on another node.
    let forged = heartbeat(peer(1, 3), peer(2, 2), 44);
    let batch = RaftBatch {
        from_node: 1,
        messages: vec![
            RaftEnvelope {
                group_id: 8,
                message: vec![0xff, 0xff, 0xff],
            },
            RaftEnvelope {
                group_id: 0,
                message: encode(&forged),
            },
            RaftEnvelope {
                group_id: 8,
                message: encode(&wrong_node),
            },
            RaftEnvelope {
                group_id: 8,
                message: encode(&good),
            },
        ],
    };
    let mut client = connect(&*book, b.id).await.expect("connect");
    client
        .stream(futures::stream::iter(vec![batch]))
        .await
        .expect("the stream survives bad envelopes");
    assert_eq!(b.inbound.steps(), vec![(GroupId(8), good)]);
}

/// A TCP proxy whose connections the test can cut, to break a live stream.
struct Proxy {
    addr: String,
    tasks: Arc<parking_lot::Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(backend: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr").to_string();
        let tasks = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let spawned = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let backend = backend.clone();
                let pipe = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(backend).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                spawned.lock().push(pipe);
            }
        });
        tasks.lock().push(accept);
        Self { addr, tasks }
    }

    /// Closes the listener and every proxied connection.
    fn cut(&self) {
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_stream_reports_its_recent_peers_and_reconnects() {
    let book = Arc::new(Book::default());
    let a = TestNode::new(1, &book, Arc::new(FakeBlobs::default()));
    let mut b = TestNode::new(2, &book, Arc::new(FakeBlobs::default()));
    b.start().await;
    let direct = book.address(b.id).expect("address");
    let proxy = Proxy::start(direct.clone()).await;
    book.set(b.id, &proxy.addr);
    let transport = a.transport();
    let (from, to) = (peer(1, 1), peer(2, 2));
    transport.send(vec![
        out(1, heartbeat(from, to, 1)),
        out(2, heartbeat(from, to, 2)),
        out(1, heartbeat(from, to, 3)),
    ]);
    b.inbound.wait_for("three messages", |e| e.len() >= 3).await;
    assert!(a.inbound.events().is_empty());
    // The connection breaks under the live stream; node 2 stays reachable directly.
    proxy.cut();
    book.set(b.id, &direct);
    a.inbound
        .wait_for("reports for both groups", |e| {
            e.contains(&Event::Unreachable(GroupId(1), to))
                && e.contains(&Event::Unreachable(GroupId(2), to))
        })
        .await;
    assert_eq!(
        a.inbound.events().len(),
        2,
        "one report per (group, peer): {:?}",
        a.inbound.events()
    );
    let start = Instant::now();
    let mut i = 100;
    while !b.inbound.steps().iter().any(|(_, m)| m.commit >= 100) {
        assert!(start.elapsed() < WAIT, "never reconnected");
        transport.send(vec![out(1, heartbeat(from, to, i))]);
        i += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = transport.stats();
    assert_eq!(
        stats
            .stream_breaks
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(
        stats
            .streams_opened
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
}
