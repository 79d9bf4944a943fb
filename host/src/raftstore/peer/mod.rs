//! One group's replica on this node: a raft-rs `RawNode` plus the proposals and reads
//! waiting on it. The store loop calls into it in three steps per round:
//! [`Peer::handle`] (mailbox messages → raft), [`Peer::collect_ready`] (raft's output →
//! the round's write batch) and, once the batch is durable, [`Peer::after_persist`]
//! (committed entries → the apply loop).

use std::collections::VecDeque;
use std::sync::Arc;

use protobuf::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, ConfState,
    Entry, EntryType,
};
use raft::{RawNode, StateRole};

use super::hibernate::{self, Hibernation};
use super::leaders::LeaderBoard;
use super::msg::{
    GroupStatus, IndexReply, PeerChange, PeerMsg, ProposeReply, RaftError, ReadKind, ReadWaiter,
};
use super::payload;
use super::peer_storage::PeerStorage;
use super::shared::GroupShared;
use super::traits::GroupRaftWrite;
use super::transport::OutMessage;
use crate::ids::{GroupId, PeerId};
use crate::limits;
use crate::proto::v1::Command;

mod sleep;

/// Who waits for an entry to be applied.
#[derive(Debug)]
pub enum Replies {
    /// One reply per command packed into the entry, in order.
    Commands(Vec<ProposeReply>),
    Upgrade(IndexReply),
    Conf(IndexReply),
}

impl Replies {
    /// How many client commands wait on these replies.
    pub fn commands(&self) -> usize {
        match self {
            Replies::Commands(rs) => rs.len(),
            Replies::Upgrade(_) | Replies::Conf(_) => 0,
        }
    }

    /// Answers every waiter with `err`.
    pub fn fail(self, err: &RaftError) {
        match self {
            Replies::Commands(rs) => {
                for r in rs {
                    let _ = r.send(Err(err.clone()));
                }
            }
            Replies::Upgrade(r) | Replies::Conf(r) => {
                let _ = r.send(Err(err.clone()));
            }
        }
    }
}

/// A proposal that is in the log but not applied yet.
#[derive(Debug)]
pub struct PendingProposal {
    pub index: u64,
    pub term: u64,
    pub replies: Replies,
}

/// Committed entries for the apply loop, with the proposals they answer.
#[derive(Debug)]
pub struct Committed {
    /// A received snapshot to load before the entries: `(index, term)`.
    pub snapshot: Option<(u64, u64)>,
    pub entries: Vec<Entry>,
    pub proposals: Vec<PendingProposal>,
    /// The configuration after each membership change among `entries`, by index.
    pub confs: Vec<(u64, ConfState)>,
}

struct ReadBatch {
    ctx: u64,
    replies: Vec<ReadWaiter>,
}

pub struct Peer {
    pub group: GroupId,
    pub peer: PeerId,
    pub raw: RawNode<PeerStorage>,
    pub shared: Arc<GroupShared>,
    proposals: VecDeque<PendingProposal>,
    pending_commands: usize,
    read_batches: VecDeque<ReadBatch>,
    /// Reads that arrived before this leader committed an entry of its term; raft-rs
    /// drops a ReadIndex in that window, so they wait here (bounded by the mailbox).
    reads_before_commit: Vec<ReadWaiter>,
    reads_waiting_apply: VecDeque<(u64, ReadWaiter)>,
    next_read_ctx: u64,
    last_timestamp_ms: u64,
    applied: u64,
    compact_to: Option<(u64, u64)>,
    /// A snapshot persisted this round, handed to the apply loop after the sync.
    installing: Option<(u64, u64)>,
    /// This peer was removed from the group by the membership change at this index.
    removed_at: Option<u64>,
    leaders: Arc<LeaderBoard>,
    /// Messages to the transport, gathered over a round.
    pub outbox: Vec<OutMessage>,
    hib: Hibernation,
}

/// Commands gathered in one round, packed into as few entries as the limits allow.
#[derive(Default)]
struct CommandBatchBuilder {
    commands: Vec<Command>,
    replies: Vec<ProposeReply>,
    bytes: usize,
}

impl Peer {
    pub fn new(
        group: GroupId,
        peer: PeerId,
        raw: RawNode<PeerStorage>,
        shared: Arc<GroupShared>,
        leaders: Arc<LeaderBoard>,
    ) -> Self {
        let applied = shared.applied_index();
        let last_timestamp_ms = shared.snapshot().applied_timestamp_ms;
        Self {
            group,
            peer,
            raw,
            shared,
            proposals: VecDeque::new(),
            pending_commands: 0,
            read_batches: VecDeque::new(),
            reads_before_commit: Vec::new(),
            reads_waiting_apply: VecDeque::new(),
            next_read_ctx: 1,
            last_timestamp_ms,
            applied,
            compact_to: None,
            installing: None,
            removed_at: None,
            leaders,
            outbox: Vec::new(),
            hib: Hibernation::default(),
        }
    }

    /// True once this peer has applied its own removal from the group.
    pub fn is_removed(&self) -> bool {
        self.removed_at.is_some_and(|i| self.applied >= i)
    }

    /// False for a replica created by a leader's message that has no log or snapshot
    /// yet.
    pub fn is_initialized(&self) -> bool {
        self.raw.raft.raft_log.last_index() > 0
    }

    fn publish_leader(&self) {
        let raft = &self.raw.raft;
        let leader = (raft.leader_id != 0).then_some(PeerId(raft.leader_id));
        self.leaders.update(self.group, leader, raft.term);
    }

    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// Client commands proposed here and not applied yet.
    pub fn pending_commands(&self) -> usize {
        self.pending_commands
    }

    fn leader_hint(&self) -> Option<PeerId> {
        match self.raw.raft.leader_id {
            0 => None,
            id => Some(PeerId(id)),
        }
    }

    fn not_leader(&self) -> RaftError {
        RaftError::NotLeader {
            group: self.group,
            leader: self.leader_hint(),
        }
    }

    fn busy_reason(&self) -> Option<String> {
        if self.pending_commands >= limits::PENDING_PROPOSALS_MAX {
            return Some(format!(
                "{} proposals pending, limit {}",
                self.pending_commands,
                limits::PENDING_PROPOSALS_MAX
            ));
        }
        let lag = self
            .raw
            .raft
            .raft_log
            .committed
            .saturating_sub(self.applied);
        if lag > limits::APPLY_LAG_ENTRIES_MAX {
            return Some(format!(
                "{lag} committed entries not applied yet, limit {}",
                limits::APPLY_LAG_ENTRIES_MAX
            ));
        }
        None
    }

    /// Feeds one round's mailbox messages into raft. Returns a destroy request if one
    /// arrived (the store loop carries it out).
    pub fn handle(
        &mut self,
        msgs: Vec<PeerMsg>,
        now_ms: u64,
    ) -> Option<tokio::sync::oneshot::Sender<Result<(), RaftError>>> {
        let mut batch = CommandBatchBuilder::default();
        let mut reads: Vec<ReadWaiter> = Vec::new();
        let mut destroy = None;
        for msg in msgs {
            let wakes = match &msg {
                PeerMsg::Raft(m) => hibernate::wakes(m),
                PeerMsg::Status { .. } => false,
                _ => true,
            };
            if wakes {
                self.wake();
            }
            match msg {
                PeerMsg::Propose {
                    command,
                    request_id,
                    reply,
                } => {
                    if !self.is_leader() {
                        let _ = reply.send(Err(self.not_leader()));
                        continue;
                    }
                    if let Some(reason) = self.busy_reason() {
                        let _ = reply.send(Err(RaftError::Busy {
                            group: self.group,
                            reason,
                            retry_after_ms: limits::TICK_INTERVAL_MS,
                        }));
                        continue;
                    }
                    if batch.commands.len() >= limits::ENTRY_COMMANDS_MAX
                        || batch.bytes + command.len() > limits::ENTRY_BYTES_MAX
                    {
                        self.propose_commands(std::mem::take(&mut batch), now_ms);
                    }
                    batch.bytes += command.len();
                    batch.commands.push(Command {
                        data: command,
                        request_id,
                    });
                    batch.replies.push(reply);
                    self.pending_commands += 1;
                }
                PeerMsg::Read { kind, reply } => match kind {
                    ReadKind::Linearizable => reads.push(reply),
                    ReadKind::Lease => self.lease_read(reply),
                },
                PeerMsg::Upgrade { plugin, reply } => {
                    self.propose_commands(std::mem::take(&mut batch), now_ms);
                    if !self.is_leader() {
                        let _ = reply.send(Err(self.not_leader()));
                        continue;
                    }
                    let ts = self.next_timestamp(now_ms);
                    let data = payload::encode_upgrade(ts, plugin);
                    self.propose_raw(data, Replies::Upgrade(reply));
                }
                PeerMsg::Status { reply } => {
                    let _ = reply.send(self.status());
                }
                PeerMsg::Destroy { reply } => destroy = Some(reply),
                PeerMsg::ChangePeers { changes, reply } => {
                    self.propose_commands(std::mem::take(&mut batch), now_ms);
                    self.propose_conf(changes, reply);
                }
                PeerMsg::TransferLeader { peer, reply } => {
                    if !self.is_leader() {
                        let _ = reply.send(Err(self.not_leader()));
                    } else if !self.raw.store().conf_state().voters.contains(&peer.0) {
                        let _ = reply.send(Err(RaftError::Invalid(format!(
                            "peer {peer} is not a voter of group {}",
                            self.group
                        ))));
                    } else {
                        self.raw.transfer_leader(peer.0);
                        let _ = reply.send(Ok(()));
                    }
                }
                PeerMsg::ComputeDigest { reply } => {
                    self.propose_commands(std::mem::take(&mut batch), now_ms);
                    if !self.is_leader() {
                        let _ = reply.send(Err(self.not_leader()));
                        continue;
                    }
                    let ts = self.next_timestamp(now_ms);
                    self.propose_raw(payload::encode_digest(ts), Replies::Upgrade(reply));
                }
                PeerMsg::SetQuota { quota, reply } => {
                    self.propose_commands(std::mem::take(&mut batch), now_ms);
                    if !self.is_leader() {
                        let _ = reply.send(Err(self.not_leader()));
                        continue;
                    }
                    let ts = self.next_timestamp(now_ms);
                    self.propose_raw(payload::encode_quota(ts, quota), Replies::Upgrade(reply));
                }
                PeerMsg::Campaign => {
                    if !self.is_leader()
                        && let Err(e) = self.raw.campaign()
                    {
                        tracing::debug!(group = self.group.0, "campaign refused: {e}");
                    }
                }
                PeerMsg::Raft(m) => {
                    let (notice, from) = (hibernate::is_notice(&m), m.from);
                    if let Err(e) = self.raw.step(*m) {
                        tracing::debug!(group = self.group.0, "raft message ignored: {e}");
                    } else if notice && !self.is_leader() && self.raw.raft.leader_id == from {
                        self.hib.sleep();
                    }
                }
                PeerMsg::Unreachable { peer } => self.raw.report_unreachable(peer.0),
                PeerMsg::SnapshotStatus { peer, ok } => {
                    let status = if ok {
                        raft::SnapshotStatus::Finish
                    } else {
                        raft::SnapshotStatus::Failure
                    };
                    self.raw.report_snapshot(peer.0, status);
                }
            }
        }
        self.propose_commands(batch, now_ms);
        self.reads_before_commit.extend(reads);
        self.issue_reads();
        destroy
    }

    /// Turns waiting linearizable reads into one ReadIndex request, once this peer is a
    /// leader that has committed in its term.
    fn issue_reads(&mut self) {
        if self.reads_before_commit.is_empty() {
            return;
        }
        if !self.is_leader() {
            for r in self.reads_before_commit.drain(..) {
                r.fail(RaftError::NotLeader {
                    group: self.group,
                    leader: match self.raw.raft.leader_id {
                        0 => None,
                        id => Some(PeerId(id)),
                    },
                });
            }
            return;
        }
        if !self.raw.raft.commit_to_current_term() {
            return;
        }
        let ctx = self.next_read_ctx;
        self.next_read_ctx += 1;
        self.raw.read_index(ctx.to_be_bytes().to_vec());
        self.read_batches.push_back(ReadBatch {
            ctx,
            replies: std::mem::take(&mut self.reads_before_commit),
        });
    }

    fn propose_conf(&mut self, changes: Vec<PeerChange>, reply: IndexReply) {
        if !self.is_leader() {
            let _ = reply.send(Err(self.not_leader()));
            return;
        }
        if changes.is_empty() {
            let _ = reply.send(Err(RaftError::Invalid("no membership change given".into())));
            return;
        }
        let mut cc = ConfChangeV2::default();
        for c in &changes {
            let mut single = ConfChangeSingle::default();
            let (kind, peer) = match *c {
                PeerChange::AddVoter(p) => (ConfChangeType::AddNode, p),
                PeerChange::AddLearner(p) => (ConfChangeType::AddLearnerNode, p),
                PeerChange::Remove(p) => (ConfChangeType::RemoveNode, p),
            };
            single.set_change_type(kind);
            single.node_id = peer.0;
            cc.changes.push(single);
        }
        if changes.len() > 1 {
            // Joint consensus, left automatically once the joint config applies.
            cc.set_transition(ConfChangeTransition::Implicit);
        }
        let before = self.raw.raft.raft_log.last_index();
        match self.raw.propose_conf_change(Vec::new(), cc) {
            Ok(()) if self.raw.raft.raft_log.last_index() > before => {
                let index = self.raw.raft.raft_log.last_index();
                self.proposals.push_back(PendingProposal {
                    index,
                    term: self.raw.raft.term,
                    replies: Replies::Conf(reply),
                });
            }
            Ok(()) => {
                let _ = reply.send(Err(RaftError::Dropped("raft did not append it".into())));
            }
            Err(e) => {
                let _ = reply.send(Err(RaftError::Invalid(format!(
                    "membership change refused: {e}"
                ))));
            }
        }
    }

    fn next_timestamp(&mut self, now_ms: u64) -> u64 {
        self.last_timestamp_ms = self.last_timestamp_ms.max(now_ms);
        self.last_timestamp_ms
    }

    fn propose_commands(&mut self, batch: CommandBatchBuilder, now_ms: u64) {
        if batch.commands.is_empty() {
            return;
        }
        let ts = self.next_timestamp(now_ms);
        let data = payload::encode_commands(ts, batch.commands);
        self.propose_raw(data, Replies::Commands(batch.replies));
    }

    fn propose_raw(&mut self, data: Vec<u8>, replies: Replies) {
        let before = self.raw.raft.raft_log.last_index();
        match self.raw.propose(Vec::new(), data) {
            Ok(()) if self.raw.raft.raft_log.last_index() > before => {
                let index = self.raw.raft.raft_log.last_index();
                // After a re-election the log may have been overwritten from `index` on:
                // proposals pending there can no longer commit.
                while self.proposals.back().is_some_and(|p| p.index >= index) {
                    if let Some(stale) = self.proposals.pop_back() {
                        self.pending_commands = self
                            .pending_commands
                            .saturating_sub(stale.replies.commands());
                        stale.replies.fail(&RaftError::Dropped(
                            "its log position was overwritten by a new leader".into(),
                        ));
                    }
                }
                self.proposals.push_back(PendingProposal {
                    index,
                    term: self.raw.raft.term,
                    replies,
                });
            }
            Ok(()) => {
                self.pending_commands = self.pending_commands.saturating_sub(replies.commands());
                replies.fail(&RaftError::Dropped("raft did not append it".into()));
            }
            Err(e) => {
                self.pending_commands = self.pending_commands.saturating_sub(replies.commands());
                replies.fail(&RaftError::Dropped(e.to_string()));
            }
        }
    }

    fn lease_read(&mut self, reply: ReadWaiter) {
        // raft-rs keeps check-quorum on, so a leader steps down once it cannot hear a
        // quorum within an election timeout; a leader that has committed in its own term
        // knows every earlier write.
        // A leader that hibernated ran no check-quorum meanwhile: it asks a quorum
        // (ReadIndex) until it has ticked long enough to trust its lease again.
        if self.is_leader() && self.raw.raft.commit_to_current_term() && self.hib.lease_ready() {
            let index = self.raw.raft.raft_log.committed;
            self.wait_applied(index, reply);
        } else if self.is_leader() {
            self.reads_before_commit.push(reply);
        } else {
            reply.fail(self.not_leader());
        }
    }

    fn wait_applied(&mut self, index: u64, reply: ReadWaiter) {
        if self.applied >= index {
            reply.pass(index);
        } else {
            self.reads_waiting_apply.push_back((index, reply));
        }
    }

    /// Picks up what the apply loop published: advances raft's applied index, answers
    /// reads that were waiting for it and schedules log compaction.
    pub fn on_applied(&mut self) {
        let applied = self.shared.applied_index();
        if applied <= self.applied {
            return;
        }
        self.applied = applied;
        self.raw.advance_apply_to(applied);
        while self
            .reads_waiting_apply
            .front()
            .is_some_and(|(i, _)| *i <= applied)
        {
            if let Some((i, r)) = self.reads_waiting_apply.pop_front() {
                r.pass(i);
            }
        }
        let store = self.raw.store();
        let (truncated, _) = store.truncated();
        if applied > truncated + 2 * limits::LOG_RETAIN_ENTRIES {
            let to = applied - limits::LOG_RETAIN_ENTRIES;
            if let Ok(term) = raft::Storage::term(store, to) {
                self.compact_to = Some((to, term));
            }
        }
        self.raw.mut_store().trim_cache(applied);
    }

    /// Moves raft's output of this round into `out` (writes) and the outbox (messages
    /// that may leave before the sync). Returns the `Ready` to finish with
    /// [`Peer::after_persist`] once `out` is durable.
    pub fn collect_ready(&mut self, out: &mut Vec<GroupRaftWrite>) -> Option<raft::Ready> {
        if !self.raw.has_ready() && self.compact_to.is_none() {
            return None;
        }
        let compact_to = self.compact_to.take();
        let previous_truncated = self.raw.store().truncated().0;
        if !self.raw.has_ready() {
            if let Some((i, t)) = compact_to {
                self.raw.mut_store().compact_to(i, t);
            }
            out.push(GroupRaftWrite {
                group: self.group,
                compact_to,
                previous_truncated,
                ..Default::default()
            });
            return None;
        }
        let mut rd = self.raw.ready();
        if let Some(ss) = rd.ss() {
            if ss.raft_state != StateRole::Leader {
                // A ReadIndex a deposed leader never resolves must not wait forever.
                let err = self.not_leader();
                for b in self.read_batches.drain(..) {
                    for r in b.replies {
                        r.fail(err.clone());
                    }
                }
            }
            self.publish_leader();
        } else if rd.hs().is_some() {
            self.publish_leader();
        }
        // A leader's messages may go out before its own log is durable (raft-rs's
        // contract); followers' answers wait for the sync (`persisted_messages`).
        for m in rd.take_messages() {
            self.outbox.push(OutMessage::new(self.group, m));
        }
        for rs in rd.take_read_states() {
            let ctx = rs
                .request_ctx
                .as_slice()
                .try_into()
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            while let Some(front) = self.read_batches.front() {
                if front.ctx > ctx {
                    break;
                }
                let Some(batch) = self.read_batches.pop_front() else {
                    break;
                };
                for r in batch.replies {
                    self.wait_applied(rs.index, r);
                }
            }
        }
        let mut snapshot = None;
        let mut compact_to = compact_to;
        if !rd.snapshot().is_empty() {
            let snap = rd.snapshot().clone();
            let meta = snap.get_metadata();
            snapshot = Some((meta.index, meta.term));
            self.installing = snapshot;
            self.raw.mut_store().apply_snapshot(&snap);
            // The snapshot drops the whole log; a compaction planned before it is moot.
            compact_to = None;
        }
        let entries = rd.take_entries();
        let store = self.raw.mut_store();
        let previous_last_index = if snapshot.is_some() {
            store.truncated().0
        } else {
            store.last_index()
        };
        store.append(&entries);
        let hard_state = rd.hs().cloned();
        // etcd's MustSync rule: new entries, a snapshot, or a new term or vote must be
        // durable before anyone hears of them; a higher commit index alone need not be
        // (after a crash it is learned again from the leader).
        let previous = store.hard_state();
        let new_vote = hard_state
            .as_ref()
            .is_some_and(|hs| hs.term != previous.term || hs.vote != previous.vote);
        let must_sync = !entries.is_empty() || snapshot.is_some() || new_vote;
        if let Some(hs) = &hard_state {
            store.set_hard_state(hs.clone());
        }
        // Nor is it written at all (the Raft paper keeps the commit index volatile):
        // loading a group takes its applied index as the floor of the commit index, and
        // raft learns the rest from the leader. Under load every round of a group moves
        // the commit index, so writing it cost one storage insert per group and round.
        let hard_state = hard_state.filter(|_| new_vote);
        if let Some((i, t)) = compact_to {
            store.compact_to(i, t);
        }
        if !entries.is_empty() || hard_state.is_some() || compact_to.is_some() || snapshot.is_some()
        {
            out.push(GroupRaftWrite {
                group: self.group,
                entries,
                previous_last_index,
                hard_state,
                conf_state: None,
                compact_to,
                must_sync,
                previous_truncated,
                snapshot,
            });
        }
        Some(rd)
    }

    /// Finishes a ready whose writes are durable: advances raft, queues the messages
    /// that had to wait for the sync, applies membership changes to raft, and returns
    /// what is committed with the proposals it answers.
    pub fn after_persist(&mut self, mut rd: raft::Ready) -> Option<Committed> {
        for m in rd.take_persisted_messages() {
            self.outbox.push(OutMessage::new(self.group, m));
        }
        let mut entries = rd.take_committed_entries();
        // `advance_append`, not `advance`: apply runs elsewhere and reports back through
        // `on_applied`, which calls `advance_apply_to`.
        let mut light = self.raw.advance_append(rd);
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().set_commit(commit);
        }
        for m in light.take_messages() {
            self.outbox.push(OutMessage::new(self.group, m));
        }
        entries.extend(light.take_committed_entries());
        self.issue_reads();
        let snapshot = self.installing.take();
        let confs = self.apply_conf_changes(&entries);
        let Some(last) = entries.last().map(|e| e.index) else {
            return snapshot.map(|snapshot| Committed {
                snapshot: Some(snapshot),
                entries: Vec::new(),
                proposals: Vec::new(),
                confs: Vec::new(),
            });
        };
        let mut proposals = Vec::new();
        while self.proposals.front().is_some_and(|p| p.index <= last) {
            if let Some(p) = self.proposals.pop_front() {
                self.pending_commands = self.pending_commands.saturating_sub(p.replies.commands());
                proposals.push(p);
            }
        }
        Some(Committed {
            snapshot,
            entries,
            proposals,
            confs,
        })
    }

    /// Membership changes take effect in raft once committed (raft-rs tracks at most one
    /// pending change); the resulting configuration is stored with the apply state at
    /// the change's index, so a restart replays later changes from the right base.
    fn apply_conf_changes(&mut self, entries: &[Entry]) -> Vec<(u64, ConfState)> {
        let mut confs = Vec::new();
        for e in entries {
            let cc = match e.get_entry_type() {
                EntryType::EntryConfChangeV2 => ConfChangeV2::parse_from_bytes(&e.data),
                EntryType::EntryConfChange => ConfChange::parse_from_bytes(&e.data).map(|c| {
                    let mut single = ConfChangeSingle::default();
                    single.set_change_type(c.get_change_type());
                    single.node_id = c.node_id;
                    let mut v2 = ConfChangeV2::default();
                    v2.changes.push(single);
                    v2
                }),
                EntryType::EntryNormal => continue,
            };
            let cc = match cc {
                Ok(cc) => cc,
                Err(err) => {
                    tracing::error!(
                        group = self.group.0,
                        index = e.index,
                        "undecodable membership change: {err}"
                    );
                    continue;
                }
            };
            match self.raw.apply_conf_change(&cc) {
                Ok(cs) => {
                    let me = self.peer.0;
                    let member = cs.voters.contains(&me)
                        || cs.learners.contains(&me)
                        || cs.voters_outgoing.contains(&me)
                        || cs.learners_next.contains(&me);
                    if !member {
                        self.removed_at = Some(e.index);
                    }
                    tracing::info!(group = self.group.0, index = e.index, voters = ?cs.voters, learners = ?cs.learners, outgoing = ?cs.voters_outgoing, "membership changed");
                    self.raw.mut_store().set_conf_state(cs.clone());
                    confs.push((e.index, cs));
                }
                Err(err) => {
                    tracing::warn!(
                        group = self.group.0,
                        index = e.index,
                        "membership change rejected by raft: {err}"
                    );
                }
            }
        }
        confs
    }

    pub fn status(&self) -> GroupStatus {
        let raft = &self.raw.raft;
        let store = self.raw.store();
        GroupStatus {
            group: self.group,
            peer: self.peer,
            role: format!("{:?}", raft.state),
            term: raft.term,
            leader: self.leader_hint(),
            commit_index: raft.raft_log.committed,
            applied_index: self.applied,
            first_index: store.first_index(),
            last_index: store.last_index(),
            pending_proposals: self.pending_commands as u64,
            hibernating: self.hib.is_hibernating(),
            voters: store.conf_state().voters.clone(),
            learners: store.conf_state().learners.clone(),
            progress: if self.is_leader() {
                let mut p: Vec<(u64, u64)> = raft
                    .prs()
                    .iter()
                    .map(|(id, pr)| (*id, pr.matched))
                    .collect();
                p.sort_unstable();
                p
            } else {
                Vec::new()
            },
        }
    }

    /// Answers everything still waiting with `err` (the peer is going away).
    pub fn fail_all(&mut self, err: &RaftError) {
        for p in self.proposals.drain(..) {
            p.replies.fail(err);
        }
        self.pending_commands = 0;
        for b in self.read_batches.drain(..) {
            for r in b.replies {
                r.fail(err.clone());
            }
        }
        for r in self.reads_before_commit.drain(..) {
            r.fail(err.clone());
        }
        for (_, r) in self.reads_waiting_apply.drain(..) {
            r.fail(err.clone());
        }
    }
}
