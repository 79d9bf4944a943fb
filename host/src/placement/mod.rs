//! The placement room: the meta group's built-in state machine (nodes, plugins, groups
//! and where their replicas live) and the pure scheduling logic that plans drains and
//! leader balance over it.
//!
//! The meta group is group [`META_GROUP`] (0). It runs on a few nodes like any group, but
//! its state machine is native Rust rather than Wasm: [`HostDispatch`] recognizes the
//! marker digest [`META_PLUGIN`] and runs [`MetaFsm`] for it, handing every other digest
//! to the Wasm runtime. Its state lives only in the group's KV (see [`meta_fsm`] for the
//! key layout), so its snapshots, replicas and crash recovery work like any other group's.

pub mod meta_fsm;
pub mod meta_types;
pub mod schedule;
mod serde_ids;

use std::sync::Arc;

use crate::ids::{GroupId, PluginDigest};
use crate::raftstore::fsm::{
    CommandOutcome, EntryContext, FsmError, KvReader, KvView, QueryContext, StateMachineHost,
};

pub use meta_fsm::{
    BlobRecord, GroupRecord, MetaCommand, MetaError, MetaFsm, MetaOutput, MetaQuery, NodeRecord,
    NodeState, PluginCursor, PluginRecord, Replica,
};
pub use schedule::{DrainPlan, Move};

/// The meta group's id.
pub const META_GROUP: GroupId = GroupId(0);

/// The digest that names the built-in meta state machine: the sha256 of
/// `b"flotilla/meta/v1"`. No deployable plugin may have it (deploy refuses it), so a
/// group's plugin digest alone tells [`HostDispatch`] which engine runs it.
pub const META_PLUGIN: PluginDigest = PluginDigest([
    0xbd, 0x69, 0xe2, 0xc7, 0x19, 0xdd, 0xe3, 0x43, 0xe5, 0xfd, 0xa3, 0x76, 0x9e, 0x79, 0xfe, 0x8a,
    0x5a, 0x2e, 0x00, 0x84, 0x6b, 0x29, 0xf2, 0xeb, 0xb5, 0x63, 0x35, 0x2b, 0x71, 0xb6, 0x42, 0x40,
]);

/// A [`StateMachineHost`] that runs [`META_PLUGIN`] natively (in group [`META_GROUP`]
/// only) and hands every other plugin digest to `inner` (the Wasm runtime).
pub struct HostDispatch {
    meta: MetaFsm,
    inner: Arc<dyn StateMachineHost>,
}

impl HostDispatch {
    pub fn new(inner: Arc<dyn StateMachineHost>) -> Self {
        Self {
            meta: MetaFsm,
            inner,
        }
    }

    fn meta_only_in_meta_group(group: GroupId) -> FsmError {
        FsmError::Rejected(format!(
            "the built-in meta state machine runs only in group {META_GROUP}, not in group {group}"
        ))
    }
}

impl StateMachineHost for HostDispatch {
    fn has_quota(&self, plugin: PluginDigest) -> bool {
        plugin != META_PLUGIN
    }

    fn apply_entry(
        &self,
        plugin: PluginDigest,
        ctx: EntryContext,
        commands: &[&[u8]],
        kv: KvView,
    ) -> (KvView, Vec<CommandOutcome>) {
        if plugin != META_PLUGIN {
            return self.inner.apply_entry(plugin, ctx, commands, kv);
        }
        if ctx.group != META_GROUP {
            let refused = commands
                .iter()
                .map(|_| Err(Self::meta_only_in_meta_group(ctx.group)))
                .collect();
            return (kv, refused);
        }
        self.meta.apply_entry(ctx, commands, kv)
    }

    fn query(
        &self,
        plugin: PluginDigest,
        ctx: QueryContext,
        request: &[u8],
        kv: KvView,
    ) -> CommandOutcome {
        if plugin != META_PLUGIN {
            return self.inner.query(plugin, ctx, request, kv);
        }
        if ctx.group != META_GROUP {
            return Err(Self::meta_only_in_meta_group(ctx.group));
        }
        self.meta.query(ctx, request, &kv)
    }

    fn query_batch(
        &self,
        plugin: PluginDigest,
        ctx: QueryContext,
        requests: &[&[u8]],
        reader: Arc<dyn KvReader>,
    ) -> Vec<CommandOutcome> {
        if plugin != META_PLUGIN {
            return self.inner.query_batch(plugin, ctx, requests, reader);
        }
        requests
            .iter()
            .map(|r| self.query(plugin, ctx, r, KvView::for_query(reader.clone(), ctx.group)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;
    use crate::raftstore::mem_kv::MemKv;

    /// Answers every command and query with the plugin digest it was asked to run.
    struct Echo;

    impl StateMachineHost for Echo {
        fn apply_entry(
            &self,
            plugin: PluginDigest,
            _: EntryContext,
            commands: &[&[u8]],
            kv: KvView,
        ) -> (KvView, Vec<CommandOutcome>) {
            let outs = commands
                .iter()
                .map(|_| Ok(plugin.to_string().into_bytes()))
                .collect();
            (kv, outs)
        }

        fn query(
            &self,
            plugin: PluginDigest,
            _: QueryContext,
            _: &[u8],
            _: KvView,
        ) -> CommandOutcome {
            Ok(plugin.to_string().into_bytes())
        }
    }

    fn ctx(group: GroupId) -> EntryContext {
        EntryContext {
            group,
            index: 1,
            term: 1,
            timestamp_ms: 5,
            random_seed: 0,
        }
    }

    #[test]
    fn meta_plugin_is_the_digest_of_its_marker() {
        assert_eq!(META_PLUGIN, PluginDigest::of(b"flotilla/meta/v1"));
    }

    #[test]
    fn dispatch_runs_meta_natively_and_delegates_the_rest() {
        let host = HostDispatch::new(Arc::new(Echo));
        let mem = Arc::new(MemKv::default());
        let register = MetaCommand::RegisterNode {
            node: NodeId(1),
            addr: "10.0.0.1:7000".into(),
        }
        .encode();

        let kv = KvView::for_apply(mem.clone(), META_GROUP);
        let (kv, outs) = host.apply_entry(META_PLUGIN, ctx(META_GROUP), &[&register], kv);
        mem.commit(kv);
        let out = outs[0].clone().expect("register applies");
        assert!(matches!(
            MetaOutput::decode(&out).expect("decodes"),
            MetaOutput::Node { .. }
        ));
        assert!(mem.value("node/00000000000000000001").is_some());

        let wasm = PluginDigest::of(b"some plugin");
        let kv = KvView::for_apply(mem.clone(), GroupId(7));
        let (_, outs) = host.apply_entry(wasm, ctx(GroupId(7)), &[b"x"], kv);
        assert_eq!(outs[0], Ok(wasm.to_string().into_bytes()));

        let q = QueryContext {
            group: META_GROUP,
            applied_index: 1,
            applied_timestamp_ms: 5,
        };
        let nodes = host
            .query(
                META_PLUGIN,
                q,
                &MetaQuery::Nodes.encode(),
                KvView::for_query(mem.clone(), META_GROUP),
            )
            .expect("nodes query");
        match MetaOutput::decode(&nodes).expect("decodes") {
            MetaOutput::Nodes { nodes } => assert_eq!(nodes.len(), 1),
            other => panic!("unexpected output {other:?}"),
        }
    }

    #[test]
    fn meta_plugin_outside_the_meta_group_is_refused() {
        let host = HostDispatch::new(Arc::new(Echo));
        let mem = Arc::new(MemKv::default());
        let cmd = MetaQuery::Nodes.encode();
        let kv = KvView::for_apply(mem.clone(), GroupId(3));
        let (_, outs) = host.apply_entry(META_PLUGIN, ctx(GroupId(3)), &[&cmd], kv);
        match &outs[0] {
            Err(FsmError::Rejected(msg)) => assert!(msg.contains("only in group 0"), "{msg}"),
            other => panic!("unexpected outcome {other:?}"),
        }
        assert!(mem.is_empty());
    }
}
