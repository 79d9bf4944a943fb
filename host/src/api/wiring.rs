//! Small adapters the server wires between rooms: a late-bound [`Inbound`] (the
//! transport exists before the raft store it delivers to) and the node's plugin blobs
//! as the transport sees them.

use std::sync::{Arc, OnceLock};

use raft::eraftpb::Message;

use crate::ids::{GroupId, PeerId, PluginDigest};
use crate::plugin::PluginRuntime;
use crate::raftstore::{RaftError, RaftStore};
use crate::storage::Store;
use crate::storage::meta::PluginRecord;
use crate::transport::{Inbound, PluginBlobs};

/// Delivers to the raft store once it is set; drops (as unreachable) before.
#[derive(Debug, Default)]
pub struct LateInbound(pub OnceLock<RaftStore>);

impl Inbound for LateInbound {
    fn step(&self, group: GroupId, msg: Message) -> Result<(), RaftError> {
        match self.0.get() {
            Some(r) => r.step(group, msg),
            None => Err(RaftError::Stopped),
        }
    }

    fn report_unreachable(&self, group: GroupId, peer: PeerId) {
        if let Some(r) = self.0.get() {
            r.report_unreachable(group, peer);
        }
    }

    fn report_snapshot(&self, group: GroupId, peer: PeerId, ok: bool) {
        if let Some(r) = self.0.get() {
            r.report_snapshot(group, peer, ok);
        }
    }
}

/// The node's stored plugin bytes and compiled plugins.
#[derive(Debug)]
pub struct Blobs {
    pub store: Store,
    pub runtime: Arc<PluginRuntime>,
}

impl PluginBlobs for Blobs {
    fn has(&self, digest: PluginDigest) -> bool {
        self.runtime.is_loaded(digest)
    }

    fn bytes(&self, digest: PluginDigest) -> Option<Vec<u8>> {
        self.store.plugin_bytes(digest).ok().flatten()
    }

    fn install(&self, digest: PluginDigest, bytes: Vec<u8>) -> Result<(), String> {
        let v = self.runtime.validate(&bytes).map_err(|e| e.to_string())?;
        if v.digest != digest {
            return Err(format!("bytes hash to {}, not {digest}", v.digest));
        }
        self.runtime
            .load(digest, &bytes)
            .map_err(|e| e.to_string())?;
        let record = PluginRecord {
            name: "fetched".into(),
            version: 0,
            digest: digest.to_hex(),
            size_bytes: bytes.len() as u64,
            stateful: v.stateful,
            deployed_at_ms: super::node::now_ms(),
        };
        self.store
            .put_plugin(&record, &bytes)
            .map_err(|e| e.to_string())
    }
}
