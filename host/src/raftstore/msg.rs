//! Messages into a group's mailbox and into the store loop, the answers they get, and
//! the errors a caller can see. Answers travel on tokio oneshot channels so async API
//! handlers can await them while the store loop stays a plain thread.

use tokio::sync::oneshot;

use super::fsm::FsmError;
use super::query_pool::{QueryJob, QueryPool};
use crate::ids::{GroupId, PeerId, PluginDigest};

/// Why a proposal or read did not get an answer from the state machine.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RaftError {
    #[error("group {0} does not exist on this node")]
    GroupNotFound(GroupId),
    #[error("this replica of group {group} is not the leader (leader hint: {leader:?})")]
    NotLeader {
        group: GroupId,
        leader: Option<PeerId>,
    },
    #[error("group {group} is overloaded ({reason}); retry in {retry_after_ms} ms")]
    Busy {
        group: GroupId,
        reason: String,
        retry_after_ms: u64,
    },
    #[error("the proposal was dropped before it committed ({0}); it may be retried")]
    Dropped(String),
    #[error("{0}")]
    Fsm(FsmError),
    #[error("the node is shutting down")]
    Stopped,
    /// A request the node let go without an answer while not shutting down (a bug:
    /// the thread serving it failed; the node's log says why).
    #[error("this node dropped the request without an answer (see its log); it may be retried")]
    Unanswered,
    #[error("group {0} already exists")]
    GroupExists(GroupId),
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// A successful proposal: the entry index and the plugin's output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposed {
    pub index: u64,
    pub output: Vec<u8>,
}

pub type ProposeReply = oneshot::Sender<Result<Proposed, RaftError>>;
pub type IndexReply = oneshot::Sender<Result<u64, RaftError>>;

/// Who waits for a read's barrier (applied >= the index the read must observe).
pub enum ReadWaiter {
    /// A caller that wants the index, to read on its own afterwards.
    Index(IndexReply),
    /// A query that goes onto the query pool the moment its barrier passes, from the
    /// thread that saw it pass: the answer reaches the caller without first waking it
    /// for the barrier.
    Query(QueryJob, QueryPool),
}

impl std::fmt::Debug for ReadWaiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadWaiter::Index(_) => f.write_str("ReadWaiter::Index"),
            ReadWaiter::Query(job, _) => write!(f, "ReadWaiter::Query(group {})", job.group),
        }
    }
}

impl ReadWaiter {
    /// The barrier passed at `index`.
    pub fn pass(self, index: u64) {
        match self {
            ReadWaiter::Index(reply) => {
                let _ = reply.send(Ok(index));
            }
            ReadWaiter::Query(job, pool) => pool.queue_or_refuse(job),
        }
    }

    /// The barrier cannot pass: the waiter gets `err`.
    pub fn fail(self, err: RaftError) {
        match self {
            ReadWaiter::Index(reply) => {
                let _ = reply.send(Err(err));
            }
            ReadWaiter::Query(job, _) => {
                let _ = job.reply.send(Err(err));
            }
        }
    }
}

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadKind {
    /// ReadIndex: confirm leadership, wait until applied >= the leader's commit index.
    Linearizable,
    /// Leader lease: a leader that has committed in its term and keeps check-quorum
    /// answers once applied >= its commit index, with no extra round.
    Lease,
}

/// The state of one group as the store loop sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupStatus {
    pub group: GroupId,
    pub peer: PeerId,
    pub role: String,
    pub term: u64,
    pub leader: Option<PeerId>,
    pub commit_index: u64,
    pub applied_index: u64,
    pub first_index: u64,
    pub last_index: u64,
    pub pending_proposals: u64,
    /// The group is idle and this peer does not tick (see [`super::hibernate`]).
    pub hibernating: bool,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    /// On a leader: each peer's matched index (replication progress), by peer id.
    pub progress: Vec<(u64, u64)>,
}

/// One membership change of a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerChange {
    AddVoter(PeerId),
    AddLearner(PeerId),
    Remove(PeerId),
}

/// What a group's mailbox carries.
#[derive(Debug)]
pub enum PeerMsg {
    Propose {
        command: Vec<u8>,
        request_id: String,
        reply: ProposeReply,
    },
    /// Passes the waiter once this replica may serve the read: applied >= the index the
    /// read must observe.
    Read {
        kind: ReadKind,
        reply: ReadWaiter,
    },
    Upgrade {
        plugin: PluginDigest,
        reply: IndexReply,
    },
    Status {
        reply: oneshot::Sender<GroupStatus>,
    },
    Destroy {
        reply: oneshot::Sender<Result<(), RaftError>>,
    },
    /// Proposes a membership change (several at once go through joint consensus);
    /// answers with the index at which it applied.
    ChangePeers {
        changes: Vec<PeerChange>,
        reply: IndexReply,
    },
    /// Asks the leader to hand leadership to `peer`.
    TransferLeader {
        peer: PeerId,
        reply: oneshot::Sender<Result<(), RaftError>>,
    },
    /// Starts an election now (the preferred leader of a new group).
    Campaign,
    /// Appends a "compute state digest" entry; answers with its index.
    ComputeDigest {
        reply: IndexReply,
    },
    /// Appends a "set storage quota" entry; answers with the index it applied at.
    SetQuota {
        quota: super::quota::Quota,
        reply: IndexReply,
    },
    /// A raft message from another node.
    Raft(Box<raft::eraftpb::Message>),
    /// The transport could not deliver to `peer`.
    Unreachable {
        peer: PeerId,
    },
    /// A snapshot transfer to `peer` finished (`ok`) or failed.
    SnapshotStatus {
        peer: PeerId,
        ok: bool,
    },
}

/// A group to start on this node.
#[derive(Clone, Debug)]
pub struct PeerSpec {
    pub group: GroupId,
    pub peer: PeerId,
    /// The initial voters of a new group. Empty for a replica added to a running group:
    /// it starts uninitialized and gets its state from the leader's snapshot.
    pub voters: Vec<PeerId>,
    pub plugin: PluginDigest,
    /// Start an election at once (the group's preferred leader).
    pub campaign: bool,
}

/// What the store loop's control channel carries.
#[derive(Debug)]
pub enum StoreMsg {
    /// Start a peer: bootstrap it if it has no raft state yet, else recover it.
    StartPeer {
        spec: PeerSpec,
        reply: oneshot::Sender<Result<(), RaftError>>,
    },
    /// A raft message for a group this node has no peer of: the store loop may create
    /// an uninitialized peer for it (the leader then sends a snapshot).
    RaftForUnknown {
        group: GroupId,
        msg: Box<raft::eraftpb::Message>,
    },
    /// Wake every hibernating peer whose leader lives on this node (it stopped
    /// answering), so that they elect another leader.
    WakeLedBy(crate::ids::NodeId),
    Shutdown,
}
