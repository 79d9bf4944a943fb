//! Containment in the raft core: a panic in host code while applying or reading is an
//! answer, not a stopped node, and a group's storage quota refuses growth past it; both
//! through the real store and apply loops over the in-memory storage twin.

use std::sync::Arc;

use super::{spec, start, stop, value};
use crate::ids::GroupId;
use crate::raftstore::fsm::FsmError;
use crate::raftstore::{RaftError, ReadKind};
use crate::storage::mem::MemStore;

/// A panic in host code while applying is the entry's deterministic outcome, not a
/// stopped node: its commands are rejected, nothing it wrote stays, the group goes on,
/// and a restart does not replay it into a crash. A panic answering reads fails those
/// reads only; the query threads survive it, however many times it happens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_panics_reject_the_command_or_read_and_the_node_goes_on() {
    let mem = Arc::new(MemStore::default());
    let (store, threads) = start(&mem);
    store.start_peer(spec(1)).await.expect("start");
    store
        .propose(GroupId(1), b"5".to_vec(), String::new())
        .await
        .expect("propose");
    let panicked = store
        .propose(GroupId(1), b"panic".to_vec(), String::new())
        .await;
    assert!(
        matches!(&panicked, Err(RaftError::Fsm(FsmError::HostPanic(m))) if m.contains("on purpose")),
        "{panicked:?}"
    );
    store
        .propose(GroupId(1), b"2".to_vec(), String::new())
        .await
        .expect("the group applies after the panic");
    for _ in 0..3 * crate::limits::QUERY_THREADS {
        let read = store
            .read_query(GroupId(1), ReadKind::Linearizable, b"panic".to_vec())
            .await;
        assert!(
            matches!(read, Err(RaftError::Fsm(FsmError::HostPanic(_)))),
            "{read:?}"
        );
    }
    assert_eq!(value(&store, 1).await, 7, "reads still answered");
    stop(store, threads).await;
    mem.crash();
    let (store, threads) = start(&mem);
    store.start_peer(spec(1)).await.expect("restart");
    assert_eq!(value(&store, 1).await, 7, "replayed past the panic");
    stop(store, threads).await;
}

/// A quota set through the log refuses commands that would grow the group past it,
/// lets shrinking ones through, and its usage is exact and survives a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_refuses_growth_past_it_and_keeps_exact_usage() {
    use crate::raftstore::quota::{Quota, Usage};
    let mem = Arc::new(MemStore::default());
    let (store, threads) = start(&mem);
    store.start_peer(spec(1)).await.expect("start");
    store
        .propose(GroupId(1), b"fill:3".to_vec(), String::new())
        .await
        .expect("fill");
    let account = store.account(GroupId(1)).expect("account");
    assert_eq!(account.quota, Quota::default());
    assert_eq!(account.usage, Usage { keys: 3, bytes: 9 });
    let quota = Quota {
        keys_max: 5,
        bytes_max: 1000,
    };
    store.set_quota(GroupId(1), quota).await.expect("set quota");
    let refused = store
        .propose(GroupId(1), b"fill:6".to_vec(), String::new())
        .await;
    assert!(
        matches!(&refused, Err(RaftError::Fsm(FsmError::QuotaExceeded(m))) if m.contains("6 keys")),
        "{refused:?}"
    );
    store
        .propose(GroupId(1), b"1".to_vec(), String::new())
        .await
        .expect("one more key fits");
    let account = store.account(GroupId(1)).expect("account");
    assert_eq!(
        (account.quota, account.usage),
        (quota, Usage { keys: 4, bytes: 11 })
    );
    stop(store, threads).await;
    mem.crash();
    let (store, threads) = start(&mem);
    store.start_peer(spec(1)).await.expect("restart");
    assert_eq!(value(&store, 1).await, 1);
    let account = store.account(GroupId(1)).expect("account");
    assert_eq!(
        (account.quota, account.usage),
        (quota, Usage { keys: 4, bytes: 11 })
    );
    stop(store, threads).await;
}
