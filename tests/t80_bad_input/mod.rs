//! Bad input from the network gets a clear error and changes nothing (guarantee 5 of
//! DESIGN.md section 7), on a real 3-node cluster: one table of malformed and hostile
//! requests across the four gRPC services — `Client`, `Admin`, `Cluster` (operator and
//! node-to-node calls) and `RaftTransport` — each with the status code and the words the
//! answer must carry. After every row a known key must still read back; after the table
//! the `kv` group must hold exactly the content written before it, every node must still
//! run, every replica must agree on the group's digest, the group's raft membership must
//! be its three replicas, and no node may host a replica the table tricked it into
//! creating.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use flotilla::proto::v1::admin_client::AdminClient;
use flotilla::proto::v1::client_client::ClientClient;
use flotilla::proto::v1::cluster_client::ClusterClient;
use flotilla::proto::v1::raft_transport_client::RaftTransportClient;
use flotilla::proto::v1::*;
use flotilla_tests::{Cluster, digests_agree, propose, query};
use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{self, MessageType};
use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Channel;

mod admin;
mod client;
mod cluster;
mod node;
mod transport;

const BIN: &str = env!("CARGO_BIN_EXE_flotilla");
/// Keys written before the table; the group must hold exactly these afterwards.
const KNOWN_KEYS: usize = 20;
/// Groups the raft-transport rows name; none of them may exist afterwards.
const GHOST_GROUP: u64 = 888_888;
const SNAP_GROUP: u64 = 777_777;

type Call = Pin<Box<dyn Future<Output = Result<(), tonic::Status>> + Send>>;

/// One hostile request and the answer it must get (`Code::Ok`: the call succeeds).
struct Row {
    what: &'static str,
    call: Box<dyn FnOnce() -> Call + Send>,
    code: Code,
    contains: Option<&'static str>,
}

fn row<F, Fut>(what: &'static str, code: Code, contains: Option<&'static str>, f: F) -> Row
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), tonic::Status>> + Send + 'static,
{
    Row {
        what,
        call: Box::new(move || Box::pin(f()) as Call),
        code,
        contains,
    }
}

async fn channel(addr: &str) -> Result<Channel, tonic::Status> {
    Channel::from_shared(format!("http://{addr}"))
        .map_err(|e| tonic::Status::internal(e.to_string()))?
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("cannot connect to {addr}: {e}")))
}

async fn client(addr: &str) -> Result<ClientClient<Channel>, tonic::Status> {
    Ok(ClientClient::new(channel(addr).await?))
}

async fn admin(addr: &str) -> Result<AdminClient<Channel>, tonic::Status> {
    Ok(AdminClient::new(channel(addr).await?))
}

async fn cluster(addr: &str) -> Result<ClusterClient<Channel>, tonic::Status> {
    Ok(ClusterClient::new(channel(addr).await?))
}

async fn transport(addr: &str) -> Result<RaftTransportClient<Channel>, tonic::Status> {
    Ok(RaftTransportClient::new(channel(addr).await?))
}

/// What the rows need to know about the cluster.
#[derive(Clone)]
struct Ctx {
    addrs: Vec<String>,
    group: u64,
    /// The kv group's replicas: (peer, node).
    replicas: Vec<(u64, u64)>,
    meta_leader: String,
}

impl Ctx {
    fn addr(&self, node: u64) -> String {
        self.addrs[node as usize - 1].clone()
    }
}

fn propose_raw(group_id: u64, command: Vec<u8>, request_id: String) -> ProposeRequest {
    ProposeRequest {
        group_id,
        command,
        request_id,
    }
}

fn deploy_stream(chunks: Vec<DeployPluginChunk>) -> impl futures::Stream<Item = DeployPluginChunk> {
    futures::stream::iter(chunks)
}

/// A raft message from peer `from` to peer `to` of `group`, protobuf-encoded.
fn raft_msg(kind: MessageType, from: u64, to: u64, term: u64) -> eraftpb::Message {
    let mut m = eraftpb::Message::default();
    m.set_msg_type(kind);
    m.from = from;
    m.to = to;
    m.term = term;
    m
}

fn encode(m: &eraftpb::Message) -> Vec<u8> {
    m.write_to_bytes().expect("a raft message encodes")
}

/// A well-formed MsgSnapshot for `group` whose header announces `file_size` bytes.
fn snapshot_msg(group: u64, from: u64, to: u64, file_size: u64) -> Vec<u8> {
    let header = SnapshotHeader {
        group_id: group,
        index: 10,
        term: 2,
        plugin_digest: flotilla::ids::PluginDigest::of(flotilla::examples::KV)
            .0
            .to_vec(),
        applied_timestamp_ms: 0,
        file_size_bytes: file_size,
        from_node: from & 0xFFFF,
    };
    let mut m = raft_msg(MessageType::MsgSnapshot, from, to, 2);
    let snap = m.mut_snapshot();
    snap.data = header.encode_to_vec().into();
    snap.mut_metadata().index = 10;
    snap.mut_metadata().term = 2;
    encode(&m)
}

/// Sends `batches` over one `RaftTransport.Stream` call to `addr`.
async fn stream_batches(addr: String, batches: Vec<RaftBatch>) -> Result<(), tonic::Status> {
    transport(&addr)
        .await?
        .stream(futures::stream::iter(batches))
        .await?;
    Ok(())
}

async fn send_snapshot(addr: String, chunks: Vec<SnapshotChunk>) -> Result<(), tonic::Status> {
    transport(&addr)
        .await?
        .snapshot(futures::stream::iter(chunks))
        .await?;
    Ok(())
}

/// Creates a kv group, writes to it from node 3 until node 1 deletes it, and returns the
/// answer to the first write sent after the delete returned. Afterwards every node must
/// refuse the group with NOT_FOUND too.
async fn delete_under_writes(ctx: Ctx) -> Result<(), tonic::Status> {
    let g = admin(&ctx.addrs[0])
        .await?
        .create_group(CreateGroupRequest {
            plugin: "kv".into(),
            replicas: 3,
            ..Default::default()
        })
        .await?
        .into_inner()
        .group
        .unwrap_or_default()
        .group_id;
    let deleted = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writer = {
        let (deleted, acked, addr) = (deleted.clone(), acked.clone(), ctx.addrs[2].clone());
        tokio::spawn(async move {
            let mut c = client(&addr).await?;
            for i in 0u64.. {
                let after = deleted.load(Ordering::SeqCst);
                let r = propose(
                    &mut c,
                    g,
                    &json!({"put": {"key": format!("d{i}"), "value": "x"}}),
                )
                .await;
                match r {
                    Ok(_) if after => {
                        return Err(tonic::Status::internal(format!(
                            "a write to group {g} succeeded after the group was deleted"
                        )));
                    }
                    Ok(_) => {
                        acked.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) if after => return Err(e),
                    // In flight while the group went away: any answer will do.
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
            Ok(())
        })
    };
    let start = Instant::now();
    while acked.load(Ordering::SeqCst) < 20 && start.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if acked.load(Ordering::SeqCst) < 20 {
        return Err(tonic::Status::internal("the writer never got going"));
    }
    admin(&ctx.addrs[0])
        .await?
        .delete_group(DeleteGroupRequest { group_id: g })
        .await?;
    deleted.store(true, Ordering::SeqCst);
    let first = writer
        .await
        .map_err(|e| tonic::Status::internal(e.to_string()))?;
    let Err(first) = first else {
        return Err(tonic::Status::internal(
            "the writer stopped without an answer",
        ));
    };
    if first.code() != Code::NotFound {
        return Err(first);
    }
    for addr in &ctx.addrs {
        let e = propose(
            &mut client(addr).await?,
            g,
            &json!({"put": {"key": "late", "value": "x"}}),
        )
        .await
        .err();
        if e.as_ref().map(tonic::Status::code) != Some(Code::NotFound) {
            return Err(tonic::Status::internal(format!(
                "node {addr} answered {e:?} for deleted group {g}"
            )));
        }
    }
    Err(first)
}

/// The values the rows of every service share.
#[derive(Clone)]
struct Vars {
    group: u64,
    a1: String,
    a2: String,
    a3: String,
    /// The kv replicas on nodes 2 and 3.
    p2: u64,
    p3: u64,
    /// A peer id of the group's kind that no replica has.
    absent_peer: u64,
    /// A module importing WASI.
    wasi: Vec<u8>,
    meta: String,
}

/// A kv command the table must not let through.
fn put(k: &str) -> Vec<u8> {
    json!({"put": {"key": k, "value": "evil"}})
        .to_string()
        .into_bytes()
}

fn rows(ctx: &Ctx) -> Vec<Row> {
    let peer_on = |n: u64| {
        ctx.replicas
            .iter()
            .find(|(_, node)| *node == n)
            .map(|(p, _)| *p)
            .expect("a replica on every node")
    };
    let wasi = wat::parse_str(
        r#"(module
             (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
             (memory (export "memory") 1))"#,
    )
    .expect("valid wat");
    let v = Vars {
        group: ctx.group,
        a1: ctx.addr(1),
        a2: ctx.addr(2),
        a3: ctx.addr(3),
        p2: peer_on(2),
        p3: peer_on(3),
        absent_peer: (999 << 16) | 2,
        wasi,
        meta: ctx.meta_leader.clone(),
    };
    let c = ctx.clone();
    let mut rows = client::rows(&v);
    rows.extend(admin::rows(&v));
    rows.extend(cluster::rows(&v));
    rows.extend(node::rows(&v));
    rows.extend(transport::rows(&v));
    rows.push(row(
        "writes to a group deleted while a writer writes to it",
        Code::NotFound,
        None,
        move || delete_under_writes(c),
    ));
    rows
}

/// Meta command bodies the rows send where a JSON command is wanted.
struct MetaCommandBody;

impl MetaCommandBody {
    fn delete_group(group: u64) -> Vec<u8> {
        flotilla::placement::MetaCommand::DeleteGroup {
            group: flotilla::ids::GroupId(group),
        }
        .encode()
    }
}

async fn scan_all(addr: &str, group: u64) -> anyhow::Result<Value> {
    let mut c = client(addr).await?;
    Ok(query(
        &mut c,
        group,
        &json!({"scan": {}}),
        ReadConsistency::Linearizable,
    )
    .await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_requests_get_clear_errors_and_change_nothing() -> anyhow::Result<()> {
    let mut cl = Cluster::start(BIN, 3).await?;
    cl.nodes[0].deploy("kv", flotilla::examples::KV).await?;
    let addrs = cl.addrs();
    let g = admin(&addrs[0])
        .await?
        .create_group(CreateGroupRequest {
            plugin: "kv".into(),
            replicas: 3,
            ..Default::default()
        })
        .await?
        .into_inner()
        .group
        .unwrap_or_default();
    let group = g.group_id;
    let mut known = serde_json::Map::new();
    let mut c = client(&addrs[0]).await?;
    for i in 0..KNOWN_KEYS {
        let (k, v) = (format!("k{i:02}"), format!("v{i}"));
        propose(&mut c, group, &json!({"put": {"key": k, "value": v}})).await?;
        known.insert(k, Value::String(v));
    }
    let status = admin(&addrs[0])
        .await?
        .group_status(GroupStatusRequest { group_id: group })
        .await?
        .into_inner();
    let replicas: Vec<(u64, u64)> = status
        .replicas
        .iter()
        .map(|r| (r.peer_id, r.node_id))
        .collect();
    assert_eq!(replicas.len(), 3, "{status:?}");
    let meta_leader = cluster(&addrs[0])
        .await?
        .cluster_status(ClusterStatusRequest {})
        .await?
        .into_inner()
        .meta_leader_node_id;
    anyhow::ensure!(meta_leader != 0, "no meta leader");
    let ctx = Ctx {
        addrs: addrs.clone(),
        group,
        replicas: replicas.clone(),
        meta_leader: addrs[meta_leader as usize - 1].clone(),
    };
    let before = digests_agree(&addrs, group).await?;

    let table = rows(&ctx);
    assert!(table.len() >= 20, "only {} rows", table.len());
    let mut failures = Vec::new();
    for (i, r) in table.into_iter().enumerate() {
        let started = Instant::now();
        let got = tokio::time::timeout(Duration::from_secs(60), (r.call)()).await;
        let verdict = match got {
            Err(_) => Err("no answer within 60 s".to_string()),
            Ok(Ok(())) if r.code == Code::Ok => Ok("ok".to_string()),
            Ok(Ok(())) => Err(format!("succeeded, wanted {:?}", r.code)),
            Ok(Err(s)) if s.code() != r.code => Err(format!(
                "got {:?} {:?}, wanted {:?}",
                s.code(),
                s.message(),
                r.code
            )),
            Ok(Err(s)) => match r.contains {
                Some(w) if !s.message().contains(w) => {
                    Err(format!("message {:?} lacks {w:?}", s.message()))
                }
                _ => Ok(format!("{:?}: {}", s.code(), s.message())),
            },
        };
        match verdict {
            Ok(v) => println!("row {i:2} ok   {} ({:?}): {v}", r.what, started.elapsed()),
            Err(e) => {
                println!("row {i:2} FAIL {}: {e}", r.what);
                failures.push(format!("row {i} ({}): {e}", r.what));
            }
        }
        // The group keeps serving its known content after every row.
        let v = query(
            &mut c,
            group,
            &json!({"get": {"key": "k00"}}),
            ReadConsistency::Linearizable,
        )
        .await;
        if v.as_ref().ok() != Some(&json!({"value": "v0"})) {
            failures.push(format!("after row {i} ({}): k00 reads {v:?}", r.what));
        }
    }

    // Nothing changed: the group's content, the processes, the replicas' agreement.
    for (i, n) in cl.nodes.iter_mut().enumerate() {
        if !n.is_running() {
            failures.push(format!("node {} died:\n{}", i + 1, n.log()));
        }
    }
    let expected_pairs: Vec<Value> = known
        .iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
    for a in &addrs {
        let got = scan_all(a, group).await?;
        if got["pairs"] != Value::Array(expected_pairs.clone()) {
            failures.push(format!("content read through {a} changed: {got}"));
        }
    }
    let after = digests_agree(&addrs, group).await?;
    if after.1 != before.1 {
        failures.push(format!(
            "the group's digest moved from {before:?} to {after:?}"
        ));
    }
    // Raft membership is still the three replicas. Replicas the table made nodes create
    // (a forged heartbeat for an unknown group; a deleted group's replica recreated by
    // its leader's last heartbeats) are uninitialized strays that each node's garbage
    // collection (every ~15 s) must destroy.
    let mut want_peers: Vec<u64> = replicas.iter().map(|(p, _)| *p).collect();
    want_peers.sort_unstable();
    let gc_start = Instant::now();
    let mut first_stray = None;
    loop {
        let mut stray = Vec::new();
        let mut membership = Vec::new();
        for a in &addrs {
            let st = cluster(a)
                .await?
                .node_status(NodeStatusRequest {})
                .await?
                .into_inner();
            for r in &st.replicas {
                if r.group_id != 0 && r.group_id != group {
                    stray.push((st.node_id, r.group_id, r.peer_id));
                }
                if r.group_id == group && r.role == "Leader" {
                    let mut got: Vec<u64> = r.progress.iter().map(|p| p.peer_id).collect();
                    got.sort_unstable();
                    membership.push(got);
                }
            }
        }
        if first_stray.is_none() && !stray.is_empty() {
            first_stray = Some(stray.clone());
        }
        let membership_ok = !membership.is_empty() && membership.iter().all(|m| *m == want_peers);
        if stray.is_empty() && membership_ok {
            if let Some(first) = first_stray {
                println!(
                    "stray replicas (node, group, peer) {first:?} were collected within {:?}",
                    gc_start.elapsed()
                );
            }
            break;
        }
        if gc_start.elapsed() > Duration::from_secs(40) {
            if !membership_ok {
                failures.push(format!(
                    "group {group}'s raft membership is {membership:?}, its replicas are {want_peers:?}"
                ));
            }
            if !stray.is_empty() {
                failures.push(format!(
                    "replicas (node, group, peer) that no operator created, still there after 40 s: {stray:?}"
                ));
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let groups = admin(&addrs[1])
        .await?
        .list_groups(ListGroupsRequest::default())
        .await?
        .into_inner()
        .groups;
    if groups.iter().map(|g| g.group_id).collect::<Vec<_>>() != vec![group] {
        failures.push(format!("groups now: {groups:?}"));
    }
    let plugins = admin(&addrs[2])
        .await?
        .list_plugins(ListPluginsRequest {})
        .await?
        .into_inner()
        .plugins;
    if plugins.iter().map(|p| p.name.as_str()).collect::<Vec<_>>() != vec!["kv"] {
        failures.push(format!("plugins now: {plugins:?}"));
    }
    let status = admin(&addrs[0])
        .await?
        .group_status(GroupStatusRequest { group_id: group })
        .await?
        .into_inner();
    let now: Vec<(u64, u64)> = status
        .replicas
        .iter()
        .map(|r| (r.peer_id, r.node_id))
        .collect();
    if now != replicas {
        failures.push(format!("meta replicas moved from {replicas:?} to {now:?}"));
    }
    assert!(
        failures.is_empty(),
        "{} problems:\n{}\n{}",
        failures.len(),
        failures.join("\n"),
        cl.logs()
    );
    Ok(())
}
