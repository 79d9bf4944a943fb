//! The meta state's key layout (see the parent module's documentation): the key of
//! each record, the prefixes that scans run over, and scan bounds.

use crate::ids::{GroupId, NodeId, PluginDigest};

pub(super) const NODE: &str = "node/";
pub(super) const PLUGIN: &str = "plugin/";
pub(super) const LATEST: &str = "latest/";
pub(super) const GROUP: &str = "group/";
pub(super) const REPLICA: &str = "replica/";
pub(super) const SEQ_GROUP: &str = "seq/group";
pub(super) const SEQ_PEER: &str = "seq/peer";

pub(super) fn node(node: NodeId) -> String {
    format!("{NODE}{:020}", node.0)
}
pub(super) fn version(name: &str, version: u32) -> String {
    format!("{PLUGIN}{name}/{version:010}")
}
pub(super) fn latest(name: &str) -> String {
    format!("{LATEST}{name}")
}
pub(super) fn blob(digest: PluginDigest) -> String {
    format!("blob/{}", digest.to_hex())
}
pub(super) fn group(group: GroupId) -> String {
    format!("{GROUP}{:020}", group.0)
}
pub(super) fn replicas_of(node: NodeId) -> String {
    format!("{REPLICA}{:020}/", node.0)
}
pub(super) fn replica(node: NodeId, group: GroupId) -> String {
    format!("{}{:020}", replicas_of(node), group.0)
}

/// The first key after every key that starts with `prefix`.
pub(super) fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    end
}

/// The first key after `key`.
pub(super) fn after(key: &str) -> Vec<u8> {
    let mut k = key.as_bytes().to_vec();
    k.push(0);
    k
}
