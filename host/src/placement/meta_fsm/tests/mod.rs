//! Unit tests of the meta state machine over an in-memory KV. This file holds the
//! harness — [`Meta`], one meta group replica that applies entries, answers queries and
//! checks that the per-node counts and the `replica/` index agree with the group
//! records — and the submodules hold the tests by theme: [`nodes`], [`plugins`],
//! [`groups`] (creation, placement, deletion, upgrade, listing), [`replicas`] (adding,
//! promoting and removing replicas), [`entries`] (how entries apply: determinism,
//! per-command atomicity, corrupt state) and [`wire`] (the JSON encoding and malformed
//! input).

mod entries;
mod groups;
mod nodes;
mod plugins;
mod replicas;
mod wire;

use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use crate::ids::{GroupId, NodeId, PeerId, PluginDigest};
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
