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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use raft::RawNode;
use raft::eraftpb::{ConfState, HardState};

use super::apply::ApplyTask;
use super::msg::{PeerSpec, RaftError, StoreMsg};
use super::peer::Peer;
use super::peer_storage::PeerStorage;
use super::router::{Mailbox, Router, RouterReceivers};
use super::shared::GroupShared;
use super::traits::{ApplyState, ApplyStore, GroupRaftWrite, LogStore, RaftWriteBatch, StoreError};
use super::{Clock, FatalHandler, logger};
use crate::ids::GroupId;
use crate::limits;

pub struct StoreLoop {
    pub(super) peers: HashMap<GroupId, (Peer, Arc<Mailbox>)>,
    pub(super) router: Arc<Router>,
    pub(super) log: Arc<dyn LogStore>,
    pub(super) apply_store: Arc<dyn ApplyStore>,
    pub(super) apply_tx: Sender<ApplyTask>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) fatal: FatalHandler,
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
    fn control(&mut self, msg: StoreMsg, scheduled: &mut Vec<GroupId>) -> bool {
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
                tracing::debug!(
                    group = group.0,
                    from = msg.from,
                    "message for an unknown group dropped"
                );
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
            let msgs: Vec<_> = mailbox
                .rx
                .try_iter()
                .take(limits::ROUND_MESSAGES_PER_GROUP_MAX)
                .collect();
            if !mailbox.rx.is_empty() {
                self.router.notify(group);
            }
            peer.on_applied();
            if let Some(reply) = peer.handle(msgs, now_ms) {
                self.destroy(group, reply);
                continue;
            }
            active.push(group);
        }
        if tick {
            for (group, (peer, _)) in &mut self.peers {
                if peer.raw.tick() {
                    active.push(*group);
                }
            }
        }
        active.sort_unstable();
        active.dedup();

        let mut batch = RaftWriteBatch::default();
        let mut readies = Vec::new();
        for group in active {
            if let Some((peer, _)) = self.peers.get_mut(&group)
                && let Some(rd) = peer.collect_ready(&mut batch.groups)
            {
                readies.push((group, rd));
            }
        }
        if !batch.is_empty() {
            self.log.persist_round(batch)?;
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
        Ok(())
    }

    fn destroy(
        &mut self,
        group: GroupId,
        reply: tokio::sync::oneshot::Sender<Result<(), RaftError>>,
    ) {
        if let Some((mut peer, _)) = self.peers.remove(&group) {
            peer.fail_all(&RaftError::GroupNotFound(group));
            peer.shared.mark_destroyed();
        }
        self.router.remove(group);
        self.router.destroying(group);
        if let Err(e) = self.apply_tx.send(ApplyTask::Destroy { group, reply })
            && let ApplyTask::Destroy { reply, .. } = e.0
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
        let storage_err = |e: StoreError| {
            (self.fatal)(&format!("starting group {group}: {e}"));
            RaftError::Stopped
        };
        let mut raft_state = match self.log.raft_state(group).map_err(storage_err)? {
            Some(s) => s,
            None => {
                let cs = ConfState {
                    voters: spec.voters.iter().map(|p| p.0).collect(),
                    ..Default::default()
                };
                self.log
                    .persist_round(RaftWriteBatch {
                        groups: vec![GroupRaftWrite {
                            group,
                            hard_state: Some(HardState::default()),
                            conf_state: Some(cs.clone()),
                            ..Default::default()
                        }],
                    })
                    .map_err(storage_err)?;
                super::traits::PersistedRaftState {
                    conf_state: cs,
                    ..Default::default()
                }
            }
        };
        let apply_state = match self.apply_store.apply_state(group).map_err(storage_err)? {
            Some(s) => s,
            None => {
                let s = ApplyState {
                    applied_index: raft_state.truncated.0,
                    applied_term: raft_state.truncated.1,
                    applied_timestamp_ms: 0,
                    plugin: spec.plugin,
                };
                self.apply_store
                    .commit_apply(group, Default::default(), s)
                    .map_err(storage_err)?;
                s
            }
        };
        // Applied entries were committed, even if the commit index on disk lags.
        if raft_state.hard_state.commit < apply_state.applied_index {
            raft_state.hard_state.commit = apply_state.applied_index;
        }
        let voters = raft_state.conf_state.voters.clone();
        let storage = PeerStorage::new(group, self.log.clone(), raft_state);
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
            ..Default::default()
        };
        let mut raw = RawNode::new(&config, storage, &logger::raft_logger(group.0))
            .map_err(|e| RaftError::Invalid(format!("cannot start raft for group {group}: {e}")))?;
        if voters == [spec.peer.0] {
            raw.campaign()
                .map_err(|e| RaftError::Invalid(format!("campaign failed: {e}")))?;
        }
        let shared = Arc::new(GroupShared::new(apply_state));
        let mailbox = self.router.register(group, shared.clone())?;
        let peer = Peer::new(group, spec.peer, raw, shared);
        self.peers.insert(group, (peer, mailbox));
        Ok(())
    }
}
