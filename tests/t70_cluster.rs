//! The cluster on real processes: three (or four) `flotilla server`s on loopback, each
//! with its own data dir, talking over the gRPC transport. Leader failure under
//! writes, snapshot catch-up after compaction, a node joining and taking over a
//! replica, leader transfer and node drain under load, leader spread over 100 groups,
//! and the bank's total through all of it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use flotilla::proto::v1::cluster_client::ClusterClient;
use flotilla::proto::v1::{
    AddReplicaRequest, ClusterStatusRequest, CreateGroupRequest, DrainNodeRequest,
    GroupStatusRequest, ReadConsistency, RemoveReplicaRequest, ReplicaDigestRequest,
    TransferLeaderRequest,
};
use flotilla_tests::{AnyClient, Cluster, digests_agree};
use parking_lot::Mutex;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_flotilla");

async fn cluster_client(addr: &str) -> anyhow::Result<ClusterClient<tonic::transport::Channel>> {
    Ok(ClusterClient::new(
        tonic::transport::Channel::from_shared(format!("http://{addr}"))?
            .connect()
            .await?,
    ))
}

async fn create(c: &Cluster, via: usize, plugin: &str) -> anyhow::Result<u64> {
    let mut a = c.nodes[via].admin().await?;
    let g = a
        .create_group(CreateGroupRequest {
            plugin: plugin.into(),
            replicas: 3,
            ..Default::default()
        })
        .await?
        .into_inner()
        .group
        .unwrap_or_default();
    assert_eq!(g.peers.len(), 3, "{g:?}");
    Ok(g.group_id)
}

/// The node id of the group's leader, asked through `addr`.
async fn leader_node(addr: &str, group: u64) -> anyhow::Result<u64> {
    for _ in 0..100 {
        let ch = tonic::transport::Channel::from_shared(format!("http://{addr}"))?
            .connect()
            .await?;
        let mut a = flotilla::proto::v1::admin_client::AdminClient::new(ch);
        if let Ok(st) = a.group_status(GroupStatusRequest { group_id: group }).await {
            let st = st.into_inner();
            if st.role == "Leader" && st.leader_peer_id != 0 {
                return Ok(st.leader_peer_id & 0xFFFF);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("group {group} has no leader")
}

/// Writers putting unique keys until stopped; returns the keys acknowledged.
struct Writers {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Writers {
    fn start(client: &AnyClient, group: u64, n: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let tasks = (0..n)
            .map(|w| {
                let (client, stop, acked) = (client.clone(), stop.clone(), acked.clone());
                tokio::spawn(async move {
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let key = format!("w{w}-{i}");
                        let cmd = json!({"put": {"key": key, "value": i.to_string()}});
                        if client.propose(group, &cmd, w).await?.is_some() {
                            acked.lock().push(key);
                        }
                        i += 1;
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        Self { stop, acked, tasks }
    }

    async fn finish(self) -> anyhow::Result<Vec<String>> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await??;
        }
        let acked = self.acked.lock().clone();
        Ok(acked)
    }

    fn count(&self) -> usize {
        self.acked.lock().len()
    }
}

async fn wait_acked(w: &Writers, at_least: usize) {
    let start = Instant::now();
    while w.count() < at_least && start.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn check_all_readable(client: &AnyClient, group: u64, keys: &[String]) -> anyhow::Result<()> {
    for (i, key) in keys.iter().enumerate() {
        let v = client
            .query(
                group,
                &json!({"get": {"key": key}}),
                ReadConsistency::Linearizable,
                i,
            )
            .await?;
        anyhow::ensure!(
            !v["value"].is_null(),
            "acknowledged write {key} is lost: {v}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_killed_under_writes_loses_nothing_and_the_node_catches_up() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(BIN, 3).await?;
    cluster.nodes[0]
        .deploy("kv", flotilla::examples::KV)
        .await?;
    let group = create(&cluster, 1, "kv").await?;
    let client = AnyClient::new(cluster.addrs());
    let writers = Writers::start(&client, group, 8);
    wait_acked(&writers, 200).await;
    let leader = leader_node(&cluster.nodes[0].addr, group).await?;
    let before = writers.count();
    let killed_at = Instant::now();
    cluster.node(leader).kill9()?;
    // The survivors elect a leader and keep acknowledging writes.
    while writers.count() < before + 50 {
        anyhow::ensure!(
            killed_at.elapsed() < Duration::from_secs(20),
            "no writes acknowledged for 20 s after the leader died\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let other = if leader == 1 { 2 } else { 1 };
    let new_leader = leader_node(&cluster.node(other).addr.clone(), group).await?;
    println!(
        "leader {leader} killed; node {new_leader} leads; 50 more writes acknowledged {:?} later",
        killed_at.elapsed()
    );
    assert_ne!(new_leader, leader);
    cluster.node(leader).restart().await?;
    wait_acked(&writers, writers.count() + 100).await;
    let acked = writers.finish().await?;
    check_all_readable(&client, group, &acked).await?;
    let (index, digest) = digests_agree(&cluster.addrs(), group).await?;
    println!(
        "{} acknowledged writes all read back; replicas agree at index {index}: {digest}",
        acked.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_down_through_compaction_catches_up_by_snapshot() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(BIN, 3).await?;
    cluster.nodes[0]
        .deploy("kv", flotilla::examples::KV)
        .await?;
    let group = create(&cluster, 0, "kv").await?;
    let leader = leader_node(&cluster.nodes[0].addr, group).await?;
    let follower = (1..=3).find(|n| *n != leader).unwrap_or(3);
    cluster.node(follower).kill9()?;
    let client = AnyClient::new(vec![cluster.node(leader).addr.clone()]);
    // One client, one command per entry: past the compaction threshold (2 x 1024).
    for i in 0..2300u32 {
        let cmd = json!({"put": {"key": format!("k{}", i % 500), "value": i.to_string()}});
        client.propose(group, &cmd, 0).await?;
    }
    let mut a = cluster.node(leader).admin().await?;
    let st = a
        .group_status(GroupStatusRequest { group_id: group })
        .await?
        .into_inner();
    assert!(
        st.first_index > 100,
        "the leader's log was not compacted: {st:?}"
    );
    cluster.node(follower).restart().await?;
    let (index, digest) = digests_agree(&cluster.addrs(), group).await?;
    // The in-log consistency check agrees too, through the CLI.
    let out =
        cluster
            .node(follower)
            .cli(&["group", "check", &group.to_string(), "--output", "json"])?;
    let checked: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert!(
        out.status.success(),
        "{checked} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(checked["consistent"], json!(true), "{checked}");
    assert_eq!(
        checked["replicas"].as_array().map(Vec::len),
        Some(3),
        "{checked}"
    );
    let d0 = &checked["replicas"][0]["digest"];
    assert!(d0.as_str().is_some_and(|d| d.len() == 64), "{checked}");
    assert!(
        checked["replicas"]
            .as_array()
            .is_some_and(|r| r.iter().all(|x| &x["digest"] == d0))
    );
    let log = cluster.node(follower).log();
    assert!(
        log.contains("snapshot installed"),
        "the follower did not catch up by snapshot:\n{log}"
    );
    println!("follower {follower} installed a snapshot; replicas agree at {index}: {digest}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_joining_node_takes_over_a_replica_under_writes() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(BIN, 3).await?;
    cluster.nodes[0]
        .deploy("kv", flotilla::examples::KV)
        .await?;
    let group = create(&cluster, 0, "kv").await?;
    let client = AnyClient::new(cluster.addrs());
    let writers = Writers::start(&client, group, 4);
    wait_acked(&writers, 100).await;
    cluster.join(4).await?;
    let mut c = cluster_client(&cluster.nodes[0].addr).await?;
    let added = c
        .add_replica(AddReplicaRequest {
            group_id: group,
            node_id: 4,
            learner_only: false,
        })
        .await?
        .into_inner();
    let new_peer = added.replica.unwrap_or_default();
    assert_eq!(new_peer.node_id, 4);
    let mut a = cluster.nodes[0].admin().await?;
    let st = a
        .group_status(GroupStatusRequest { group_id: group })
        .await?
        .into_inner();
    let old = st
        .replicas
        .iter()
        .find(|r| r.node_id == 1)
        .map(|r| r.peer_id)
        .unwrap_or_default();
    c.remove_replica(RemoveReplicaRequest {
        group_id: group,
        peer_id: old,
    })
    .await?;
    wait_acked(&writers, writers.count() + 100).await;
    let acked = writers.finish().await?;
    check_all_readable(&client, group, &acked).await?;
    let addrs: Vec<String> = cluster.nodes[1..].iter().map(|n| n.addr.clone()).collect();
    let (index, _) = digests_agree(&addrs, group).await?;
    // The old replica's data is destroyed once the removal applies there.
    let mut gone = false;
    for _ in 0..100 {
        let mut c1 = cluster_client(&cluster.nodes[0].addr).await?;
        if c1
            .replica_digest(ReplicaDigestRequest {
                group_id: group,
                index: 0,
            })
            .await
            .is_err_and(|s| s.code() == tonic::Code::NotFound)
        {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "node 1 still holds group {group}\n{}", cluster.logs());
    println!(
        "{} writes acknowledged and read back; nodes 2-4 agree at {index}",
        acked.len()
    );
    Ok(())
}

async fn bank_total(client: &AnyClient, group: u64) -> anyhow::Result<serde_json::Value> {
    let t = client
        .query(
            group,
            &json!({"total": {}}),
            ReadConsistency::Linearizable,
            0,
        )
        .await?;
    Ok(t["total"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transfer_leader_and_drain_under_load_conserve_the_bank() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(BIN, 3).await?;
    cluster.nodes[0]
        .deploy("bank", flotilla::examples::BANK)
        .await?;
    let group = create(&cluster, 0, "bank").await?;
    cluster.join(4).await?;
    let client = AnyClient::new(cluster.addrs());
    let accounts = ["a", "b", "c", "d"];
    for a in accounts {
        client
            .propose(group, &json!({"open": {"account": a, "initial": 100}}), 0)
            .await?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..4usize {
        let (client, stop) = (client.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let cmd = json!({"transfer": {"from": accounts[(w + i) % 4], "to": accounts[(w + 2 * i + 1) % 4], "amount": (w * 7 + i * 13) % 60 + 1}});
                match client.propose(group, &cmd, w).await {
                    Ok(_) => {}
                    Err(e) if e.code() == tonic::Code::FailedPrecondition => {}
                    Err(e) => return Err(anyhow::anyhow!("{cmd}: {e:?}")),
                }
                i += 1;
            }
            anyhow::Ok(i)
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let leader = leader_node(&cluster.nodes[0].addr, group).await?;
    let target = (1..=3).find(|n| *n != leader).unwrap_or(2);
    // A leader watcher on the target node sees the change.
    let mut watch = cluster
        .node(target)
        .client()
        .await?
        .watch_leaders(flotilla::proto::v1::WatchLeadersRequest {})
        .await?
        .into_inner();
    let mut c = cluster_client(&cluster.nodes[0].addr).await?;
    let r = c
        .transfer_leader(TransferLeaderRequest {
            group_id: group,
            peer_id: 0,
            node_id: target,
        })
        .await?
        .into_inner();
    assert_eq!(r.leader_peer_id & 0xFFFF, target);
    assert_eq!(leader_node(&cluster.nodes[0].addr, group).await?, target);
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(ev) = tokio_stream::StreamExt::next(&mut watch).await {
            let ev = ev?;
            if ev.group_id == group && ev.leader_node_id == target {
                return anyhow::Ok(ev);
            }
        }
        anyhow::bail!("the watch stream ended")
    })
    .await??;
    println!(
        "watcher saw group {group} led by node {} in term {}",
        seen.leader_node_id, seen.term
    );
    // Drain the node that leads now: its replica (and leadership) move away.
    let drained = c
        .drain_node(DrainNodeRequest { node_id: target })
        .await?
        .into_inner();
    assert_eq!(drained.moved, 1, "{drained:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut transfers = 0;
    for t in tasks {
        transfers += t.await??;
    }
    let mut a = cluster.nodes[0].admin().await?;
    let st = a
        .group_status(GroupStatusRequest { group_id: group })
        .await?
        .into_inner();
    assert!(
        st.replicas.iter().all(|r| r.node_id != target),
        "node {target} still hosts group {group}: {:?}",
        st.replicas
    );
    assert_eq!(bank_total(&client, group).await?, json!(400));
    let addrs: Vec<String> = st
        .replicas
        .iter()
        .map(|r| cluster.node(r.node_id).addr.clone())
        .collect();
    digests_agree(&addrs, group).await?;
    println!("{transfers} transfers attempted; total 400 after transfer-leader and drain");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_groups_spread_their_leaders() -> anyhow::Result<()> {
    let cluster = Cluster::start(BIN, 3).await?;
    cluster.nodes[0]
        .deploy("counter", flotilla::examples::COUNTER)
        .await?;
    for _ in 0..100 {
        create(&cluster, 0, "counter").await?;
    }
    let mut c = cluster_client(&cluster.nodes[0].addr).await?;
    let mut leaders = Vec::new();
    for _ in 0..100 {
        let st = c
            .cluster_status(ClusterStatusRequest {})
            .await?
            .into_inner();
        let total: u32 = st.groups.iter().filter(|g| g.group_id != 0).count() as u32;
        leaders = st
            .nodes
            .iter()
            .map(|n| {
                st.groups
                    .iter()
                    .filter(|g| g.group_id != 0 && g.leader_node_id == n.node_id)
                    .count()
            })
            .collect::<Vec<_>>();
        if total == 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("leaders per node: {leaders:?}");
    assert_eq!(leaders.iter().sum::<usize>(), 100, "{leaders:?}");
    for l in &leaders {
        assert!(
            (25..=42).contains(l),
            "leaders per node {leaders:?} are not about a third each"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_request_id_applies_once_even_across_a_leader_change() -> anyhow::Result<()> {
    use flotilla::proto::v1::ProposeRequest;
    let mut cluster = Cluster::start(BIN, 3).await?;
    cluster.nodes[0]
        .deploy("counter", flotilla::examples::COUNTER)
        .await?;
    let group = create(&cluster, 0, "counter").await?;
    let add = |rid: &str| ProposeRequest {
        group_id: group,
        command: json!({"add": {"delta": 1}}).to_string().into_bytes(),
        request_id: rid.into(),
    };
    let mut c = cluster.nodes[1].client().await?;
    let first = c.propose(add("req-1")).await?.into_inner();
    let again = c.propose(add("req-1")).await?.into_inner();
    assert_eq!(first.output, again.output, "a retry got a different answer");
    // The retry goes to another node after the leader dies: still applied once.
    let leader = leader_node(&cluster.nodes[0].addr, group).await?;
    cluster.node(leader).kill9()?;
    let survivor = if leader == 1 { 2 } else { 1 };
    let client = AnyClient::new(vec![cluster.node(survivor).addr.clone()]);
    let mut retried = None;
    for _ in 0..100 {
        let mut c = cluster.node(survivor).client().await?;
        match c.propose(add("req-1")).await {
            Ok(r) => {
                retried = Some(r.into_inner());
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let retried = retried.ok_or_else(|| anyhow::anyhow!("no leader after the kill"))?;
    assert_eq!(retried.output, first.output);
    client
        .propose(group, &json!({"add": {"delta": 1}}), 0)
        .await?;
    let v = client
        .query(group, &json!({"get": {}}), ReadConsistency::Linearizable, 0)
        .await?;
    assert_eq!(
        v,
        json!(2),
        "three sends of req-1 and one plain add must count 2"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_consistency_check_raises_the_alarm_when_a_replica_diverges() -> anyhow::Result<()> {
    use flotilla::raftstore::traits::ApplyStore as _;
    let mut cluster = Cluster::start(BIN, 3).await?;
    cluster.nodes[0]
        .deploy("kv", flotilla::examples::KV)
        .await?;
    let group = create(&cluster, 0, "kv").await?;
    let client = AnyClient::new(cluster.addrs());
    for i in 0..20 {
        client
            .propose(
                group,
                &json!({"put": {"key": format!("k{i}"), "value": "v"}}),
                0,
            )
            .await?;
    }
    let leader = leader_node(&cluster.nodes[0].addr, group).await?;
    let follower = (1..=3).find(|n| *n != leader).unwrap_or(3);
    digests_agree(&cluster.addrs(), group).await?;
    // Change one follower's state behind raft's back (what a diverging plugin would do).
    cluster.node(follower).stop()?;
    {
        let store = flotilla::storage::Store::open(&cluster.node(follower).data_dir.join("db"))?;
        let g = flotilla::ids::GroupId(group);
        let state = store
            .apply_state(g)?
            .ok_or_else(|| anyhow::anyhow!("no apply state"))?;
        let mut w = flotilla::raftstore::fsm::WriteSet::new();
        w.insert(b"k3".to_vec(), Some(b"tampered".to_vec()));
        store.commit_apply(g, w, state, None)?;
        store.sync()?;
    }
    cluster.node(follower).restart().await?;
    let out =
        cluster
            .node(leader)
            .cli(&["group", "check", &group.to_string(), "--output", "json"])?;
    let checked: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(out.status.code(), Some(3), "{checked}");
    assert_eq!(checked["consistent"], json!(false), "{checked}");
    let digests: Vec<&serde_json::Value> = checked["replicas"]
        .as_array()
        .map(|r| r.iter().map(|x| &x["digest"]).collect())
        .unwrap_or_default();
    assert_eq!(digests.len(), 3, "{checked}");
    let odd = checked["replicas"]
        .as_array()
        .and_then(|r| r.iter().find(|x| x["node_id"] == json!(follower)))
        .map(|x| &x["digest"]);
    assert!(
        digests.iter().filter(|d| Some(**d) == odd).count() == 1,
        "only the tampered replica should differ: {checked}"
    );
    let log = cluster.node(leader).log();
    assert!(
        log.contains("REPLICA DIVERGENCE"),
        "no alarm in the leader's log:\n{log}"
    );
    let mut a = cluster.node(leader).admin().await?;
    let st = a
        .group_status(GroupStatusRequest { group_id: group })
        .await?
        .into_inner();
    assert!(st.last_check.starts_with("DIVERGED"), "{st:?}");

    // The periodic option raises the same alarm without anyone asking: restart every
    // node with it and wait for the leader (wherever it is now) to check by itself.
    let alarms = |c: &Cluster| c.logs().matches("REPLICA DIVERGENCE").count();
    let before = alarms(&cluster);
    for n in 1..=3 {
        let node = cluster.node(n);
        node.args
            .extend(["--consistency-check-interval".into(), "1s".into()]);
        node.stop()?;
        node.restart().await?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while alarms(&cluster) <= before {
        anyhow::ensure!(
            Instant::now() < deadline,
            "no periodic alarm within 30 s:\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}
