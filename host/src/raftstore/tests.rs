//! The raft core end to end in one process: real store loop and apply loop, the
//! in-memory storage twin and a native state machine (no fjall, no wasm).

use std::sync::Arc;

use super::fsm::{CommandOutcome, EntryContext, FsmError, KvView, QueryContext, StateMachineHost};
use super::{PeerSpec, RaftError, RaftStore, ReadKind, StoreDeps, SystemClock};
use crate::ids::{GroupId, PeerId, PluginDigest};
use crate::storage::mem::MemStore;

/// Adds the decimal number in each command to key "n"; "fail" is rejected.
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
            match r {
                Ok(_) => kv.commit_command(),
                Err(_) => kv.discard_command(),
            }
            out.push(r);
        }
        (kv, out)
    }

    fn query(&self, _: PluginDigest, _: QueryContext, _: &[u8], kv: KvView) -> CommandOutcome {
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
    })
    .expect("threads start")
}

fn spec(g: u64) -> PeerSpec {
    PeerSpec {
        group: GroupId(g),
        peer: PeerId(g),
        voters: vec![PeerId(g)],
        plugin: PluginDigest::of(b"adder"),
    }
}

async fn value(store: &RaftStore, g: u64) -> i64 {
    store
        .read_barrier(GroupId(g), ReadKind::Linearizable)
        .await
        .expect("read index");
    let (out, _) = store.query(GroupId(g), b"").expect("query");
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
    store.shutdown();
    tokio::task::spawn_blocking(move || threads.join())
        .await
        .expect("join");

    // Unsynced apply writes are lost; the log replays them exactly once.
    mem.crash();
    let (store, threads) = start(&mem);
    for g in 1..=2 {
        store.start_peer(spec(g)).await.expect("restart");
        assert_eq!(value(&store, g).await, 100, "group {g} after crash");
    }
    assert!(store.applied(GroupId(3)).is_none());
    store.shutdown();
    tokio::task::spawn_blocking(move || threads.join())
        .await
        .expect("join");
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
    store.shutdown();
    tokio::task::spawn_blocking(move || threads.join())
        .await
        .expect("join");
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
    store.shutdown();
    tokio::task::spawn_blocking(move || threads.join())
        .await
        .expect("join");

    let (store, threads) = open();
    store.start_peer(spec(1)).await.expect("restart");
    assert_eq!(value(&store, 1).await, entries as i64);
    store
        .propose(GroupId(1), b"1".to_vec(), String::new())
        .await
        .expect("propose after restart");
    assert_eq!(value(&store, 1).await, entries as i64 + 1);
    store.shutdown();
    tokio::task::spawn_blocking(move || threads.join())
        .await
        .expect("join");
}
