//! The raft core's view of the network: it hands each round's outgoing raft messages to
//! a [`Transport`] and never waits on it. The transport room implements this over tonic
//! (batched per destination node); simulations implement it in memory with fault
//! filters. Inbound messages come back through [`super::RaftStore::step`], and delivery
//! failures through [`super::RaftStore::report_unreachable`] and
//! [`super::RaftStore::report_snapshot`].

use raft::eraftpb::Message;

use crate::ids::{GroupId, NodeId, PeerId};

/// One raft message for a peer on another node.
#[derive(Clone, Debug)]
pub struct OutMessage {
    pub group: GroupId,
    pub to_node: NodeId,
    pub msg: Message,
}

impl OutMessage {
    pub fn new(group: GroupId, msg: Message) -> Self {
        Self {
            group,
            to_node: PeerId(msg.to).node(),
            msg,
        }
    }
}

/// Sends raft messages to other nodes.
pub trait Transport: Send + Sync + 'static {
    /// Queues a round's messages. Must not block: a message that cannot be queued (the
    /// destination's queue is full, the node is unknown) is dropped and reported through
    /// `report_unreachable`; raft retries on its own.
    fn send(&self, msgs: Vec<OutMessage>);
}

/// A transport that drops everything (single-node use and tests).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoTransport;

impl Transport for NoTransport {
    fn send(&self, _msgs: Vec<OutMessage>) {}
}
