//! The raft core end to end in one process: real store loop and apply loop, the
//! in-memory storage twin and a native state machine (no fjall, no wasm).
//! `containment`: host panics and storage quotas through the same loops.

mod containment;

use std::sync::Arc;

use super::fsm::{CommandOutcome, EntryContext, FsmError, KvView, QueryContext, StateMachineHost};
use super::{PeerSpec, RaftError, RaftStore, ReadKind, StoreDeps, SystemClock};
use crate::ids::{GroupId, NodeId, PeerId, PluginDigest};
use crate::storage::mem::MemStore;

/// Adds the decimal number in each command to key "n"; "fail" is rejected. Two
/// commands stand for what a plugin host might do: "fill:N" writes keys `k0..kN`, and
/// "panic" (command or query) panics in host code, like a bug the bounds checks missed.
struct Adder;

fn read_n(kv: &KvView) -> Result<i64, FsmError> {
    Ok(kv
        .get(b"n")?
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0))
}

impl StateMachineHost for Adder {
    fn apply_entry(
        &self,
        _: PluginDigest,
        _: EntryContext,
        commands: &[&[u8]],
        mut kv: KvView,
    ) -> (KvView, Vec<CommandOutcome>) {
        let mut out = Vec::new();
        for c in commands {
            assert!(*c != b"panic", "a host bug, on purpose");
            if let Some(n) = c.strip_prefix(b"fill:") {
                let n: usize = String::from_utf8_lossy(n).parse().unwrap_or(0);
                let r = (0..n).try_for_each(|i| kv.put(format!("k{i}").as_bytes(), b"v"));
                out.push(kv.settle(r.map(|()| Vec::new())));
                continue;
            }
            let r = std::str::from_utf8(c)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(|| {
                    FsmError::Invalid(format!("{:?} is not a number", String::from_utf8_lossy(c)))
                })
                .and_then(|d| {
                    let n = read_n(&kv)? + d;
                    kv.put(b"n", n.to_string().as_bytes())?;
                    Ok(n.to_string().into_bytes())
                });
            out.push(kv.settle(r));
        }
        (kv, out)
    }

    fn query(&self, _: PluginDigest, _: QueryContext, r: &[u8], kv: KvView) -> CommandOutcome {
        assert!(r != b"panic", "a host bug, on purpose");
        Ok(read_n(&kv)?.to_string().into_bytes())
    }
}

fn start(mem: &Arc<MemStore>) -> (RaftStore, super::StoreThreads) {
    RaftStore::start(StoreDeps {
        log: mem.clone(),
        apply: mem.clone(),
        fsm: Arc::new(Adder),
        clock: Arc::new(SystemClock),
        fatal: Arc::new(|why: &str| panic!("fatal: {why}")),
        node: NodeId(1),
        transport: Arc::new(super::transport::NoTransport),
        metrics: Default::default(),
    })
    .expect("threads start")
}

/// Shuts the loops down and waits for their threads.
async fn stop(store: RaftStore, threads: super::StoreThreads) {
    store.shutdown();
    tokio::task::spawn_blocking(move || threads.join())
        .await
        .expect("join");
}

fn spec(g: u64) -> PeerSpec {
    PeerSpec {
        group: GroupId(g),
        peer: PeerId(g),
        voters: vec![PeerId(g)],
        plugin: PluginDigest::of(b"adder"),
        campaign: false,
    }
}

async fn value(store: &RaftStore, g: u64) -> i64 {
    store
        .read_barrier(GroupId(g), ReadKind::Linearizable)
        .await
        .expect("read index");
    let (out, _) = store.query(GroupId(g), Vec::new()).await.expect("query");
    String::from_utf8(out)
        .expect("utf8")
        .parse()
        .expect("number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposals_apply_once_across_a_crash() {
    let mem = Arc::new(MemStore::default());
    let (store, threads) = start(&mem);
    for g in 1..=3 {
        store.start_peer(spec(g)).await.expect("start");
    }
    let mut tasks = Vec::new();
    for i in 0..300u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .propose(GroupId(i % 3 + 1), b"1".to_vec(), String::new())
                .await
        }));
    }
    for t in tasks {
        t.await.expect("join").expect("proposal applied");
    }
    let err = store
        .propose(GroupId(1), b"fail".to_vec(), String::new())
        .await;
    assert!(
        matches!(err, Err(RaftError::Fsm(FsmError::Invalid(_)))),
        "{err:?}"
    );
    let missing = store
        .propose(GroupId(9), b"1".to_vec(), String::new())
        .await;
    assert_eq!(missing, Err(RaftError::GroupNotFound(GroupId(9))));
    for g in 1..=3 {
        assert_eq!(value(&store, g).await, 100);
    }
    store.destroy(GroupId(3)).await.expect("destroy");
    stop(store, threads).await;

    // Unsynced apply writes are lost; the log replays them exactly once.
    mem.crash();
    let (store, threads) = start(&mem);
    for g in 1..=2 {
        store.start_peer(spec(g)).await.expect("restart");
        assert_eq!(value(&store, g).await, 100, "group {g} after crash");
    }
    assert!(store.applied(GroupId(3)).is_none());
    stop(store, threads).await;
}

/// `read_query` passes the barrier and runs the query in one call: it sees every write
/// acknowledged before it, and a replica that cannot serve the read answers why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_query_sees_acknowledged_writes_and_fails_where_no_barrier_can_pass() {
    let mem = Arc::new(MemStore::default());
    let (store, threads) = start(&mem);
    store.start_peer(spec(1)).await.expect("start");
    let mut total = 0;
    for n in [3, 4, 5] {
        store
            .propose(GroupId(1), n.to_string().into_bytes(), String::new())
            .await
            .expect("propose");
        total += n;
        for kind in [ReadKind::Linearizable, ReadKind::Lease] {
            let (out, applied) = store
                .read_query(GroupId(1), kind, Vec::new())
                .await
                .expect("read");
            assert_eq!(String::from_utf8_lossy(&out), total.to_string(), "{kind:?}");
            assert!(applied >= 2, "applied index {applied}");
        }
    }
    assert_eq!(
        store
            .read_query(GroupId(9), ReadKind::Linearizable, Vec::new())
            .await,
        Err(RaftError::GroupNotFound(GroupId(9)))
    );
    stop(store, threads).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_and_upgrade_go_through_the_leader() {
    let mem = Arc::new(MemStore::default());
    let (store, threads) = start(&mem);
    store.start_peer(spec(1)).await.expect("start");
    store
        .propose(GroupId(1), b"5".to_vec(), String::new())
        .await
        .expect("propose");
    let index = store
        .read_barrier(GroupId(1), ReadKind::Lease)
        .await
        .expect("lease read");
    assert!(index >= 2, "lease read index {index}");
    let d = PluginDigest::of(b"adder v2");
    let at = store.upgrade(GroupId(1), d).await.expect("upgrade");
    assert_eq!(
        store
            .applied(GroupId(1))
            .map(|s| (s.plugin, s.applied_index >= at)),
        Some((d, true))
    );
    let st = store.status(GroupId(1)).await.expect("status");
    assert_eq!(st.role, "Leader");
    assert!(st.commit_index >= at);
    stop(store, threads).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_compaction_on_fjall_survives_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    // One fjall database; the raft core is started twice over it (a restart of the
    // loops, recovering every group from what is on disk).
    let fjall = Arc::new(crate::storage::Store::open(dir.path()).expect("open fjall"));
    let open = || {
        let store = fjall.clone();
        RaftStore::start(StoreDeps {
            log: store.clone(),
            apply: store,
            fsm: Arc::new(Adder),
            clock: Arc::new(SystemClock),
            fatal: Arc::new(|why: &str| panic!("fatal: {why}")),
            node: NodeId(1),
            transport: Arc::new(super::transport::NoTransport),
            metrics: Default::default(),
        })
        .expect("threads start")
    };
    let (store, threads) = open();
    store.start_peer(spec(1)).await.expect("start");
    // Sequential proposals: one entry each, so the log passes the compaction threshold.
    let entries = 2 * crate::limits::LOG_RETAIN_ENTRIES + 200;
    for _ in 0..entries {
        store
            .propose(GroupId(1), b"1".to_vec(), String::new())
            .await
            .expect("propose");
    }
    let st = store.status(GroupId(1)).await.expect("status");
    assert!(st.first_index > 1, "log was never compacted: {st:?}");
    assert!(st.last_index - st.first_index < entries, "{st:?}");
    stop(store, threads).await;

    let (store, threads) = open();
    store.start_peer(spec(1)).await.expect("restart");
    assert_eq!(value(&store, 1).await, entries as i64);
    store
        .propose(GroupId(1), b"1".to_vec(), String::new())
        .await
        .expect("propose after restart");
    assert_eq!(value(&store, 1).await, entries as i64 + 1);
    stop(store, threads).await;
}

/// Delivers raft messages between in-process nodes; a node can be cut off.
#[derive(Default)]
struct LocalNet {
    nodes: parking_lot::RwLock<std::collections::HashMap<NodeId, RaftStore>>,
    down: parking_lot::RwLock<std::collections::HashSet<NodeId>>,
    /// Appends sent without entries: raft's commit broadcasts (and probes).
    empty_appends: std::sync::atomic::AtomicU64,
}

struct LocalTransport {
    from: NodeId,
    net: Arc<LocalNet>,
}

impl super::transport::Transport for LocalTransport {
    fn send(&self, msgs: Vec<super::transport::OutMessage>) {
        let down = self.net.down.read();
        if down.contains(&self.from) {
            return;
        }
        let nodes = self.net.nodes.read();
        for m in msgs {
            if m.msg.get_msg_type() == raft::eraftpb::MessageType::MsgAppend
                && m.msg.entries.is_empty()
            {
                self.net
                    .empty_appends
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            if down.contains(&m.to_node) {
                continue;
            }
            let snapshot = m.msg.get_msg_type() == raft::eraftpb::MessageType::MsgSnapshot;
            let (group, to) = (m.group, PeerId(m.msg.to));
            if let Some(n) = nodes.get(&m.to_node) {
                let delivered = n.step(group, m.msg).is_ok();
                if snapshot && let Some(me) = nodes.get(&self.from) {
                    me.report_snapshot(group, to, delivered);
                }
            }
        }
    }
}

fn start_node(
    id: u64,
    mem: &Arc<MemStore>,
    net: &Arc<LocalNet>,
) -> (RaftStore, super::StoreThreads) {
    let (store, threads) = RaftStore::start(StoreDeps {
        log: mem.clone(),
        apply: mem.clone(),
        fsm: Arc::new(Adder),
        clock: Arc::new(SystemClock),
        fatal: Arc::new(|why: &str| panic!("fatal: {why}")),
        node: NodeId(id),
        transport: Arc::new(LocalTransport {
            from: NodeId(id),
            net: net.clone(),
        }),
        metrics: Default::default(),
    })
    .expect("threads start");
    net.nodes.write().insert(NodeId(id), store.clone());
    (store, threads)
}

/// Nodes 1-3 on `net`, each over a fresh in-memory store.
fn start_three(net: &Arc<LocalNet>) -> ([RaftStore; 3], [super::StoreThreads; 3]) {
    start_three_over(net, &Default::default())
}

/// Nodes 1-3 on `net` over the given stores (node N over `mems[N - 1]`).
fn start_three_over(
    net: &Arc<LocalNet>,
    mems: &[Arc<MemStore>; 3],
) -> ([RaftStore; 3], [super::StoreThreads; 3]) {
    let (n1, t1) = start_node(1, &mems[0], net);
    let (n2, t2) = start_node(2, &mems[1], net);
    let (n3, t3) = start_node(3, &mems[2], net);
    ([n1, n2, n3], [t1, t2, t3])
}

/// Stops `nodes` and joins their threads.
fn stop_all<const N: usize>(nodes: [&RaftStore; N], threads: [super::StoreThreads; N]) {
    for n in nodes {
        n.shutdown();
    }
    for t in threads {
        t.join();
    }
}

/// Starts `g` with one voter on each of `nodes` (peer seq 1); the first campaigns. It
/// starts last: its vote requests must not reach a node before that node's own
/// `start_peer`, which would then find the replica the request created (GroupExists).
async fn start_group(nodes: &[&RaftStore], g: GroupId) {
    let peers: Vec<PeerId> = nodes.iter().map(|n| PeerId::compose(1, n.node())).collect();
    for (i, n) in nodes.iter().enumerate().rev() {
        n.start_peer(PeerSpec {
            group: g,
            peer: peers[i],
            voters: peers.clone(),
            plugin: PluginDigest::of(b"adder"),
            campaign: i == 0,
        })
        .await
        .expect("start");
    }
}

async fn leader_of(nodes: &[&RaftStore], g: GroupId) -> RaftStore {
    for _ in 0..200 {
        for n in nodes {
            if let Ok(st) = n.status(g).await
                && st.role == "Leader"
            {
                return (*n).clone();
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no leader for group {g}");
}

async fn propose_until_ok(nodes: &[&RaftStore], g: GroupId, cmd: &[u8]) -> u64 {
    for _ in 0..100 {
        let leader = leader_of(nodes, g).await;
        if let Ok(p) = leader.propose(g, cmd.to_vec(), String::new()).await {
            return p.index;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("proposal never applied");
}

async fn applied_value(store: &RaftStore, g: GroupId, min_index: u64) -> i64 {
    for _ in 0..200 {
        if store
            .applied(g)
            .is_some_and(|s| s.applied_index >= min_index)
        {
            let (out, _) = store.query_blocking(g, b"").expect("query");
            return String::from_utf8(out)
                .expect("utf8")
                .parse()
                .expect("number");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!(
        "replica on node {} never reached index {min_index}: {:?}",
        store.node(),
        store.applied(g)
    );
}

/// A round that only moves the commit index writes no hard state: on disk the commit
/// index stays where the last term or vote change left it, on the leader and on the
/// followers, and a restart takes the applied index as its floor, as after a crash (raft
/// refuses to start with an applied index above its commit index).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_index_alone_is_not_written_and_a_restart_recovers_from_the_applied_index() {
    use super::traits::LogStore as _;
    let net = Arc::new(LocalNet::default());
    let mems: [Arc<MemStore>; 3] = Default::default();
    let g = GroupId(7);
    let (nodes, threads) = start_three_over(&net, &mems);
    start_group(&[&nodes[0], &nodes[1], &nodes[2]], g).await;
    let mut last = 0;
    for _ in 0..50 {
        last = propose_until_ok(&[&nodes[0], &nodes[1], &nodes[2]], g, b"1").await;
    }
    for (n, mem) in nodes.iter().zip(&mems) {
        assert_eq!(applied_value(n, g, last).await, 50);
        let applied = n.applied(g).expect("replica").applied_index;
        let on_disk = mem.raft_state(g).expect("read").expect("stored").hard_state;
        assert!(
            on_disk.commit + 50 <= applied,
            "node {}: commit {} on disk, applied {applied}: commit-only rounds were written",
            n.node(),
            on_disk.commit
        );
    }
    stop_all([&nodes[0], &nodes[1], &nodes[2]], threads);

    let (nodes, threads) = start_three_over(&net, &mems);
    start_group(&[&nodes[0], &nodes[1], &nodes[2]], g).await;
    let index = propose_until_ok(&[&nodes[0], &nodes[1], &nodes[2]], g, b"1").await;
    for n in &nodes {
        assert_eq!(applied_value(n, g, index).await, 51);
    }
    stop_all([&nodes[0], &nodes[1], &nodes[2]], threads);
}

/// A leader does not broadcast an append that only carries a new commit index (it would
/// double the messages per entry): followers learn it from the next append, or, once
/// proposals stop, from the next heartbeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_learn_commits_without_commit_only_appends() {
    let net = Arc::new(LocalNet::default());
    let ([n1, n2, n3], [t1, t2, t3]) = start_three(&net);
    let g = GroupId(9);
    let all = [&n1, &n2, &n3];
    start_group(&all, g).await;
    let first = propose_until_ok(&all, g, b"1").await;
    for n in all {
        assert_eq!(applied_value(n, g, first).await, 1);
    }
    let leader = leader_of(&all, g).await;
    let before = net.empty_appends.load(std::sync::atomic::Ordering::Relaxed);
    let mut last = first;
    for _ in 0..50 {
        last = leader
            .propose(g, b"1".to_vec(), String::new())
            .await
            .expect("propose")
            .index;
    }
    let sent = net.empty_appends.load(std::sync::atomic::Ordering::Relaxed) - before;
    // With the broadcast, each of the 50 commits sends one to each follower: 100.
    assert!(sent < 10, "{sent} appends without entries for 50 proposals");
    for n in all {
        assert_eq!(applied_value(n, g, last).await, 51, "node {}", n.node());
    }
    stop_all(all, [t1, t2, t3]);
}

/// A linearizable `read_query` on the leader of three replicas sees the acknowledged
/// write; on a follower it is refused with the leader's id, not served stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_query_is_served_by_the_leader_and_refused_by_followers() {
    let net = Arc::new(LocalNet::default());
    let ([n1, n2, n3], [t1, t2, t3]) = start_three(&net);
    let g = GroupId(11);
    let all = [&n1, &n2, &n3];
    start_group(&all, g).await;
    propose_until_ok(&all, g, b"7").await;
    let leader = leader_of(&all, g).await;
    let (out, _) = leader
        .read_query(g, ReadKind::Linearizable, Vec::new())
        .await
        .expect("leader read");
    assert_eq!(out, b"7");
    let leader_peer = PeerId::compose(1, leader.node());
    for n in all.iter().filter(|n| n.node() != leader.node()) {
        match n.read_query(g, ReadKind::Linearizable, Vec::new()).await {
            Err(RaftError::NotLeader { group, leader }) => {
                assert_eq!(group, g);
                assert_eq!(leader, Some(leader_peer), "node {}", n.node());
            }
            other => panic!("node {} answered {other:?}", n.node()),
        }
    }
    stop_all(all, [t1, t2, t3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_fail_over_and_catch_up_by_snapshot() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let exchange: crate::storage::mem::SnapExchange = Default::default();
    let net = Arc::new(LocalNet::default());
    let mems: Vec<Arc<MemStore>> = (0..4)
        .map(|_| Arc::new(MemStore::with_exchange(exchange.clone())))
        .collect();
    let (n1, t1) = start_node(1, &mems[0], &net);
    let (n2, t2) = start_node(2, &mems[1], &net);
    let (n3, t3) = start_node(3, &mems[2], &net);
    let g = GroupId(7);
    start_group(&[&n1, &n2, &n3], g).await;
    let all = [&n1, &n2, &n3];
    let mut last = 0;
    for _ in 0..20 {
        last = propose_until_ok(&all, g, b"1").await;
    }
    for n in all {
        assert_eq!(applied_value(n, g, last).await, 20);
    }
    // Cut the leader off: the other two elect a new one and keep serving.
    let old = leader_of(&all, g).await;
    net.down.write().insert(old.node());
    let rest: Vec<&RaftStore> = all
        .iter()
        .copied()
        .filter(|n| n.node() != old.node())
        .collect();
    for _ in 0..10 {
        last = propose_until_ok(&rest, g, b"1").await;
    }
    assert_eq!(applied_value(rest[0], g, last).await, 30);
    // Enough writes that the log is compacted past where the cut-off node stopped.
    for _ in 0..(3 * crate::limits::LOG_RETAIN_ENTRIES) {
        last = propose_until_ok(&rest, g, b"1").await;
    }
    let first = leader_of(&rest, g)
        .await
        .status(g)
        .await
        .expect("status")
        .first_index;
    assert!(first > 40, "log not compacted: first index {first}");
    net.down.write().clear();
    let total = 30 + 3 * crate::limits::LOG_RETAIN_ENTRIES as i64;
    assert_eq!(applied_value(&old, g, last).await, total);
    // Membership: a fourth node joins (uninitialized, via snapshot) and an old voter leaves.
    let (n4, t4) = start_node(4, &mems[3], &net);
    let p4 = PeerId::compose(2, NodeId(4));
    let leader = leader_of(&all, g).await;
    leader
        .change_peers(g, vec![super::PeerChange::AddLearner(p4)])
        .await
        .expect("add learner");
    leader
        .change_peers(g, vec![super::PeerChange::AddVoter(p4)])
        .await
        .expect("promote");
    last = propose_until_ok(&all, g, b"1").await;
    assert_eq!(applied_value(&n4, g, last).await, total + 1);
    let victim = all
        .iter()
        .find(|n| n.node() != leader.node())
        .copied()
        .expect("a follower");
    let victim_peer = PeerId::compose(1, victim.node());
    leader
        .change_peers(g, vec![super::PeerChange::Remove(victim_peer)])
        .await
        .expect("remove");
    last = propose_until_ok(&[&n1, &n2, &n3, &n4], g, b"1").await;
    assert_eq!(applied_value(&n4, g, last).await, total + 2);
    for _ in 0..100 {
        if victim.applied(g).is_none() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        victim.applied(g).is_none(),
        "the removed replica still exists"
    );
    let st = leader_of(&[&n1, &n2, &n3, &n4], g)
        .await
        .status(g)
        .await
        .expect("status");
    assert_eq!(st.voters.len(), 3);
    assert!(!st.voters.contains(&victim_peer.0));
    stop_all([&n1, &n2, &n3, &n4], [t1, t2, t3, t4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_heartbeats_create_a_bounded_number_of_replicas() {
    let mem = Arc::new(MemStore::default());
    let net = Arc::new(LocalNet::default());
    let (store, _threads) = start_node(2, &mem, &net);
    let forged = crate::limits::UNINITIALIZED_PEERS_MAX as u64 + 100;
    for g in 1..=forged {
        let mut m = raft::eraftpb::Message::default();
        m.set_msg_type(raft::eraftpb::MessageType::MsgHeartbeat);
        m.from = PeerId::compose(1, NodeId(1)).0;
        m.to = PeerId::compose(g, NodeId(2)).0;
        m.term = 3;
        // A full mailbox or a dropped message is fine; only creation counts.
        let _ = store.step(GroupId(1000 + g), m);
    }
    let mut created = 0;
    for _ in 0..100 {
        created = store.groups().len();
        if created >= crate::limits::UNINITIALIZED_PEERS_MAX {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Let any message still queued be handled before counting again.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let after = store.groups().len();
    assert_eq!(
        created,
        crate::limits::UNINITIALIZED_PEERS_MAX,
        "{forged} forged groups"
    );
    assert_eq!(after, crate::limits::UNINITIALIZED_PEERS_MAX);
    store.shutdown();
}

async fn all_hibernating(nodes: &[&RaftStore], g: GroupId) -> bool {
    for _ in 0..200 {
        let mut all = true;
        for n in nodes {
            all &= n.status(g).await.is_ok_and(|s| s.hibernating);
        }
        if all {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_groups_hibernate_wake_on_demand_keep_leases_safe_and_fail_over() {
    let net = Arc::new(LocalNet::default());
    let ([n1, n2, n3], [t1, t2, t3]) = start_three(&net);
    let g = GroupId(9);
    start_group(&[&n1, &n2, &n3], g).await;
    let all = [&n1, &n2, &n3];
    for _ in 0..5 {
        propose_until_ok(&all, g, b"1").await;
    }
    assert!(
        all_hibernating(&all, g).await,
        "the idle group never hibernated"
    );
    let leader = leader_of(&all, g).await;
    let term = leader.status(g).await.expect("status").term;

    // A proposal wakes the group and commits without an election.
    let p = leader
        .propose(g, b"1".to_vec(), String::new())
        .await
        .expect("a proposal to a hibernating leader");
    for n in all {
        assert_eq!(applied_value(n, g, p.index).await, 6);
        assert_eq!(n.status(g).await.expect("status").term, term);
    }
    assert!(
        all_hibernating(&all, g).await,
        "the group did not hibernate again"
    );

    // Cut the hibernating leader off. A lease read must not be served from its old
    // lease: it goes through ReadIndex, which cannot reach a quorum.
    net.down.write().insert(leader.node());
    let read = tokio::time::timeout(
        std::time::Duration::from_millis(1500),
        leader.read_barrier(g, ReadKind::Lease),
    )
    .await;
    assert!(
        !matches!(read, Ok(Ok(_))),
        "a leader cut off while hibernating served a lease read: {read:?}"
    );

    // The followers hibernate and do not notice on their own...
    let rest: Vec<&RaftStore> = all
        .iter()
        .copied()
        .filter(|n| n.node() != leader.node())
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    for n in &rest {
        let st = n.status(g).await.expect("status");
        assert!(st.hibernating && st.term == term, "{st:?}");
    }
    // ...until the node's liveness check wakes them: they elect a new leader.
    for n in &rest {
        n.wake_led_by(leader.node());
    }
    let index = propose_until_ok(&rest, g, b"1").await;
    assert_eq!(applied_value(rest[0], g, index).await, 7);
    let new_term = leader_of(&rest, g)
        .await
        .status(g)
        .await
        .expect("status")
        .term;
    assert!(new_term > term);
    stop_all(all, [t1, t2, t3]);
}
