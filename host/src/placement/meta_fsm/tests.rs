//! Unit tests of the meta state machine over an in-memory KV.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use crate::placement::META_GROUP;
use crate::raftstore::fsm::FsmError;
use crate::raftstore::mem_kv::MemKv;

/// A meta group replica: committed state plus the next entry index.
struct Meta {
    mem: Arc<MemKv>,
    index: u64,
}

impl Meta {
    fn new() -> Self {
        Self {
            mem: Arc::new(MemKv::default()),
            index: 0,
        }
    }

    /// Applies one entry holding `commands` and commits it; timestamps are index * 1000.
    fn entry(&mut self, commands: &[&[u8]]) -> Vec<CommandOutcome> {
        self.index += 1;
        let ctx = EntryContext {
            group: META_GROUP,
            index: self.index,
            term: 1,
            timestamp_ms: self.index * 1000,
            random_seed: EntryContext::seed_for(META_GROUP, self.index),
        };
        let kv = KvView::for_apply(self.mem.clone(), META_GROUP);
        let (kv, outs) = MetaFsm.apply_entry(ctx, commands, kv);
        self.mem.commit(kv);
        outs
    }

    fn apply(&mut self, cmd: &MetaCommand) -> CommandOutcome {
        let bytes = cmd.encode();
        self.entry(&[&bytes]).remove(0)
    }

    fn ok(&mut self, cmd: &MetaCommand) -> MetaOutput {
        let out = self
            .apply(cmd)
            .unwrap_or_else(|e| panic!("{cmd:?} failed: {e}"));
        MetaOutput::decode(&out).expect("output decodes")
    }

    /// The rejection message of `cmd`, which must fail and change nothing.
    fn rejected(&mut self, cmd: &MetaCommand) -> String {
        let before = self.dump();
        let msg = match self.apply(cmd) {
            Err(FsmError::Rejected(msg)) => msg,
            other => panic!("{cmd:?}: expected a rejection, got {other:?}"),
        };
        assert_eq!(before, self.dump(), "{cmd:?} was refused but changed state");
        msg
    }

    fn query(&self, q: &MetaQuery) -> CommandOutcome {
        let ctx = QueryContext {
            group: META_GROUP,
            applied_index: self.index,
            applied_timestamp_ms: self.index * 1000,
        };
        MetaFsm.query(
            ctx,
            &q.encode(),
            &KvView::for_query(self.mem.clone(), META_GROUP),
        )
    }

    fn q(&self, q: &MetaQuery) -> MetaOutput {
        let out = self
            .query(q)
            .unwrap_or_else(|e| panic!("{q:?} failed: {e}"));
        MetaOutput::decode(&out).expect("output decodes")
    }

    fn q_rejected(&self, q: &MetaQuery) -> String {
        match self.query(q) {
            Err(FsmError::Rejected(msg)) => msg,
            other => panic!("{q:?}: expected a rejection, got {other:?}"),
        }
    }

    fn dump(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        self.mem.0.lock().clone()
    }

    fn register(&mut self, node: u64) -> NodeRecord {
        self.ok(&MetaCommand::RegisterNode {
            node: NodeId(node),
            addr: format!("10.0.0.{node}:7000"),
        })
        .into_node()
        .expect("node output")
    }

    fn deploy(&mut self, name: &str, bytes: &[u8]) -> (PluginRecord, bool) {
        match self.ok(&MetaCommand::DeployPlugin {
            name: name.into(),
            digest: PluginDigest::of(bytes),
            size_bytes: bytes.len() as u64,
            stateful: false,
            holder_node: NodeId(1),
        }) {
            MetaOutput::Deployed {
                plugin,
                already_present,
            } => (plugin, already_present),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn create(&mut self, replicas: u32) -> GroupRecord {
        self.ok(&MetaCommand::CreateGroup {
            plugin_digest: PluginDigest::of(b"kv"),
            replicas,
        })
        .into_group()
        .expect("group output")
    }

    fn nodes(&self) -> Vec<NodeRecord> {
        match self.q(&MetaQuery::Nodes) {
            MetaOutput::Nodes { nodes } => nodes,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn node(&self, id: u64) -> NodeRecord {
        self.nodes()
            .into_iter()
            .find(|n| n.id == NodeId(id))
            .expect("node is registered")
    }

    fn group(&self, id: GroupId) -> GroupRecord {
        self.q(&MetaQuery::Group { group: id })
            .into_group()
            .expect("group output")
    }

    fn all_groups(&self) -> Vec<GroupRecord> {
        let mut out = Vec::new();
        let mut start_after = None;
        loop {
            match self.q(&MetaQuery::Groups {
                start_after,
                limit: Some(GROUPS_PAGE_MAX),
            }) {
                MetaOutput::Groups {
                    groups,
                    next_start_after,
                } => {
                    out.extend(groups);
                    if next_start_after.is_none() {
                        return out;
                    }
                    start_after = next_start_after;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    fn groups_on(&self, node: u64) -> Vec<GroupId> {
        match self.q(&MetaQuery::GroupsOnNode {
            node: NodeId(node),
            start_after: None,
            limit: Some(GROUPS_PAGE_MAX),
        }) {
            MetaOutput::Groups { groups, .. } => groups.iter().map(|g| g.id).collect(),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// The per-node counts and the `replica/` index agree with the group records.
    fn check_consistent(&self) {
        let groups = self.all_groups();
        for n in self.nodes() {
            let hosted: Vec<GroupId> = groups
                .iter()
                .filter(|g| g.replica_on(n.id).is_some())
                .map(|g| g.id)
                .collect();
            let leaders = groups
                .iter()
                .filter(|g| g.preferred_leader.node() == n.id)
                .count() as u64;
            assert_eq!(
                n.replicas,
                hosted.len() as u64,
                "replica count of node {}",
                n.id
            );
            assert_eq!(
                n.preferred_leaders, leaders,
                "leader count of node {}",
                n.id
            );
            assert_eq!(self.groups_on(n.id.0), hosted, "index of node {}", n.id);
        }
        for g in &groups {
            let leader = g.replica(g.preferred_leader).expect("leader is a member");
            assert!(!leader.learner, "group {} prefers a learner", g.id);
            let mut nodes: Vec<NodeId> = g.replicas.iter().map(|r| r.node).collect();
            nodes.sort();
            nodes.dedup();
            assert_eq!(
                nodes.len(),
                g.replicas.len(),
                "group {} doubles a node",
                g.id
            );
            for r in &g.replicas {
                assert_eq!(r.peer.node(), r.node);
            }
        }
    }

    /// A cluster of `n` Up nodes (ids 1..=n) and plugin "kv" deployed.
    fn cluster(n: u64) -> Self {
        let mut meta = Self::new();
        for id in 1..=n {
            meta.register(id);
        }
        meta.deploy("kv", b"kv");
        meta
    }
}

#[test]
fn registering_and_re_registering_nodes() {
    let mut meta = Meta::new();
    let first = meta.register(1);
    assert_eq!(first.state, NodeState::Up);
    assert_eq!(first.registered_at_ms, 1000);
    assert_eq!(first.addr, "10.0.0.1:7000");
    assert_eq!(
        meta.mem.value("node/00000000000000000001").as_deref(),
        Some(
            r#"{"id":1,"addr":"10.0.0.1:7000","state":"Up","replicas":0,"preferred_leaders":0,"registered_at_ms":1000,"updated_at_ms":1000}"#
        )
    );

    // Same address again: nothing changes, not even the update time.
    let before = meta.dump();
    assert_eq!(meta.register(1), first);
    assert_eq!(meta.dump(), before);

    // A new address is taken, the registration time kept.
    let moved = meta
        .ok(&MetaCommand::RegisterNode {
            node: NodeId(1),
            addr: "10.0.0.99:7000".into(),
        })
        .into_node()
        .expect("node");
    assert_eq!(moved.addr, "10.0.0.99:7000");
    assert_eq!(moved.registered_at_ms, 1000);
    assert_eq!(moved.updated_at_ms, 3000);

    meta.register(2);
    let msg = meta.rejected(&MetaCommand::RegisterNode {
        node: NodeId(3),
        addr: "10.0.0.99:7000".into(),
    });
    assert_eq!(
        msg,
        "address 10.0.0.99:7000 is already registered by node 1"
    );
    for bad in [0, 65_536] {
        let msg = meta.rejected(&MetaCommand::RegisterNode {
            node: NodeId(bad),
            addr: "x:1".into(),
        });
        assert_eq!(
            msg,
            format!("node id {bad} is out of range: node ids are 1..=65535")
        );
    }
    let msg = meta.rejected(&MetaCommand::RegisterNode {
        node: NodeId(3),
        addr: String::new(),
    });
    assert!(msg.contains("is not usable: it is empty"), "{msg}");
    assert_eq!(meta.nodes().len(), 2);
    meta.register(65_535);
    assert_eq!(meta.nodes().len(), 3);
}

#[test]
fn node_states_and_removal_rules() {
    let mut meta = Meta::cluster(3);
    let set = |node, state| MetaCommand::SetNodeState {
        node: NodeId(node),
        state,
    };
    let g = meta.create(1);
    let host = g.replicas[0].node.0;
    assert_eq!(
        meta.rejected(&set(host, NodeState::Removed)),
        format!("node {host} still hosts 1 replicas; drain it before removing it")
    );
    let draining = meta
        .ok(&set(host, NodeState::Draining))
        .into_node()
        .expect("node");
    assert_eq!(draining.state, NodeState::Draining);
    assert_eq!(
        meta.ok(&set(host, NodeState::Up))
            .into_node()
            .expect("node")
            .state,
        NodeState::Up
    );

    meta.ok(&set(3, NodeState::Removed));
    assert_eq!(
        meta.rejected(&set(3, NodeState::Up)),
        "node 3 was removed; a removed node id cannot be used again"
    );
    assert_eq!(
        meta.rejected(&MetaCommand::RegisterNode {
            node: NodeId(3),
            addr: "10.0.0.3:7000".into()
        }),
        "node 3 was removed; a removed node id cannot be used again"
    );
    // A removed node's address is free for a new node.
    meta.ok(&MetaCommand::RegisterNode {
        node: NodeId(4),
        addr: "10.0.0.3:7000".into(),
    });
    assert_eq!(
        meta.rejected(&set(9, NodeState::Up)),
        "node 9 is not registered"
    );
    // Re-registering keeps the state.
    meta.ok(&set(2, NodeState::Draining));
    assert_eq!(meta.register(2).state, NodeState::Draining);
}

#[test]
fn plugin_versions_and_already_present() {
    let mut meta = Meta::cluster(2);
    let kv1 = meta
        .q(&MetaQuery::ResolvePlugin { spec: "kv".into() })
        .into_plugin()
        .expect("plugin");
    assert_eq!(kv1.version, 1);
    assert_eq!(kv1.deployed_at_ms, 3000);
    assert_eq!(kv1.holders, [NodeId(1)]);

    // Same digest as the latest: the existing record, with the new holder.
    let again = meta.ok(&MetaCommand::DeployPlugin {
        name: "kv".into(),
        digest: PluginDigest::of(b"kv"),
        size_bytes: 2,
        stateful: false,
        holder_node: NodeId(2),
    });
    match again {
        MetaOutput::Deployed {
            plugin,
            already_present,
        } => {
            assert!(already_present);
            assert_eq!(plugin.version, 1);
            assert_eq!(plugin.deployed_at_ms, kv1.deployed_at_ms);
            assert_eq!(plugin.holders, [NodeId(1), NodeId(2)]);
        }
        other => panic!("unexpected {other:?}"),
    }

    let (v2, present) = meta.deploy("kv", b"kv v2");
    assert_eq!((v2.version, present), (2, false));
    assert_eq!(v2.holders, [NodeId(1)]);
    // The first digest again is not the latest any more: a new version.
    let (v3, present) = meta.deploy("kv", b"kv");
    assert_eq!((v3.version, present), (3, false));
    assert_eq!(v3.digest, kv1.digest);
    let (c1, _) = meta.deploy("counter", b"counter");
    assert_eq!(c1.version, 1);

    let blob = meta.ok(&MetaCommand::AddPluginHolder {
        digest: PluginDigest::of(b"kv v2"),
        node: NodeId(2),
    });
    match blob {
        MetaOutput::Blob { blob } => {
            assert_eq!(blob.holders, [NodeId(1), NodeId(2)]);
            assert_eq!((blob.first_name.as_str(), blob.first_version), ("kv", 2));
        }
        other => panic!("unexpected {other:?}"),
    }

    // Listing pages through name then version.
    let page = |start_after, limit| match meta.q(&MetaQuery::Plugins { start_after, limit }) {
        MetaOutput::Plugins { plugins, next } => (
            plugins.iter().map(PluginRecord::spec).collect::<Vec<_>>(),
            next,
        ),
        other => panic!("unexpected {other:?}"),
    };
    let (all, next) = page(None, None);
    assert_eq!(all, ["counter@1", "kv@1", "kv@2", "kv@3"]);
    assert_eq!(next, None);
    let (first, next) = page(None, Some(3));
    assert_eq!(first, ["counter@1", "kv@1", "kv@2"]);
    let (rest, next) = page(next, Some(3));
    assert_eq!(rest, ["kv@3"]);
    assert_eq!(next, None);

    // Refusals.
    let deploy = |name: &str, digest, size_bytes, holder| MetaCommand::DeployPlugin {
        name: name.into(),
        digest,
        size_bytes,
        stateful: true,
        holder_node: NodeId(holder),
    };
    let d = PluginDigest::of(b"x");
    assert_eq!(
        meta.rejected(&deploy("kv", crate::placement::META_PLUGIN, 1, 1)),
        format!(
            "digest {} is reserved for the built-in meta state machine",
            crate::placement::META_PLUGIN
        )
    );
    assert!(meta.rejected(&deploy("", d, 1, 1)).contains("it is empty"));
    assert!(
        meta.rejected(&deploy("kv@2", d, 1, 1))
            .contains("only ASCII letters")
    );
    assert!(
        meta.rejected(&deploy("-kv", d, 1, 1))
            .contains("start with a letter")
    );
    assert_eq!(
        meta.rejected(&deploy("kv", d, 1, 7)),
        "node 7 is not registered"
    );
    assert!(
        meta.rejected(&deploy("kv", d, 0, 1))
            .contains("size of 0 bytes")
    );
    assert_eq!(
        meta.rejected(&deploy("other", PluginDigest::of(b"kv"), 3, 1)),
        format!(
            "digest {} was recorded with 2 bytes, not 3",
            PluginDigest::of(b"kv")
        )
    );
    assert_eq!(
        meta.rejected(&MetaCommand::AddPluginHolder {
            digest: d,
            node: NodeId(1)
        }),
        format!("plugin {d} is not deployed")
    );
}

#[test]
fn resolving_plugin_specs() {
    let mut meta = Meta::new();
    meta.register(1);
    let none = meta.q_rejected(&MetaQuery::ResolvePlugin { spec: "kv".into() });
    assert_eq!(
        none,
        "no plugin named 'kv' is deployed; deployed plugins: none"
    );

    meta.deploy("kv", b"a");
    meta.deploy("kv", b"b");
    meta.deploy("kv", b"c");
    meta.deploy("counter", b"n");
    let resolve = |spec: &str| {
        meta.q(&MetaQuery::ResolvePlugin { spec: spec.into() })
            .into_plugin()
            .expect("plugin")
    };
    assert_eq!(resolve("kv").version, 3);
    assert_eq!(resolve("kv@2").digest, PluginDigest::of(b"b"));
    let by_digest = resolve(&PluginDigest::of(b"a").to_string());
    assert_eq!(by_digest.spec(), "kv@1");
    assert_eq!(resolve("counter").spec(), "counter@1");

    let err = |spec: &str| meta.q_rejected(&MetaQuery::ResolvePlugin { spec: spec.into() });
    assert_eq!(
        err("nope"),
        "no plugin named 'nope' is deployed; deployed plugins: counter (version 1), kv (versions 1 to 3)"
    );
    assert_eq!(err("kv@9"), "kv@9 is not deployed; kv has versions 1 to 3");
    assert_eq!(
        err("kv@x"),
        "plugin spec \"kv@x\" is not valid: the version after '@' must be a positive integer"
    );
    assert!(err("kv@0").contains("positive integer"));
    assert_eq!(
        err("sha256:zz"),
        "plugin spec \"sha256:zz\" is not valid: expected 64 hex characters after 'sha256:'"
    );
    let unknown = PluginDigest::of(b"zzz");
    assert_eq!(
        err(&unknown.to_string()),
        format!(
            "no plugin with digest {unknown} is deployed; deployed plugins: counter (version 1), kv (versions 1 to 3)"
        )
    );
    assert!(err("").contains("it is empty"));
    assert!(err("a b").contains("only ASCII letters"));
}

#[test]
fn create_places_on_distinct_least_loaded_nodes() {
    let mut meta = Meta::cluster(4);
    let one = meta.create(1);
    assert_eq!(one.id, GroupId(1));
    assert_eq!(one.replicas.len(), 1);
    assert_eq!(one.replicas[0].node, NodeId(1));
    assert_eq!(
        one.replicas[0].peer,
        PeerId::compose(FIRST_PEER_SEQ, NodeId(1))
    );
    assert_eq!(one.preferred_leader, one.replicas[0].peer);
    assert_eq!(one.created_at_ms, meta.index * 1000);
    assert_eq!(one.conf_epoch, 1);

    // Node 1 carries a replica: the next three go to 2, 3 and 4.
    let three = meta.create(3);
    assert_eq!(three.id, GroupId(2));
    let nodes: Vec<u64> = three.replicas.iter().map(|r| r.node.0).collect();
    assert_eq!(nodes, [2, 3, 4]);
    let peers: Vec<PeerId> = three.replicas.iter().map(|r| r.peer).collect();
    assert_eq!(
        peers,
        [
            PeerId::compose(2, NodeId(2)),
            PeerId::compose(3, NodeId(3)),
            PeerId::compose(4, NodeId(4))
        ]
    );
    assert!(three.replicas.iter().all(|r| !r.learner));
    assert_eq!(three.preferred_leader, peers[0]);
    // Next: node 1 has 1 replica and 1 leader, 2..4 have 1 replica; leaders go to
    // a node without one.
    let next = meta.create(3);
    let nodes: Vec<u64> = next.replicas.iter().map(|r| r.node.0).collect();
    assert_eq!(nodes, [1, 2, 3]);
    assert_eq!(next.preferred_leader.node(), NodeId(3));
    assert_eq!(meta.groups_on(4), [GroupId(2)]);
    assert_eq!(meta.groups_on(1), [GroupId(1), GroupId(3)]);
    assert_eq!(meta.group(GroupId(2)), three);
    meta.check_consistent();
}

#[test]
fn preferred_leaders_spread_over_many_groups() {
    let mut meta = Meta::cluster(3);
    for _ in 0..100 {
        meta.create(3);
    }
    for n in meta.nodes() {
        assert_eq!(n.replicas, 100);
        assert!(
            n.preferred_leaders.abs_diff(33) <= 2,
            "node {} prefers {} leaders",
            n.id,
            n.preferred_leaders
        );
    }
    meta.check_consistent();

    let mut meta = Meta::cluster(4);
    for _ in 0..100 {
        meta.create(3);
    }
    for n in meta.nodes() {
        assert!(
            n.replicas.abs_diff(75) <= 1,
            "node {} hosts {}",
            n.id,
            n.replicas
        );
        assert!(
            n.preferred_leaders.abs_diff(25) <= 2,
            "node {} prefers {} leaders",
            n.id,
            n.preferred_leaders
        );
    }
    meta.check_consistent();
}

#[test]
fn create_refuses_without_enough_up_nodes() {
    let mut meta = Meta::cluster(3);
    meta.ok(&MetaCommand::SetNodeState {
        node: NodeId(2),
        state: NodeState::Draining,
    });
    let create = |replicas| MetaCommand::CreateGroup {
        plugin_digest: PluginDigest::of(b"kv"),
        replicas,
    };
    assert_eq!(
        meta.rejected(&create(3)),
        "a group of 3 replicas needs 3 Up nodes, but only 2 are Up"
    );
    assert_eq!(
        meta.rejected(&create(0)),
        "a group needs 1..=7 replicas, not 0"
    );
    assert_eq!(
        meta.rejected(&create(8)),
        "a group needs 1..=7 replicas, not 8"
    );
    let unknown = PluginDigest::of(b"nope");
    assert_eq!(
        meta.rejected(&MetaCommand::CreateGroup {
            plugin_digest: unknown,
            replicas: 1
        }),
        format!("plugin {unknown} is not deployed")
    );
    // Refusals consumed no ids; the Draining node gets nothing.
    let g = meta.create(2);
    assert_eq!(g.id, GroupId(1));
    let nodes: Vec<u64> = g.replicas.iter().map(|r| r.node.0).collect();
    assert_eq!(nodes, [1, 3]);
    assert_eq!(g.replicas[0].peer.seq(), FIRST_PEER_SEQ);
}

#[test]
fn add_promote_and_remove_replicas() {
    let mut meta = Meta::cluster(4);
    meta.register(5);
    let g = meta.create(3); // nodes 1, 2, 3
    let gid = g.id;
    let add = |node, learner| MetaCommand::AddReplica {
        group: gid,
        node: NodeId(node),
        learner,
    };
    assert_eq!(
        meta.rejected(&add(2, false)),
        format!(
            "node 2 already hosts peer {} of group 1",
            g.replicas[1].peer
        )
    );
    meta.ok(&MetaCommand::SetNodeState {
        node: NodeId(5),
        state: NodeState::Draining,
    });
    assert_eq!(
        meta.rejected(&add(5, false)),
        "node 5 is Draining, not Up; only Up nodes take new replicas"
    );
    assert_eq!(meta.rejected(&add(9, false)), "node 9 is not registered");
    assert_eq!(
        meta.rejected(&MetaCommand::AddReplica {
            group: GroupId(42),
            node: NodeId(4),
            learner: false
        }),
        "group 42 does not exist"
    );

    let (group, learner) = match meta.ok(&add(4, true)) {
        MetaOutput::ReplicaAdded { group, replica } => (group, replica),
        other => panic!("unexpected {other:?}"),
    };
    assert!(learner.learner);
    assert_eq!(learner.node, NodeId(4));
    assert_eq!(learner.peer, PeerId::compose(4, NodeId(4)));
    assert_eq!(group.replicas.len(), 4);
    assert_eq!(group.conf_epoch, 2);
    assert_eq!(meta.node(4).replicas, 1);
    meta.check_consistent();

    let promote = |peer| MetaCommand::PromoteReplica { group: gid, peer };
    let promoted = meta.ok(&promote(learner.peer)).into_group().expect("group");
    assert!(!promoted.replica(learner.peer).expect("member").learner);
    assert_eq!(promoted.conf_epoch, 3);
    assert_eq!(
        meta.rejected(&promote(learner.peer)),
        format!("peer {} of group 1 is already a voter", learner.peer)
    );
    assert_eq!(
        meta.rejected(&promote(PeerId(12345))),
        "group 1 has no peer 12345"
    );

    // Removing the preferred leader hands the role to the voter whose node prefers
    // the fewest leaders (node 4 prefers none; nodes 2 and 3 none either: lowest id).
    let remove = |peer| MetaCommand::RemoveReplica { group: gid, peer };
    let old_leader = g.preferred_leader;
    assert_eq!(old_leader.node(), NodeId(1));
    let after = meta.ok(&remove(old_leader)).into_group().expect("group");
    assert!(after.replica(old_leader).is_none());
    assert_eq!(after.preferred_leader.node(), NodeId(2));
    assert_eq!(after.conf_epoch, 4);
    assert_eq!(meta.node(1).replicas, 0);
    assert_eq!(meta.node(1).preferred_leaders, 0);
    assert_eq!(meta.node(2).preferred_leaders, 1);
    assert_eq!(meta.groups_on(1), Vec::<GroupId>::new());
    meta.check_consistent();

    // Down to one voter plus a learner: the learner can go, the last voter cannot.
    let peers: Vec<PeerId> = after.replicas.iter().map(|r| r.peer).collect();
    meta.ok(&remove(peers[1]));
    meta.ok(&remove(peers[2]));
    let last = meta.group(gid);
    assert_eq!(last.replicas.len(), 1);
    let learner = match meta.ok(&add(3, true)) {
        MetaOutput::ReplicaAdded { replica, .. } => replica,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(
        meta.rejected(&remove(last.replicas[0].peer)),
        format!(
            "peer {} is the last voter of group 1; delete the group instead",
            last.replicas[0].peer
        )
    );
    meta.ok(&remove(learner.peer));
    meta.check_consistent();
}

#[test]
fn a_removed_preferred_leader_is_replaced_on_the_least_leading_node() {
    let mut meta = Meta::cluster(3);
    let g1 = meta.create(3);
    let g2 = meta.create(3);
    assert_eq!(g1.preferred_leader.node(), NodeId(1));
    assert_eq!(g2.preferred_leader.node(), NodeId(2));
    // g1's remaining voters are on nodes 2 (prefers g2) and 3 (prefers none).
    let after = meta
        .ok(&MetaCommand::RemoveReplica {
            group: g1.id,
            peer: g1.preferred_leader,
        })
        .into_group()
        .expect("group");
    assert_eq!(after.preferred_leader.node(), NodeId(3));
    meta.check_consistent();
}

#[test]
fn corrupt_state_is_a_storage_fault_not_an_outcome() {
    let mut meta = Meta::cluster(2);
    meta.mem.insert(b"node/00000000000000000002", b"{not json");
    let out = meta.apply(&MetaCommand::CreateGroup {
        plugin_digest: PluginDigest::of(b"kv"),
        replicas: 1,
    });
    match out {
        Err(FsmError::Storage(msg)) => {
            assert!(
                msg.starts_with("corrupt meta record at node/00000000000000000002"),
                "{msg}"
            )
        }
        other => panic!("expected a storage fault, got {other:?}"),
    }
}

#[test]
fn groups_hold_at_most_members_max() {
    let mut meta = Meta::cluster(9);
    let g = meta.create(REPLICAS_MAX);
    assert_eq!(g.replicas.len(), 7);
    meta.ok(&MetaCommand::AddReplica {
        group: g.id,
        node: NodeId(8),
        learner: true,
    });
    assert_eq!(
        meta.rejected(&MetaCommand::AddReplica {
            group: g.id,
            node: NodeId(9),
            learner: true
        }),
        "group 1 already has 8 members, the most a group may have"
    );
}

#[test]
fn deleting_and_upgrading_groups() {
    let mut meta = Meta::cluster(3);
    let g = meta.create(3);
    let keep = meta.create(1);
    let (v2, _) = meta.deploy("kv", b"kv v2");
    let upgraded = meta
        .ok(&MetaCommand::SetGroupPlugin {
            group: g.id,
            plugin_digest: v2.digest,
        })
        .into_group()
        .expect("group");
    assert_eq!(upgraded.plugin_digest, v2.digest);
    assert_eq!(upgraded.conf_epoch, g.conf_epoch);
    let unknown = PluginDigest::of(b"?");
    assert_eq!(
        meta.rejected(&MetaCommand::SetGroupPlugin {
            group: g.id,
            plugin_digest: unknown
        }),
        format!("plugin {unknown} is not deployed")
    );

    let deleted = meta
        .ok(&MetaCommand::DeleteGroup { group: g.id })
        .into_group()
        .expect("group");
    assert_eq!(deleted, upgraded);
    assert_eq!(
        meta.q_rejected(&MetaQuery::Group { group: g.id }),
        "group 1 does not exist"
    );
    assert_eq!(
        meta.rejected(&MetaCommand::DeleteGroup { group: g.id }),
        "group 1 does not exist"
    );
    assert_eq!(
        meta.rejected(&MetaCommand::DeleteGroup { group: META_GROUP }),
        "group 0 is the meta group; it is not managed through group records"
    );
    let total: u64 = meta.nodes().iter().map(|n| n.replicas).sum();
    assert_eq!(total, 1);
    assert_eq!(meta.all_groups(), [keep]);
    assert_eq!(
        meta.mem
            .value("replica/00000000000000000002/00000000000000000001"),
        None
    );
    meta.check_consistent();
    // Ids are never reused.
    assert_eq!(meta.create(1).id, GroupId(3));
}

#[test]
fn group_listings_are_paged() {
    let mut meta = Meta::cluster(2);
    for _ in 0..5 {
        meta.create(1);
    }
    let page = |start_after, limit| match meta.q(&MetaQuery::Groups { start_after, limit }) {
        MetaOutput::Groups {
            groups,
            next_start_after,
        } => (
            groups.iter().map(|g| g.id.0).collect::<Vec<_>>(),
            next_start_after,
        ),
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(page(None, Some(2)), (vec![1, 2], Some(GroupId(2))));
    assert_eq!(
        page(Some(GroupId(2)), Some(2)),
        (vec![3, 4], Some(GroupId(4)))
    );
    assert_eq!(page(Some(GroupId(4)), Some(2)), (vec![5], None));
    assert_eq!(page(None, None), (vec![1, 2, 3, 4, 5], None));
    assert_eq!(page(None, Some(0)), (vec![1], Some(GroupId(1))));

    // Groups 1, 3, 5 sit on node 1.
    let on = |start_after, limit| match meta.q(&MetaQuery::GroupsOnNode {
        node: NodeId(1),
        start_after,
        limit,
    }) {
        MetaOutput::Groups {
            groups,
            next_start_after,
        } => (
            groups.iter().map(|g| g.id.0).collect::<Vec<_>>(),
            next_start_after,
        ),
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(on(None, Some(2)), (vec![1, 3], Some(GroupId(3))));
    assert_eq!(on(Some(GroupId(3)), Some(2)), (vec![5], None));
    assert_eq!(
        meta.q_rejected(&MetaQuery::GroupsOnNode {
            node: NodeId(9),
            start_after: None,
            limit: None
        }),
        "node 9 is not registered"
    );
    assert_eq!(
        meta.q_rejected(&MetaQuery::Group { group: META_GROUP }),
        "group 0 is the meta group; it is not managed through group records"
    );
}

/// A scripted history with several commands per entry, some of which fail.
fn script() -> Vec<Vec<MetaCommand>> {
    let d = PluginDigest::of(b"kv");
    let mut entries = vec![
        (1..=5)
            .map(|n| MetaCommand::RegisterNode {
                node: NodeId(n),
                addr: format!("h{n}:1"),
            })
            .collect(),
        vec![
            MetaCommand::DeployPlugin {
                name: "kv".into(),
                digest: d,
                size_bytes: 2,
                stateful: false,
                holder_node: NodeId(2),
            },
            MetaCommand::CreateGroup {
                plugin_digest: d,
                replicas: 9,
            },
        ],
    ];
    for i in 0..30u64 {
        entries.push(vec![
            MetaCommand::CreateGroup {
                plugin_digest: d,
                replicas: (i % 3 + 1) as u32,
            },
            MetaCommand::AddReplica {
                group: GroupId(i + 1),
                node: NodeId(i % 5 + 1),
                learner: i % 2 == 0,
            },
        ]);
    }
    entries.push(vec![
        MetaCommand::SetNodeState {
            node: NodeId(3),
            state: NodeState::Draining,
        },
        MetaCommand::DeleteGroup { group: GroupId(4) },
        MetaCommand::RemoveReplica {
            group: GroupId(5),
            peer: PeerId(1),
        },
    ]);
    entries
}

#[test]
fn same_history_gives_byte_identical_state() {
    let run = || {
        let mut meta = Meta::new();
        let mut outputs = Vec::new();
        for entry in script() {
            let bytes: Vec<Vec<u8>> = entry.iter().map(MetaCommand::encode).collect();
            let refs: Vec<&[u8]> = bytes.iter().map(Vec::as_slice).collect();
            outputs.extend(meta.entry(&refs));
        }
        (meta, outputs)
    };
    let (a, out_a) = run();
    let (b, out_b) = run();
    assert_eq!(out_a, out_b);
    assert_eq!(a.dump(), b.dump());
    // The history did real work and had refusals in it.
    assert!(out_a.iter().filter(|o| o.is_err()).count() >= 2);
    assert!(a.all_groups().len() >= 20);
    a.check_consistent();
}

#[test]
fn a_failed_command_leaves_the_rest_of_its_entry_intact() {
    let mut meta = Meta::new();
    let good1 = MetaCommand::RegisterNode {
        node: NodeId(1),
        addr: "a:1".into(),
    }
    .encode();
    let bad = MetaCommand::RegisterNode {
        node: NodeId(2),
        addr: "a:1".into(),
    }
    .encode();
    let good2 = MetaCommand::RegisterNode {
        node: NodeId(3),
        addr: "c:1".into(),
    }
    .encode();
    let outs = meta.entry(&[&good1, b"{", &bad, &good2]);
    assert!(outs[0].is_ok());
    assert!(matches!(outs[1], Err(FsmError::Invalid(_))));
    assert!(matches!(outs[2], Err(FsmError::Rejected(_))));
    assert!(outs[3].is_ok());
    let ids: Vec<u64> = meta.nodes().iter().map(|n| n.id.0).collect();
    assert_eq!(ids, [1, 3]);
}

#[test]
fn malformed_input_is_invalid_and_named() {
    let mut meta = Meta::new();
    let invalid = |meta: &mut Meta, bytes: &[u8]| match meta.entry(&[bytes]).remove(0) {
        Err(FsmError::Invalid(msg)) => msg,
        other => panic!("expected Invalid, got {other:?}"),
    };
    assert!(invalid(&mut meta, b"not json").starts_with("not a meta command: expected"));
    let msg = invalid(&mut meta, br#"{"op":"Bogus"}"#);
    assert!(msg.contains("unknown variant `Bogus`"), "{msg}");
    let msg = invalid(&mut meta, br#"{"node":1}"#);
    assert!(msg.contains("missing field `op`"), "{msg}");
    let msg = invalid(&mut meta, br#"{"op":"RegisterNode","node":1}"#);
    assert!(msg.contains("missing field `addr`"), "{msg}");
    let msg = invalid(
        &mut meta,
        br#"{"op":"RegisterNode","node":1,"addr":"a:1","adr":2}"#,
    );
    assert!(msg.contains("unknown field `adr`"), "{msg}");
    let msg = invalid(
        &mut meta,
        br#"{"op":"RegisterNode","node":-1,"addr":"a:1"}"#,
    );
    assert!(msg.contains("invalid value: integer `-1`"), "{msg}");
    let msg = invalid(
        &mut meta,
        br#"{"op":"CreateGroup","plugin_digest":"sha256:12","replicas":1}"#,
    );
    assert!(msg.contains("'sha256:12' is not a plugin digest"), "{msg}");
    assert!(meta.mem.is_empty());

    let q = |bytes: &[u8]| {
        let ctx = QueryContext {
            group: META_GROUP,
            applied_index: 0,
            applied_timestamp_ms: 0,
        };
        MetaFsm.query(ctx, bytes, &KvView::for_query(meta.mem.clone(), META_GROUP))
    };
    match q(br#"{"op":"Groups","limit":"ten"}"#) {
        Err(FsmError::Invalid(msg)) => {
            assert!(msg.starts_with("not a meta query:"), "{msg}");
            assert!(msg.contains("invalid type: string \"ten\""), "{msg}");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert!(q(br#"{"op":"Groups"}"#).is_ok());
}

#[test]
fn wire_format_is_plain_json() {
    let cmd = MetaCommand::AddReplica {
        group: GroupId(3),
        node: NodeId(2),
        learner: true,
    };
    assert_eq!(
        String::from_utf8(cmd.encode()).expect("utf-8"),
        r#"{"op":"AddReplica","group":3,"node":2,"learner":true}"#
    );
    // `learner` may be left out; digests accept both spellings.
    let parsed = MetaCommand::decode(br#"{"op":"AddReplica","group":3,"node":2}"#).expect("parses");
    assert_eq!(
        parsed,
        MetaCommand::AddReplica {
            group: GroupId(3),
            node: NodeId(2),
            learner: false
        }
    );
    let d = PluginDigest::of(b"kv");
    for spelled in [d.to_hex(), d.to_string()] {
        let text = format!(r#"{{"op":"CreateGroup","plugin_digest":"{spelled}","replicas":3}}"#);
        assert_eq!(
            MetaCommand::decode(text.as_bytes()).expect("parses"),
            MetaCommand::CreateGroup {
                plugin_digest: d,
                replicas: 3
            }
        );
    }
    assert_eq!(
        String::from_utf8(MetaQuery::Nodes.encode()).expect("utf-8"),
        r#"{"op":"Nodes"}"#
    );
    let out = MetaOutput::Groups {
        groups: Vec::new(),
        next_start_after: None,
    };
    assert_eq!(
        String::from_utf8(out.encode()).expect("utf-8"),
        r#"{"kind":"Groups","groups":[],"next_start_after":null}"#
    );
    assert_eq!(
        out.into_node(),
        Err(MetaDecodeError::Unexpected {
            wanted: "Node",
            got: "Groups".into()
        })
    );
}
