//! The meta group's vocabulary: its bounds, the records it stores (nodes, plugins,
//! blobs, groups and replicas), the commands, queries and outputs that travel as JSON,
//! and its errors. The state machine that applies them is in [`super::meta_fsm`].

use serde::{Deserialize, Serialize};

use super::serde_ids::{digest, id, id_vec, opt_id};
use crate::ids::{GroupId, NODE_ID_MAX, NodeId, PEER_NODE_BITS, PeerId, PluginDigest};
use crate::limits;
use crate::raftstore::fsm::FsmError;

/// Nodes the cluster records at most (removed ones included: their ids stay taken).
pub const NODES_MAX: usize = 1024;
/// Voters a group is created with, at most.
pub const REPLICAS_MAX: u32 = 7;
/// Members (voters and learners) of one group, at most: one more than [`REPLICAS_MAX`],
/// so a full group can still move a replica (add a learner, promote, remove the old one).
pub const MEMBERS_MAX: usize = REPLICAS_MAX as usize + 1;
/// Groups one `Groups`/`GroupsOnNode` page holds unless the query asks for fewer.
pub const GROUPS_PAGE_DEFAULT: u32 = 100;
/// Groups one page holds at most (a record is under 1 KiB even with [`MEMBERS_MAX`]
/// replicas, so a page stays under [`limits::OUTPUT_SIZE_BYTES_MAX`]).
pub const GROUPS_PAGE_MAX: u32 = 1000;
/// Plugin versions one `Plugins` page holds unless the query asks for fewer.
pub const PLUGINS_PAGE_DEFAULT: u32 = 50;
/// Plugin versions one page holds at most (each lists up to [`NODES_MAX`] holders).
pub const PLUGINS_PAGE_MAX: u32 = 100;
/// Bytes of a plugin name, at most.
pub const PLUGIN_NAME_BYTES_MAX: usize = 64;
/// Bytes of a node's advertised address, at most.
pub const NODE_ADDR_BYTES_MAX: usize = 256;
/// The first peer sequence handed to a group replica (0 is the meta group's).
pub const FIRST_PEER_SEQ: u64 = 1;
/// The largest peer sequence that still fits in a [`PeerId`] next to the node bits.
pub const PEER_SEQ_MAX: u64 = u64::MAX >> PEER_NODE_BITS;
/// Plugin names listed in a "not deployed" error, at most.
pub(super) const ERROR_NAMES_MAX: u32 = 20;

const _: () = assert!(NODES_MAX as u64 <= NODE_ID_MAX);
const _: () = assert!(NODES_MAX < limits::KV_SCAN_PAIRS_MAX);
const _: () = assert!((GROUPS_PAGE_MAX as usize) < limits::KV_SCAN_PAIRS_MAX);
const _: () = assert!((PLUGINS_PAGE_MAX as usize) < limits::KV_SCAN_PAIRS_MAX);
const _: () = assert!((ERROR_NAMES_MAX as usize) < limits::KV_SCAN_PAIRS_MAX);

// ---------------------------------------------------------------------------------------
// Records

/// A node's administrative state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum NodeState {
    /// Takes new replicas.
    Up,
    /// Keeps its replicas but takes no new ones; a drain moves them away.
    Draining,
    /// Gone for good: its id can never be registered again.
    Removed,
}

/// One registered node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    #[serde(with = "id")]
    pub id: NodeId,
    /// The address other nodes and clients reach it at (`host:port`).
    pub addr: String,
    pub state: NodeState,
    /// Replicas (voters and learners) of groups placed on this node.
    pub replicas: u64,
    /// Groups whose preferred leader is this node's replica.
    pub preferred_leaders: u64,
    pub registered_at_ms: u64,
    pub updated_at_ms: u64,
}

/// A deployed blob (plugin bytes), by digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRecord {
    #[serde(with = "digest")]
    pub digest: PluginDigest,
    pub size_bytes: u64,
    /// Nodes that hold the bytes, ascending.
    #[serde(with = "id_vec")]
    pub holders: Vec<NodeId>,
    /// The name and version the digest was first deployed as (what `sha256:` resolves to).
    pub first_name: String,
    pub first_version: u32,
}

/// One deployed plugin version, with the nodes holding its bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginRecord {
    pub name: String,
    /// From 1, consecutive per name.
    pub version: u32,
    #[serde(with = "digest")]
    pub digest: PluginDigest,
    pub size_bytes: u64,
    /// Keeps its state in linear memory (exports snapshot/restore).
    pub stateful: bool,
    pub deployed_at_ms: u64,
    /// Nodes that hold the bytes, ascending.
    #[serde(with = "id_vec")]
    pub holders: Vec<NodeId>,
}

impl PluginRecord {
    /// `name@version`.
    pub fn spec(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// One member of a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replica {
    #[serde(with = "id")]
    pub peer: PeerId,
    #[serde(with = "id")]
    pub node: NodeId,
    pub learner: bool,
}

/// One group (never the meta group itself).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    #[serde(with = "id")]
    pub id: GroupId,
    /// The plugin the group runs now (upgrades are recorded with `SetGroupPlugin`).
    #[serde(with = "digest")]
    pub plugin_digest: PluginDigest,
    /// Ascending by peer id (= allocation order).
    pub replicas: Vec<Replica>,
    /// The voter that should lead; always one of `replicas`, never a learner.
    #[serde(with = "id")]
    pub preferred_leader: PeerId,
    pub created_at_ms: u64,
    /// 1 at creation, bumped by every membership change (add, remove, promote).
    pub conf_epoch: u64,
}

impl GroupRecord {
    /// The replica with peer id `peer`.
    pub fn replica(&self, peer: PeerId) -> Option<&Replica> {
        self.replicas.iter().find(|r| r.peer == peer)
    }

    /// The replica on `node`.
    pub fn replica_on(&self, node: NodeId) -> Option<&Replica> {
        self.replicas.iter().find(|r| r.node == node)
    }

    /// The voters, in replica order.
    pub fn voters(&self) -> impl Iterator<Item = &Replica> {
        self.replicas.iter().filter(|r| !r.learner)
    }
}

/// Where a `Plugins` page starts after.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PluginCursor {
    pub name: String,
    pub version: u32,
}

/// One stored plugin version (holders live in the blob record).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct VersionRecord {
    pub(super) name: String,
    pub(super) version: u32,
    #[serde(with = "digest")]
    pub(super) digest: PluginDigest,
    pub(super) stateful: bool,
    pub(super) deployed_at_ms: u64,
}

// ---------------------------------------------------------------------------------------
// Commands, queries, outputs

/// A change to the meta state: one raft command. JSON, tagged by `"op"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", deny_unknown_fields)]
pub enum MetaCommand {
    /// Adds node `node` (1..=65535) in state `Up`, or updates its address. Idempotent.
    RegisterNode {
        #[serde(with = "id")]
        node: NodeId,
        addr: String,
    },
    /// `Removed` is final and needs the node to host no replicas.
    SetNodeState {
        #[serde(with = "id")]
        node: NodeId,
        state: NodeState,
    },
    /// Records the next version of `name`, unless the latest version already has `digest`
    /// (then the answer is that version with `already_present`). `holder_node` holds the
    /// bytes.
    DeployPlugin {
        name: String,
        #[serde(with = "digest")]
        digest: PluginDigest,
        size_bytes: u64,
        stateful: bool,
        #[serde(with = "id")]
        holder_node: NodeId,
    },
    /// Records that `node` holds the bytes of `digest`.
    AddPluginHolder {
        #[serde(with = "digest")]
        digest: PluginDigest,
        #[serde(with = "id")]
        node: NodeId,
    },
    /// Allocates a group id and one peer per replica on distinct `Up` nodes, fewest
    /// replicas first (ties by node id), and a preferred leader on the chosen node with
    /// the fewest preferred leaders.
    CreateGroup {
        #[serde(with = "digest")]
        plugin_digest: PluginDigest,
        replicas: u32,
    },
    DeleteGroup {
        #[serde(with = "id")]
        group: GroupId,
    },
    /// Allocates a peer for a new replica on `node`, which must be `Up` and not host the
    /// group yet.
    AddReplica {
        #[serde(with = "id")]
        group: GroupId,
        #[serde(with = "id")]
        node: NodeId,
        #[serde(default)]
        learner: bool,
    },
    /// Refuses to remove the last voter. A removed preferred leader is replaced by the
    /// remaining voter whose node has the fewest preferred leaders.
    RemoveReplica {
        #[serde(with = "id")]
        group: GroupId,
        #[serde(with = "id")]
        peer: PeerId,
    },
    /// Learner → voter.
    PromoteReplica {
        #[serde(with = "id")]
        group: GroupId,
        #[serde(with = "id")]
        peer: PeerId,
    },
    /// Records that the group now runs `plugin_digest` (an upgrade went through its log).
    SetGroupPlugin {
        #[serde(with = "id")]
        group: GroupId,
        #[serde(with = "digest")]
        plugin_digest: PluginDigest,
    },
}

/// A read of the meta state. JSON, tagged by `"op"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", deny_unknown_fields)]
pub enum MetaQuery {
    /// Every node, ascending by id.
    Nodes,
    /// Plugin versions ordered by name then version, a page at a time.
    Plugins {
        #[serde(default)]
        start_after: Option<PluginCursor>,
        /// 1..=[`PLUGINS_PAGE_MAX`], default [`PLUGINS_PAGE_DEFAULT`].
        #[serde(default)]
        limit: Option<u32>,
    },
    /// `"name"` (latest version), `"name@3"` or `"sha256:<hex>"`.
    ResolvePlugin { spec: String },
    /// Groups ascending by id, a page at a time.
    Groups {
        #[serde(default, with = "opt_id")]
        start_after: Option<GroupId>,
        /// 1..=[`GROUPS_PAGE_MAX`], default [`GROUPS_PAGE_DEFAULT`].
        #[serde(default)]
        limit: Option<u32>,
    },
    Group {
        #[serde(with = "id")]
        group: GroupId,
    },
    /// Groups with a replica on `node`, ascending by id, a page at a time.
    GroupsOnNode {
        #[serde(with = "id")]
        node: NodeId,
        #[serde(default, with = "opt_id")]
        start_after: Option<GroupId>,
        #[serde(default)]
        limit: Option<u32>,
    },
}

/// The answer to a command or query. JSON, tagged by `"kind"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum MetaOutput {
    /// `RegisterNode`, `SetNodeState`.
    Node { node: NodeRecord },
    /// `DeployPlugin`.
    Deployed {
        plugin: PluginRecord,
        already_present: bool,
    },
    /// `ResolvePlugin`.
    Plugin { plugin: PluginRecord },
    /// `AddPluginHolder`.
    Blob { blob: BlobRecord },
    /// `CreateGroup`, `DeleteGroup` (the record as it was), `RemoveReplica`,
    /// `PromoteReplica`, `SetGroupPlugin`, `Group`.
    Group { group: GroupRecord },
    /// `AddReplica`: the updated group and the new replica.
    ReplicaAdded {
        group: GroupRecord,
        replica: Replica,
    },
    /// `Nodes`.
    Nodes { nodes: Vec<NodeRecord> },
    /// `Plugins`; `next` is where the following page starts after, if there is one.
    Plugins {
        plugins: Vec<PluginRecord>,
        next: Option<PluginCursor>,
    },
    /// `Groups`, `GroupsOnNode`; `next_start_after` is set if there is another page.
    Groups {
        groups: Vec<GroupRecord>,
        #[serde(with = "opt_id")]
        next_start_after: Option<GroupId>,
    },
}

/// Why bytes could not be read as a meta message, or held another kind of output.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetaDecodeError {
    #[error("not a meta output: {0}")]
    Malformed(String),
    #[error("expected a {wanted} output, got {got:?}")]
    Unexpected { wanted: &'static str, got: String },
}

impl MetaCommand {
    /// The JSON bytes to propose to the meta group.
    pub fn encode(&self) -> Vec<u8> {
        to_json(self)
    }

    /// Parses command bytes; the error names what is wrong.
    pub fn decode(bytes: &[u8]) -> Result<Self, FsmError> {
        serde_json::from_slice(bytes)
            .map_err(|e| FsmError::Invalid(format!("not a meta command: {e}")))
    }
}

impl MetaQuery {
    /// The JSON bytes to send as a meta query.
    pub fn encode(&self) -> Vec<u8> {
        to_json(self)
    }

    /// Parses query bytes; the error names what is wrong.
    pub fn decode(bytes: &[u8]) -> Result<Self, FsmError> {
        serde_json::from_slice(bytes)
            .map_err(|e| FsmError::Invalid(format!("not a meta query: {e}")))
    }
}

impl MetaOutput {
    pub fn encode(&self) -> Vec<u8> {
        to_json(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, MetaDecodeError> {
        serde_json::from_slice(bytes).map_err(|e| MetaDecodeError::Malformed(e.to_string()))
    }

    fn unexpected(self, wanted: &'static str) -> MetaDecodeError {
        let got = match self {
            Self::Node { .. } => "Node",
            Self::Deployed { .. } => "Deployed",
            Self::Plugin { .. } => "Plugin",
            Self::Blob { .. } => "Blob",
            Self::Group { .. } => "Group",
            Self::ReplicaAdded { .. } => "ReplicaAdded",
            Self::Nodes { .. } => "Nodes",
            Self::Plugins { .. } => "Plugins",
            Self::Groups { .. } => "Groups",
        };
        MetaDecodeError::Unexpected {
            wanted,
            got: got.into(),
        }
    }

    /// The group of a `Group` or `ReplicaAdded` output.
    pub fn into_group(self) -> Result<GroupRecord, MetaDecodeError> {
        match self {
            Self::Group { group } | Self::ReplicaAdded { group, .. } => Ok(group),
            other => Err(other.unexpected("Group")),
        }
    }

    /// The node of a `Node` output.
    pub fn into_node(self) -> Result<NodeRecord, MetaDecodeError> {
        match self {
            Self::Node { node } => Ok(node),
            other => Err(other.unexpected("Node")),
        }
    }

    /// The plugin of a `Plugin` or `Deployed` output.
    pub fn into_plugin(self) -> Result<PluginRecord, MetaDecodeError> {
        match self {
            Self::Plugin { plugin } | Self::Deployed { plugin, .. } => Ok(plugin),
            other => Err(other.unexpected("Plugin")),
        }
    }
}

/// Serializing these types cannot fail: every map key is a string and no `Serialize`
/// impl returns an error. An empty output would be refused by every decoder anyway.
pub(super) fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Errors

/// Why the meta state machine refused a command or query.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    #[error("node id {0} is out of range: node ids are 1..={NODE_ID_MAX}")]
    NodeIdOutOfRange(u64),
    #[error("address {addr:?} is not usable: {reason}")]
    BadAddress { addr: String, reason: String },
    #[error("address {addr} is already registered by node {node}")]
    AddressTaken { addr: String, node: NodeId },
    #[error("the cluster already records {NODES_MAX} nodes, the most it can hold")]
    TooManyNodes,
    #[error("node {0} is not registered")]
    NoSuchNode(NodeId),
    #[error("node {0} was removed; a removed node id cannot be used again")]
    NodeRemoved(NodeId),
    #[error("node {node} is {state:?}, not Up; only Up nodes take new replicas")]
    NodeNotUp { node: NodeId, state: NodeState },
    #[error("node {node} still hosts {replicas} replicas; drain it before removing it")]
    NodeStillHosts { node: NodeId, replicas: u64 },
    #[error("node {node} already hosts {replicas} replicas, the most one node may host")]
    NodeFull { node: NodeId, replicas: u64 },
    #[error("plugin name {name:?} is not valid: {reason}")]
    BadPluginName { name: String, reason: String },
    #[error("plugin size of {0} bytes is not valid: it must be 1..={max}", max = limits::PLUGIN_SIZE_BYTES_MAX)]
    BadPluginSize(u64),
    #[error("digest {0} is reserved for the built-in meta state machine")]
    ReservedDigest(PluginDigest),
    #[error("digest {digest} was recorded with {recorded} bytes, not {claimed}")]
    SizeMismatch {
        digest: PluginDigest,
        recorded: u64,
        claimed: u64,
    },
    #[error("plugin {0} is not deployed")]
    NoSuchBlob(PluginDigest),
    #[error("plugin spec {spec:?} is not valid: {reason}")]
    BadSpec { spec: String, reason: String },
    #[error("{what}; deployed plugins: {deployed}")]
    NoSuchPlugin { what: String, deployed: String },
    #[error("{name}@{version} is not deployed; {name} has versions 1 to {latest}")]
    NoSuchVersion {
        name: String,
        version: u32,
        latest: u32,
    },
    #[error("a group needs 1..={REPLICAS_MAX} replicas, not {0}")]
    BadReplicaCount(u32),
    #[error("a group of {wanted} replicas needs {wanted} Up nodes, but only {up} are Up{full}")]
    NotEnoughNodes {
        wanted: u32,
        up: usize,
        full: String,
    },
    #[error("group {0} does not exist")]
    NoSuchGroup(GroupId),
    #[error("group 0 is the meta group; it is not managed through group records")]
    MetaGroup,
    #[error("node {node} already hosts peer {peer} of group {group}")]
    AlreadyHosts {
        group: GroupId,
        node: NodeId,
        peer: PeerId,
    },
    #[error("group {0} already has {MEMBERS_MAX} members, the most a group may have")]
    TooManyMembers(GroupId),
    #[error("group {group} has no peer {peer}")]
    NoSuchReplica { group: GroupId, peer: PeerId },
    #[error("peer {peer} is the last voter of group {group}; delete the group instead")]
    LastVoter { group: GroupId, peer: PeerId },
    #[error("peer {peer} of group {group} is already a voter")]
    AlreadyVoter { group: GroupId, peer: PeerId },
    #[error("the cluster ran out of {0} ids")]
    Exhausted(&'static str),
    /// A stored record could not be read back: the state is corrupt (fatal, not an
    /// outcome).
    #[error("corrupt meta record at {key}: {problem}")]
    Corrupt { key: String, problem: String },
    /// The KV view failed underneath (passed through unchanged).
    #[error(transparent)]
    Kv(FsmError),
}

impl From<MetaError> for FsmError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::Kv(inner) => inner,
            MetaError::Corrupt { .. } => FsmError::Storage(e.to_string()),
            other => FsmError::Rejected(other.to_string()),
        }
    }
}

impl From<FsmError> for MetaError {
    fn from(e: FsmError) -> Self {
        MetaError::Kv(e)
    }
}
