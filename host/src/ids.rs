//! Identifiers shared by every room: nodes, groups, peers and plugin digests.
//! Plain newtypes over integers (and a sha256 for plugins) so a group id is never
//! passed where a peer id is expected.

use std::fmt;

/// One `flotilla server` process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u64);

/// One raft group = one replicated state machine instance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId(pub u64);

/// A group's member on one node; unique in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(pub u64);

/// Bits of a [`PeerId`] that name the node hosting the peer.
pub const PEER_NODE_BITS: u32 = 16;
/// Node ids are at most this (they must fit in [`PEER_NODE_BITS`]).
pub const NODE_ID_MAX: u64 = (1 << PEER_NODE_BITS) - 1;

impl PeerId {
    /// A peer id for sequence number `seq` on `node`: the low 16 bits name the node, so
    /// the transport finds a message's destination without a lookup table, and the
    /// sequence (allocated by the meta group) keeps ids unique in the cluster.
    pub fn compose(seq: u64, node: NodeId) -> Self {
        Self((seq << PEER_NODE_BITS) | (node.0 & NODE_ID_MAX))
    }

    /// The node hosting this peer.
    pub fn node(self) -> NodeId {
        NodeId(self.0 & NODE_ID_MAX)
    }

    /// The sequence part of the id.
    pub fn seq(self) -> u64 {
        self.0 >> PEER_NODE_BITS
    }
}

/// The sha256 of a plugin's original bytes, as deployed.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PluginDigest(pub [u8; 32]);

impl PluginDigest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::Digest;
        Self(sha2::Sha256::digest(bytes).into())
    }

    /// Lower-case hex, as shown to people.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex characters.
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(Self(out))
    }

    /// Parses a 32-byte slice.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        Some(Self(bytes.try_into().ok()?))
    }
}

impl fmt::Debug for PluginDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", &self.to_hex()[..12])
    }
}

impl fmt::Display for PluginDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.to_hex())
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_round_trips_through_hex() {
        let d = PluginDigest::of(b"hello");
        assert_eq!(PluginDigest::from_hex(&d.to_hex()), Some(d));
        assert_eq!(PluginDigest::from_hex("zz"), None);
        assert!(d.to_string().starts_with("sha256:2cf24dba"));
    }

    #[test]
    fn peer_ids_carry_their_node() {
        let p = PeerId::compose(7, NodeId(3));
        assert_eq!(p.node(), NodeId(3));
        assert_eq!(p.seq(), 7);
        assert_ne!(p, PeerId::compose(7, NodeId(4)));
        assert_eq!(PeerId::compose(0, NodeId(5)), PeerId(5));
    }
}
