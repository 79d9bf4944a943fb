//! The store loop: one thread that drives every peer of the node.
//!
//! ```text
//!  mailboxes ──► handle msgs ──► tick ──► collect readies ──► ONE batch, ONE fsync
//!                                                              │
//!   apply loop ◄── committed entries + proposals ◄── advance ◄─┘
//! ```
//!
//! A round takes the groups that were scheduled (a message arrived, apply advanced) and,
//! every tick interval, ticks all peers. Everything the round's peers must persist goes
//! into one `RaftWriteBatch` (group commit), so a single sync serves every group.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use raft::RawNode;
use raft::eraftpb::{ConfState, HardState};

use raft::eraftpb::MessageType;

use super::apply::ApplyTask;
use super::leaders::LeaderBoard;
use super::msg::{PeerMsg, PeerSpec, RaftError, StoreMsg};
use super::peer::Peer;
use super::peer_storage::PeerStorage;
use super::router::{Mailbox, Router, RouterReceivers};
use super::shared::GroupShared;
use super::snapshot::SnapWorker;
use super::traits::{ApplyState, ApplyStore, GroupRaftWrite, LogStore, RaftWriteBatch, StoreError};
use super::transport::Transport;
use super::{Clock, FatalHandler, logger};
use crate::ids::{GroupId, NodeId, PeerId};
use crate::limits;
use crate::metrics::RaftMetrics;

/// Index and term at which a new group's log starts (TiKV's trick): a replica added
/// later has an empty log, so the leader must send it a snapshot, which carries the
/// plugin and the configuration, instead of entries it cannot place.
pub const INIT_INDEX: u64 = 5;
pub const INIT_TERM: u64 = 5;

pub struct StoreLoop {
    pub(super) peers: HashMap<GroupId, (Peer, Arc<Mailbox>)>,
    pub(super) router: Arc<Router>,
    pub(super) log: Arc<dyn LogStore>,
    pub(super) apply_store: Arc<dyn ApplyStore>,
    pub(super) apply_tx: Sender<ApplyTask>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) fatal: FatalHandler,
    pub(super) node: NodeId,
    pub(super) transport: Arc<dyn Transport>,
    pub(super) snap_worker: SnapWorker,
    pub(super) leaders: Arc<LeaderBoard>,
    /// Groups whose replica a message created and that may still be uninitialized
    /// (bounded by [`limits::UNINITIALIZED_PEERS_MAX`]).
    pub(super) uninitialized: HashSet<GroupId>,
    /// How many peers hibernate, as of the last round.
    pub(super) hibernating: Arc<AtomicUsize>,
    /// Peers that tick (not hibernating).
    pub(super) awake: HashSet<GroupId>,
    pub(super) metrics: LoopMetrics,
}

impl StoreLoop {
    /// Runs rounds until shutdown.
    pub fn run(mut self, rx: RouterReceivers) {
        let tick = Duration::from_millis(limits::TICK_INTERVAL_MS);
        let mut next_tick = Instant::now() + tick;
        loop {
            let mut scheduled = Vec::new();
            let timeout = next_tick.saturating_duration_since(Instant::now());
            // Wake for a scheduled group, a control message, or the next tick.
            crossbeam_channel::select! {
                recv(rx.ready_rx) -> g => match g {
                    Ok(g) => scheduled.push(g),
                    Err(_) => return,
                },
                recv(rx.control_rx) -> msg => match msg {
                    Ok(msg) => {
                        if self.control(msg, &mut scheduled) {
                            return;
                        }
                    }
                    Err(_) => return,
                },
                default(timeout) => {}
            }
            while scheduled.len() < limits::ROUND_GROUPS_MAX {
                match rx.ready_rx.try_recv() {
                    Ok(g) => scheduled.push(g),
                    Err(_) => break,
                }
            }
            while let Ok(msg) = rx.control_rx.try_recv() {
                if self.control(msg, &mut scheduled) {
                    return;
                }
            }
            let tick_now = Instant::now() >= next_tick;
            if tick_now {
                next_tick = Instant::now() + tick;
            }
            if let Err(e) = self.round(scheduled, tick_now) {
                (self.fatal)(&e.to_string());
                return;
            }
        }
    }

    /// Handles one control message; returns true on shutdown.
    pub(super) fn control(&mut self, msg: StoreMsg, scheduled: &mut Vec<GroupId>) -> bool {
        match msg {
            StoreMsg::StartPeer { spec, reply } => {
                let group = spec.group;
                let result = self.start_peer(spec);
                if result.is_ok() {
                    scheduled.push(group);
                }
                let _ = reply.send(result);
                false
            }
            StoreMsg::RaftForUnknown { group, msg } => {
                if self.maybe_create_peer(group, &msg)
                    && let Some((_, mailbox)) = self.peers.get(&group)
                {
                    mailbox.send_local(PeerMsg::Raft(msg));
                    scheduled.push(group);
                }
                false
            }
            StoreMsg::WakeLedBy(node) => {
                let mut woken = 0;
                for (group, (peer, _)) in &mut self.peers {
                    if peer.is_hibernating() && peer.leader_node() == Some(node) {
                        peer.wake();
                        self.awake.insert(*group);
                        scheduled.push(*group);
                        woken += 1;
                    }
                }
                if woken > 0 {
                    tracing::info!(
                        node = node.0,
                        woken,
                        "woke hibernating replicas whose leader's node stopped answering"
                    );
                }
                false
            }
            StoreMsg::Shutdown => {
                for (peer, _) in self.peers.values_mut() {
                    peer.fail_all(&RaftError::Stopped);
                }
                true
            }
        }
    }

    /// One round over `scheduled` groups (and every group if `tick`).
    pub fn round(&mut self, scheduled: Vec<GroupId>, tick: bool) -> Result<(), StoreError> {
        let now_ms = self.clock.now_ms();
        let mut active = Vec::with_capacity(scheduled.len());
        for group in scheduled {
            let Some((peer, mailbox)) = self.peers.get_mut(&group) else {
                continue;
            };
            mailbox.unschedule();
            let msgs = mailbox.drain(limits::ROUND_MESSAGES_PER_GROUP_MAX);
            if !mailbox.rx.is_empty() {
                self.router.notify(group);
            }
            peer.on_applied();
            if peer.is_removed() {
                let tombstone = peer.peer.0;
                self.destroy(group, None, Some(tombstone));
                continue;
            }
            if let Some(reply) = peer.handle(msgs, now_ms) {
                // A tombstone: a leader's late heartbeat must not recreate the replica.
                let tombstone = peer.peer.0;
                self.destroy(group, Some(reply), Some(tombstone));
                continue;
            }
            active.push(group);
        }
        if tick {
            // Only awake peers tick: with ten thousand hibernating groups, walking
            // every peer each tick was the store loop's largest idle cost.
            let peers = &mut self.peers;
            self.awake.retain(|group| match peers.get_mut(group) {
                Some((peer, _)) => {
                    if peer.tick() {
                        active.push(*group);
                    }
                    true
                }
                None => false,
            });
        }
        if tick {
            let hibernating = self.hibernating.load(Ordering::Relaxed);
            self.metrics.tick(&self.peers, hibernating);
        }
        active.sort_unstable();
        active.dedup();

        // Hibernation changes only in groups handled or ticked this round.
        for group in &active {
            match self.peers.get(group) {
                Some((peer, _)) if peer.is_hibernating() => {
                    self.awake.remove(group);
                }
                Some(_) => {
                    self.awake.insert(*group);
                }
                None => {
                    self.awake.remove(group);
                }
            }
        }
        self.hibernating.store(
            self.peers.len().saturating_sub(self.awake.len()),
            Ordering::Relaxed,
        );
        let mut batch = RaftWriteBatch::default();
        let mut readies = Vec::new();
        for group in active {
            if let Some((peer, _)) = self.peers.get_mut(&group)
                && let Some(rd) = peer.collect_ready(&mut batch.groups)
            {
                readies.push((group, rd));
            }
        }
        let ready_groups: Vec<GroupId> = readies.iter().map(|(g, _)| *g).collect();
        self.flush_outboxes(&ready_groups);
        self.metrics.raft.store_rounds.inc();
        self.metrics.raft.readies.inc_by(readies.len() as u64);
        if !batch.is_empty() {
            let (groups, entries) = (batch.groups.len(), batch.entry_count());
            let started = Instant::now();
            self.log.persist_round(batch)?;
            let took = started.elapsed();
            self.metrics
                .raft
                .observe_fsync(took.as_secs_f64(), groups, entries);
            if took >= crate::limits::SLOW_PERSIST_ROUND {
                tracing::debug!(
                    took_ms = took.as_millis() as u64,
                    groups,
                    entries,
                    "slow persist round"
                );
            }
        }
        for (group, rd) in readies {
            let Some((peer, _)) = self.peers.get_mut(&group) else {
                continue;
            };
            if let Some(committed) = peer.after_persist(rd) {
                let task = ApplyTask::Entries {
                    group,
                    shared: peer.shared.clone(),
                    committed,
                };
                if self.apply_tx.send(task).is_err() {
                    return Err(StoreError("the apply loop has stopped".into()));
                }
            }
            if peer.raw.has_ready() {
                self.router.notify(group);
            }
        }
        self.flush_outboxes(&ready_groups);
        Ok(())
    }

    /// Hands the queued messages of `groups` (the only peers that queue any: raft's
    /// output is moved to the outbox when a ready is collected or finished) to the
    /// transport in one call.
    fn flush_outboxes(&mut self, groups: &[GroupId]) {
        let mut out = Vec::new();
        for group in groups {
            if let Some((peer, _)) = self.peers.get_mut(group)
                && !peer.outbox.is_empty()
            {
                out.append(&mut peer.outbox);
            }
        }
        if !out.is_empty() {
            self.metrics
                .raft
                .raft_messages_sent
                .inc_by(out.len() as u64);
            self.transport.send(out);
        }
    }

    /// A message for a group this node has no peer of creates an uninitialized peer
    /// when it comes from a leader (append, heartbeat, snapshot) to a peer id that
    /// names this node and was never removed here. Returns true if the peer exists now.
    fn maybe_create_peer(&mut self, group: GroupId, msg: &raft::eraftpb::Message) -> bool {
        if self.peers.contains_key(&group) {
            return true;
        }
        let to = PeerId(msg.to);
        let from_leader = matches!(
            msg.get_msg_type(),
            MessageType::MsgAppend | MessageType::MsgHeartbeat | MessageType::MsgSnapshot
        );
        if !from_leader || to.node() != self.node || group.0 == 0 && msg.to == 0 {
            tracing::debug!(
                group = group.0,
                to = msg.to,
                "message for an unknown group dropped"
            );
            return false;
        }
        // A forged or stray heartbeat must not create replicas without bound: each costs
        // memory until the meta group's GC removes it.
        let peers = &self.peers;
        self.uninitialized
            .retain(|g| peers.get(g).is_some_and(|(p, _)| !p.is_initialized()));
        if self.uninitialized.len() >= limits::UNINITIALIZED_PEERS_MAX {
            tracing::warn!(
                group = group.0,
                to = to.0,
                "message for an unknown group dropped: {} uninitialized replicas already \
                 wait for a snapshot",
                self.uninitialized.len()
            );
            return false;
        }
        match self.log.tombstone(group) {
            Ok(Some(t)) if t >= to.0 => {
                tracing::debug!(
                    group = group.0,
                    to = to.0,
                    "message to a removed peer dropped"
                );
                return false;
            }
            Ok(_) => {}
            Err(e) => {
                (self.fatal)(&format!("reading the tombstone of group {group}: {e}"));
                return false;
            }
        }
        let spec = PeerSpec {
            group,
            peer: to,
            voters: Vec::new(),
            plugin: crate::ids::PluginDigest([0; 32]),
            campaign: false,
        };
        match self.start_peer(spec) {
            Ok(()) => {
                tracing::info!(
                    group = group.0,
                    peer = to.0,
                    "created an uninitialized replica for a leader's message"
                );
                self.uninitialized.insert(group);
                true
            }
            Err(e) => {
                tracing::warn!(group = group.0, peer = to.0, "cannot create a replica: {e}");
                false
            }
        }
    }

    /// Removes a peer: at once from the loop and the router, and its data through the
    /// apply loop (after everything queued before it). `tombstone` marks a peer removed
    /// by a membership change, so stray messages never recreate it.
    fn destroy(
        &mut self,
        group: GroupId,
        reply: Option<tokio::sync::oneshot::Sender<Result<(), RaftError>>>,
        tombstone: Option<u64>,
    ) {
        if let Some((mut peer, _)) = self.peers.remove(&group) {
            peer.fail_all(&RaftError::GroupNotFound(group));
            peer.shared.mark_destroyed();
            tracing::info!(
                group = group.0,
                peer = peer.peer.0,
                removed = tombstone.is_some(),
                "replica destroyed"
            );
        }
        self.leaders.remove(group);
        self.router.remove(group);
        self.router.destroying(group);
        let task = ApplyTask::Destroy {
            group,
            reply,
            tombstone,
        };
        if let Err(e) = self.apply_tx.send(task)
            && let ApplyTask::Destroy {
                reply: Some(reply), ..
            } = e.0
        {
            let _ = reply.send(Err(RaftError::Stopped));
        }
    }

    /// Starts a peer, writing its initial raft and apply state first if it has none.
    fn start_peer(&mut self, spec: PeerSpec) -> Result<(), RaftError> {
        let group = spec.group;
        if self.peers.contains_key(&group) {
            return Err(RaftError::GroupExists(group));
        }
        if self.router.is_destroying(group) {
            return Err(RaftError::Busy {
                group,
                reason: "its previous incarnation is still being removed".into(),
                retry_after_ms: limits::TICK_INTERVAL_MS,
            });
        }
        let fatal = self.fatal.clone();
        let storage_err = move |e: StoreError| {
            (fatal)(&format!("starting group {group}: {e}"));
            RaftError::Stopped
        };
        if let Some(t) = self.log.tombstone(group).map_err(storage_err.clone())?
            && t >= spec.peer.0
        {
            return Err(RaftError::Invalid(format!(
                "peer {} of group {group} was removed from this node",
                spec.peer
            )));
        }
        let mut raft_state = match self.log.raft_state(group).map_err(storage_err.clone())? {
            Some(s) => s,
            None => self.bootstrap(&spec).map_err(storage_err.clone())?,
        };
        if let Some((index, term)) = raft_state.pending_snapshot {
            // A crash interrupted loading a snapshot: finish it from the same file.
            tracing::info!(
                group = group.0,
                index,
                "finishing an interrupted snapshot install"
            );
            self.apply_store
                .install_snapshot(group, index, term)
                .map_err(storage_err.clone())?;
            raft_state.pending_snapshot = None;
        }
        if let Some(cs) = self
            .apply_store
            .conf_state(group)
            .map_err(storage_err.clone())?
        {
            raft_state.conf_state = cs;
        }
        let initialized = !raft_state.conf_state.voters.is_empty();
        let apply_state = match self
            .apply_store
            .apply_state(group)
            .map_err(storage_err.clone())?
        {
            Some(s) => s,
            None => ApplyState {
                applied_index: raft_state.truncated.0,
                applied_term: raft_state.truncated.1,
                applied_timestamp_ms: 0,
                plugin: spec.plugin,
            },
        };
        // Applied entries were committed, even if the commit index on disk lags.
        if raft_state.hard_state.commit < apply_state.applied_index {
            raft_state.hard_state.commit = apply_state.applied_index;
        }
        let voters = raft_state.conf_state.voters.clone();
        let storage = PeerStorage::new(
            group,
            self.log.clone(),
            raft_state,
            self.snap_worker.clone(),
        );
        let config = raft::Config {
            id: spec.peer.0,
            election_tick: limits::ELECTION_TICKS,
            heartbeat_tick: limits::HEARTBEAT_TICKS,
            applied: apply_state.applied_index,
            max_size_per_msg: limits::RAFT_MESSAGE_BYTES_MAX,
            max_inflight_msgs: limits::RAFT_INFLIGHT_MESSAGES_MAX,
            max_committed_size_per_ready: limits::READY_COMMITTED_BYTES_MAX,
            pre_vote: true,
            check_quorum: true,
            // No append that only carries a new commit index: followers learn it from
            // the next append, or from the next heartbeat once proposals stop (raft
            // still broadcasts while a membership change is pending). The broadcast
            // and its answers were half the raft messages of a loaded group; the cost
            // is followers applying up to a heartbeat later, which only stale reads see.
            skip_bcast_commit: true,
            ..Default::default()
        };
        let mut raw = RawNode::new(&config, storage, &logger::raft_logger(group.0))
            .map_err(|e| RaftError::Invalid(format!("cannot start raft for group {group}: {e}")))?;
        if initialized && (voters == [spec.peer.0] || spec.campaign) {
            raw.campaign()
                .map_err(|e| RaftError::Invalid(format!("campaign failed: {e}")))?;
        }
        let shared = Arc::new(GroupShared::new(apply_state));
        let mailbox = self.router.register(group, shared.clone())?;
        let peer = Peer::new(group, spec.peer, raw, shared, self.leaders.clone());
        self.peers.insert(group, (peer, mailbox));
        self.awake.insert(group);
        Ok(())
    }

    /// Writes the first raft state of a peer. A peer with initial voters starts with a
    /// log truncated at [`INIT_INDEX`] and an apply state there; one without (added to a
    /// running group) stores only an empty hard state, as raft-rs requires.
    fn bootstrap(&self, spec: &PeerSpec) -> Result<super::traits::PersistedRaftState, StoreError> {
        let group = spec.group;
        if spec.voters.is_empty() {
            self.log.persist_round(RaftWriteBatch {
                groups: vec![GroupRaftWrite {
                    group,
                    hard_state: Some(HardState::default()),
                    must_sync: true,
                    ..Default::default()
                }],
            })?;
            return Ok(super::traits::PersistedRaftState::default());
        }
        let cs = ConfState {
            voters: spec.voters.iter().map(|p| p.0).collect(),
            ..Default::default()
        };
        let hs = HardState {
            term: INIT_TERM,
            commit: INIT_INDEX,
            ..Default::default()
        };
        let state = ApplyState {
            applied_index: INIT_INDEX,
            applied_term: INIT_TERM,
            applied_timestamp_ms: 0,
            plugin: spec.plugin,
        };
        self.apply_store
            .commit_apply(group, Default::default(), state, Some(&cs))?;
        self.log.persist_round(RaftWriteBatch {
            groups: vec![GroupRaftWrite {
                group,
                hard_state: Some(hs.clone()),
                conf_state: Some(cs.clone()),
                compact_to: Some((INIT_INDEX, INIT_TERM)),
                must_sync: true,
                ..Default::default()
            }],
        })?;
        Ok(super::traits::PersistedRaftState {
            hard_state: hs,
            conf_state: cs,
            truncated: (INIT_INDEX, INIT_TERM),
            last_index: INIT_INDEX,
            pending_snapshot: None,
        })
    }
}

/// The store loop's metric handles. Counters move every round; the gauges (groups,
/// leaders, pending proposals) are recounted over all peers once every
/// [`LoopMetrics::GAUGE_TICKS`] ticks, not every round.
#[derive(Debug, Default)]
pub struct LoopMetrics {
    pub raft: RaftMetrics,
    ticks: u32,
}

impl From<RaftMetrics> for LoopMetrics {
    fn from(raft: RaftMetrics) -> Self {
        Self { raft, ticks: 0 }
    }
}

impl LoopMetrics {
    /// Ticks between two recounts of the gauges (1 s at the default tick).
    pub const GAUGE_TICKS: u32 = 10;

    /// `hibernating` is the store loop's own count (peers outside its awake set).
    fn tick(&mut self, peers: &HashMap<GroupId, (Peer, Arc<Mailbox>)>, hibernating: usize) {
        self.ticks += 1;
        if self.ticks < Self::GAUGE_TICKS {
            return;
        }
        self.ticks = 0;
        let (mut led, mut pending) = (0i64, 0i64);
        for (peer, _) in peers.values() {
            led += i64::from(peer.is_leader());
            pending += peer.pending_commands() as i64;
        }
        self.raft.groups.set(peers.len() as i64);
        self.raft.groups_led.set(led);
        self.raft.groups_hibernating.set(hibernating as i64);
        self.raft.proposals_pending.set(pending);
    }
}
