//! [`RaftStore`]: the async face of the raft core for the API and the server. It starts
//! the store loop and apply loop threads and turns requests into mailbox messages.

use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use super::apply::{ApplyLoop, ApplyTask};
use super::fsm::{FsmError, StateMachineHost};
use super::leaders::LeaderBoard;
use super::msg::{
    GroupStatus, PeerChange, PeerMsg, PeerSpec, Proposed, RaftError, ReadKind, ReadWaiter, StoreMsg,
};
use super::query_pool::{QueryDeps, QueryJob, QueryPool, answer_batch};
use super::router::Router;
use super::snapshot::{self, SnapWorker};
use super::store_loop::StoreLoop;
use super::traits::{ApplyState, ApplyStore, LogStore};
use super::transport::Transport;
use super::{Clock, FatalHandler};
use crate::ids::{GroupId, NodeId, PeerId, PluginDigest};
use crate::limits;
use crate::metrics::RaftMetrics;

/// A cheap-to-clone handle on the node's raft groups.
#[derive(Clone)]
pub struct RaftStore {
    router: Arc<Router>,
    queries: QueryPool,
    query_deps: QueryDeps,
    leaders: Arc<LeaderBoard>,
    node: NodeId,
    hibernating: Arc<std::sync::atomic::AtomicUsize>,
    metrics: RaftMetrics,
    /// Set by [`Self::shutdown`]: only then is a request answered "shutting down".
    stopping: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for RaftStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftStore")
            .field("router", &self.router)
            .finish()
    }
}

/// The threads behind a [`RaftStore`]; join them after [`RaftStore::shutdown`].
pub struct StoreThreads {
    store: JoinHandle<()>,
    apply: JoinHandle<()>,
    snapshots: JoinHandle<()>,
}

impl StoreThreads {
    pub fn join(self) {
        let _ = self.store.join();
        let _ = self.apply.join();
        let _ = self.snapshots.join();
    }
}

/// Runs a loop; a panic in it (raft-rs panics on storage errors it cannot handle) is
/// fatal for the node instead of leaving a half-alive process whose requests hang.
fn fail_stop(name: &str, fatal: &FatalHandler, run: impl FnOnce()) {
    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        let why = super::panic_message(&*panic);
        fatal(&format!("the {name} panicked: {why}"));
    }
}

/// What the raft core needs from the rest of the node.
pub struct StoreDeps {
    pub log: Arc<dyn LogStore>,
    pub apply: Arc<dyn ApplyStore>,
    pub fsm: Arc<dyn StateMachineHost>,
    pub clock: Arc<dyn Clock>,
    pub fatal: FatalHandler,
    /// This node's id (peer ids name their node; see [`PeerId::node`]).
    pub node: NodeId,
    pub transport: Arc<dyn Transport>,
    /// Counters and gauges the loops update (in memory only).
    pub metrics: RaftMetrics,
}

impl RaftStore {
    /// Starts the store loop and the apply loop.
    pub fn start(deps: StoreDeps) -> std::io::Result<(Self, StoreThreads)> {
        let (router, receivers) = Router::new();
        let (apply_tx, apply_rx) =
            crossbeam_channel::bounded::<ApplyTask>(limits::APPLY_QUEUE_CAPACITY);
        let apply_loop = ApplyLoop {
            store: deps.apply.clone(),
            fsm: deps.fsm.clone(),
            router: router.clone(),
            fatal: deps.fatal.clone(),
            metrics: deps.metrics.clone(),
        };
        let fatal = deps.fatal.clone();
        let apply = std::thread::Builder::new()
            .name("flotilla-apply".into())
            .stack_size(limits::APPLY_THREAD_STACK_BYTES)
            .spawn(move || fail_stop("apply loop", &fatal, || apply_loop.run(apply_rx)))?;
        let (snap_worker, snap_rx) = SnapWorker::new();
        let (node, apply_store, snap_router, fatal) = (
            deps.node,
            deps.apply.clone(),
            router.clone(),
            deps.fatal.clone(),
        );
        let snapshots = std::thread::Builder::new()
            .name("flotilla-snap".into())
            .spawn(move || {
                let f = fatal.clone();
                fail_stop("snapshot worker", &f, || {
                    snapshot::run_worker(snap_rx, node, apply_store, snap_router, fatal)
                })
            })?;
        let leaders = Arc::new(LeaderBoard::default());
        let hibernating = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let store_loop = StoreLoop {
            peers: Default::default(),
            router: router.clone(),
            log: deps.log,
            apply_store: deps.apply.clone(),
            apply_tx,
            clock: deps.clock,
            fatal: deps.fatal.clone(),
            node: deps.node,
            transport: deps.transport,
            snap_worker,
            leaders: leaders.clone(),
            uninitialized: Default::default(),
            hibernating: hibernating.clone(),
            awake: Default::default(),
            metrics: deps.metrics.clone().into(),
        };
        let fatal = deps.fatal.clone();
        let store = std::thread::Builder::new()
            .name("flotilla-store".into())
            .spawn(move || fail_stop("store loop", &fatal, || store_loop.run(receivers)))?;
        let query_deps = QueryDeps {
            router: router.clone(),
            apply: deps.apply,
            fsm: deps.fsm,
            metrics: deps.metrics.clone(),
        };
        let queries = QueryPool::start(query_deps.clone())?;
        Ok((
            Self {
                router,
                queries,
                query_deps,
                leaders,
                node: deps.node,
                hibernating,
                metrics: deps.metrics,
                stopping: Arc::default(),
            },
            StoreThreads {
                store,
                apply,
                snapshots,
            },
        ))
    }

    /// Starts (bootstrapping or recovering) a peer on this node.
    pub async fn start_peer(&self, spec: PeerSpec) -> Result<(), RaftError> {
        let (reply, rx) = oneshot::channel();
        self.router
            .send_control(StoreMsg::StartPeer { spec, reply })?;
        rx.await.map_err(|_| self.unanswered())?
    }

    /// Proposes one command and waits for its outcome.
    pub async fn propose(
        &self,
        group: GroupId,
        command: Vec<u8>,
        request_id: String,
    ) -> Result<Proposed, RaftError> {
        self.metrics.proposals.inc();
        let (reply, rx) = oneshot::channel();
        let result = match self.router.send(
            group,
            PeerMsg::Propose {
                command,
                request_id,
                reply,
            },
        ) {
            Ok(()) => rx.await.map_err(|_| self.unanswered()).and_then(|r| r),
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            let failed = &self.metrics.proposals_failed;
            match e {
                RaftError::NotLeader { .. } => failed.not_leader.inc(),
                RaftError::Busy { .. } => failed.busy.inc(),
                RaftError::Dropped(_) => failed.dropped.inc(),
                RaftError::Fsm(_) => failed.plugin.inc(),
                _ => failed.other.inc(),
            };
        }
        result
    }

    /// Waits until the group may serve a read of the given kind; returns the index the
    /// read observes at least.
    pub async fn read_barrier(&self, group: GroupId, kind: ReadKind) -> Result<u64, RaftError> {
        let (reply, rx) = oneshot::channel();
        let reply = ReadWaiter::Index(reply);
        self.router.send(group, PeerMsg::Read { kind, reply })?;
        rx.await.map_err(|_| self.unanswered())?
    }

    /// [`Self::read_barrier`] and then [`Self::query`], with the query queued by the
    /// store loop as soon as the barrier passes rather than by this task once woken for
    /// it: one wake-up of the caller per read instead of two.
    pub async fn read_query(
        &self,
        group: GroupId,
        kind: ReadKind,
        request: Vec<u8>,
    ) -> Result<(Vec<u8>, u64), RaftError> {
        let (reply, rx) = oneshot::channel();
        let job = QueryJob {
            group,
            request,
            reply,
        };
        let reply = ReadWaiter::Query(job, self.queries.clone());
        self.router.send(group, PeerMsg::Read { kind, reply })?;
        rx.await.map_err(|_| self.unanswered())?
    }

    /// Runs a read-only query against the group's applied state on a query thread
    /// (batched with the other reads waiting there). Returns the output and the applied
    /// index it observed.
    pub async fn query(
        &self,
        group: GroupId,
        request: Vec<u8>,
    ) -> Result<(Vec<u8>, u64), RaftError> {
        let rx = self.queries.submit(group, request)?;
        rx.await.map_err(|_| self.unanswered())?
    }

    /// [`Self::query`] on the calling thread (blocking), for tests and tools.
    pub fn query_blocking(
        &self,
        group: GroupId,
        request: &[u8],
    ) -> Result<(Vec<u8>, u64), RaftError> {
        let (reply, mut rx) = oneshot::channel();
        let job = QueryJob {
            group,
            request: request.to_vec(),
            reply,
        };
        answer_batch(&self.query_deps, vec![job]);
        rx.try_recv().map_err(|_| self.unanswered())?
    }

    /// Proposes a switch to `plugin`; returns the index at which the group switched.
    pub async fn upgrade(&self, group: GroupId, plugin: PluginDigest) -> Result<u64, RaftError> {
        let (reply, rx) = oneshot::channel();
        self.router
            .send(group, PeerMsg::Upgrade { plugin, reply })?;
        rx.await.map_err(|_| self.unanswered())?
    }

    pub async fn status(&self, group: GroupId) -> Result<GroupStatus, RaftError> {
        let (reply, rx) = oneshot::channel();
        self.router.send(group, PeerMsg::Status { reply })?;
        rx.await.map_err(|_| self.unanswered())
    }

    /// Removes the group and all its data from this node.
    pub async fn destroy(&self, group: GroupId) -> Result<(), RaftError> {
        let (reply, rx) = oneshot::channel();
        self.router.send(group, PeerMsg::Destroy { reply })?;
        rx.await.map_err(|_| self.unanswered())?
    }

    /// Proposes a membership change; returns the index at which it applied.
    pub async fn change_peers(
        &self,
        group: GroupId,
        changes: Vec<PeerChange>,
    ) -> Result<u64, RaftError> {
        let (reply, rx) = oneshot::channel();
        self.router
            .send(group, PeerMsg::ChangePeers { changes, reply })?;
        rx.await.map_err(|_| self.unanswered())?
    }

    /// Asks the leader of `group` (this replica) to hand leadership to `peer`.
    pub async fn transfer_leader(&self, group: GroupId, peer: PeerId) -> Result<(), RaftError> {
        let (reply, rx) = oneshot::channel();
        self.router
            .send(group, PeerMsg::TransferLeader { peer, reply })?;
        rx.await.map_err(|_| self.unanswered())?
    }

    /// Appends a "compute state digest" entry (this replica must lead); returns its index.
    pub async fn compute_digest(&self, group: GroupId) -> Result<u64, RaftError> {
        let (reply, rx) = oneshot::channel();
        self.router.send(group, PeerMsg::ComputeDigest { reply })?;
        rx.await.map_err(|_| self.unanswered())?
    }

    /// Sets the group's storage quota through its log (this replica must lead);
    /// returns the index at which it applied.
    pub async fn set_quota(
        &self,
        group: GroupId,
        quota: super::quota::Quota,
    ) -> Result<u64, RaftError> {
        let (reply, rx) = oneshot::channel();
        self.router
            .send(group, PeerMsg::SetQuota { quota, reply })?;
        rx.await.map_err(|_| self.unanswered())?
    }

    /// The group's storage quota and usage as this replica's applied state has them.
    pub fn account(&self, group: GroupId) -> Result<super::quota::Account, RaftError> {
        let snapshot = self.query_deps.apply.read_snapshot();
        super::quota::read(&*snapshot, group).map_err(RaftError::Fsm)
    }

    /// The digest this replica recorded at `index` (None until it applies that entry).
    pub fn recorded_digest(
        &self,
        group: GroupId,
        index: u64,
    ) -> Result<Option<[u8; 32]>, RaftError> {
        super::digest::recorded(&*self.query_deps.apply, group, index)
            .map_err(|e| RaftError::Fsm(FsmError::Storage(e)))
    }

    /// Makes this replica of `group` start an election.
    pub fn campaign(&self, group: GroupId) -> Result<(), RaftError> {
        self.router.send(group, PeerMsg::Campaign)
    }

    /// The leaders of the groups on this node, for watchers.
    pub fn leaders(&self) -> &Arc<LeaderBoard> {
        &self.leaders
    }

    /// Wakes the hibernating replicas whose leader lives on `node` (it stopped
    /// answering): they tick again and elect a new leader if it is really gone.
    pub fn wake_led_by(&self, node: NodeId) {
        let _ = self.router.send_control(StoreMsg::WakeLedBy(node));
    }

    /// How many of this node's replicas hibernate (as of the last tick).
    pub fn hibernating(&self) -> usize {
        self.hibernating.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// This node's id.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// Delivers a raft message from another node. A message for a group this node does
    /// not host goes to the store loop, which may create an uninitialized peer for it.
    pub fn step(&self, group: GroupId, msg: raft::eraftpb::Message) -> Result<(), RaftError> {
        if self.router.mailbox(group).is_none() {
            return self.router.send_control(StoreMsg::RaftForUnknown {
                group,
                msg: Box::new(msg),
            });
        }
        self.router.send(group, PeerMsg::Raft(Box::new(msg)))
    }

    /// Tells `group`'s leader that `peer` could not be reached (raft-rs then probes it
    /// instead of streaming appends into the void).
    pub fn report_unreachable(&self, group: GroupId, peer: PeerId) {
        let _ = self.router.send(group, PeerMsg::Unreachable { peer });
    }

    /// Tells `group`'s leader how a snapshot transfer to `peer` ended.
    pub fn report_snapshot(&self, group: GroupId, peer: PeerId, ok: bool) {
        let _ = self
            .router
            .send(group, PeerMsg::SnapshotStatus { peer, ok });
    }

    /// The applied state of a group as last published.
    pub fn applied(&self, group: GroupId) -> Option<ApplyState> {
        self.router.shared(group).map(|s| s.snapshot())
    }

    pub fn groups(&self) -> Vec<GroupId> {
        self.router.groups()
    }

    /// Asks the store loop to stop; join the threads afterwards.
    pub fn shutdown(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Release);
        let _ = self.router.send_control(StoreMsg::Shutdown);
    }

    /// The error for a request whose answer never came: the node is shutting down, or
    /// (a bug; never while running normally) the loop that held it let it go.
    fn unanswered(&self) -> RaftError {
        if self.stopping.load(std::sync::atomic::Ordering::Acquire) {
            RaftError::Stopped
        } else {
            RaftError::Unanswered
        }
    }
}
