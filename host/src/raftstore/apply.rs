//! The apply loop: runs committed entries through the group's state machine off the
//! raft loop, commits the state changes of a run of entries together with the applied
//! index of the last one (later entries read the earlier ones' writes through
//! [`PendingKv`]), then answers their proposals and publishes the new applied state.
//!
//! Commits are grouped across groups: the loop takes every task already queued (a
//! [`Round`]), applies each group's entries, and commits all of their changes in one
//! storage batch, at most [`APPLY_BATCH_ENTRIES_MAX`] entries or
//! [`APPLY_BATCH_BYTES_MAX`] bytes at a time. A group that shows up twice in the queue
//! ends the round first, so a group never reads its own uncommitted state through the
//! store. One storage commit per entry, and then one per group, were costs of the write
//! path in turn (issue 5's profile).
//!
//! Each entry of commands is held to the group's storage quota ([`quota`]); the usage
//! record is written with the entry when it changes. A panic in host code while
//! applying an entry is caught and becomes the entry's outcome (its commands rejected
//! with [`FsmError::HostPanic`], nothing written): the same entry panics the same way on
//! every replica, so they stay identical, and a restart does not replay it into a crash
//! loop. Storage errors stay fatal (fail-stop).

use std::sync::Arc;

use crossbeam_channel::Receiver;
use raft::eraftpb::{Entry, EntryType};
use tokio::sync::oneshot;

use super::FatalHandler;
use super::fsm::{CommandOutcome, EntryContext, FsmError, KvView, StateMachineHost, WriteSet};
use super::msg::{Proposed, RaftError};
use super::payload::{self, Payload};
use super::peer::{Committed, PendingProposal, Replies};
use super::pending_kv::PendingKv;
use super::router::Router;
use super::shared::GroupShared;
use super::traits::{ApplyState, ApplyStore, GroupApply};
use super::{dedup, digest, quota};
use crate::ids::GroupId;
use crate::metrics::RaftMetrics;

/// Work for the apply loop, in the order the store loop produced it.
pub enum ApplyTask {
    Entries {
        group: GroupId,
        shared: Arc<GroupShared>,
        committed: Committed,
    },
    Destroy {
        group: GroupId,
        reply: Option<oneshot::Sender<Result<(), RaftError>>>,
        /// The removed peer's id, when a membership change removed it.
        tombstone: Option<u64>,
    },
}

pub struct ApplyLoop {
    pub store: Arc<dyn ApplyStore>,
    pub fsm: Arc<dyn StateMachineHost>,
    pub router: Arc<Router>,
    pub fatal: FatalHandler,
    pub metrics: RaftMetrics,
}

/// Entries applied before one storage commit, at most.
pub const APPLY_BATCH_ENTRIES_MAX: usize = 256;
/// Bytes of buffered writes before a storage commit, about.
pub const APPLY_BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Applied entries of one group not committed to storage yet.
struct Batch {
    writes: Arc<parking_lot::RwLock<WriteSet>>,
    bytes: usize,
    state: Option<ApplyState>,
    conf: Option<raft::eraftpb::ConfState>,
    answers: Vec<(PendingProposal, u64, GroupId, Outcome)>,
    entries: u64,
    commands: u64,
}

impl Batch {
    fn new() -> Self {
        Self {
            writes: Arc::default(),
            bytes: 0,
            state: None,
            conf: None,
            answers: Vec::new(),
            entries: 0,
            commands: 0,
        }
    }

    fn full(&self) -> bool {
        self.entries as usize >= APPLY_BATCH_ENTRIES_MAX || self.bytes >= APPLY_BATCH_BYTES_MAX
    }
}

/// One group's applied, not yet committed work in a [`Round`].
struct Done {
    group: GroupId,
    shared: Arc<GroupShared>,
    batch: Batch,
    /// Proposals whose entries were not applied, failed once the round is committed.
    unapplied: Vec<PendingProposal>,
    /// Whether this ends the group's task (the store loop is told after the commit).
    last: bool,
}

/// Groups applied since the last storage commit.
#[derive(Default)]
struct Round {
    done: Vec<Done>,
    entries: usize,
    bytes: usize,
    started: Option<std::time::Instant>,
}

impl Round {
    fn holds(&self, group: GroupId) -> bool {
        self.done.iter().any(|d| d.group == group)
    }

    fn push(&mut self, done: Done) {
        self.entries += done.batch.entries as usize;
        self.bytes += done.batch.bytes;
        self.done.push(done);
    }

    fn full(&self) -> bool {
        self.entries >= APPLY_BATCH_ENTRIES_MAX
            || self.bytes >= APPLY_BATCH_BYTES_MAX
            || self.done.len() >= APPLY_BATCH_ENTRIES_MAX
    }
}

/// What applying one entry produced for its proposers.
enum Outcome {
    Commands(Vec<Result<Vec<u8>, FsmError>>),
    Upgraded,
    ConfChanged,
    Nothing,
    /// Host code panicked applying the entry; it changed nothing (see `contain_panic`).
    Failed(FsmError),
}

impl ApplyLoop {
    /// Runs until every sender of `rx` is gone.
    pub fn run(self, rx: Receiver<ApplyTask>) {
        let mut round = Round::default();
        while let Ok(first) = rx.recv() {
            let mut next = Some(first);
            while let Some(task) = next.take() {
                self.run_task(task, &mut round);
                if !round.full() {
                    next = rx.try_recv().ok();
                }
            }
            self.flush(&mut round);
        }
    }

    fn run_task(&self, task: ApplyTask, round: &mut Round) {
        match task {
            ApplyTask::Entries {
                group,
                shared,
                committed,
            } => {
                if round.holds(group) {
                    self.flush(round);
                }
                round.started.get_or_insert_with(std::time::Instant::now);
                self.apply(group, shared, committed, round);
                if round.full() {
                    self.flush(round);
                }
            }
            ApplyTask::Destroy {
                group,
                reply,
                tombstone,
            } => {
                self.flush(round);
                let result = self.store.destroy_group(group, tombstone);
                self.router.destroyed(group);
                if let Err(e) = &result {
                    (self.fatal)(&format!("cannot destroy group {group}: {e}"));
                }
                if let Some(reply) = reply {
                    let _ = reply.send(result.map_err(|e| RaftError::Invalid(e.to_string())));
                }
            }
        }
    }

    fn apply(
        &self,
        group: GroupId,
        shared: Arc<GroupShared>,
        committed: Committed,
        round: &mut Round,
    ) {
        if let Some((index, term)) = committed.snapshot {
            if shared.is_destroyed() {
                return;
            }
            match self.store.install_snapshot(group, index, term) {
                Ok(info) => {
                    tracing::info!(
                        group = group.0,
                        index,
                        bytes = info.file_size_bytes,
                        "snapshot installed"
                    );
                    shared.publish(info.state);
                }
                Err(e) => {
                    (self.fatal)(&format!(
                        "cannot install the snapshot of group {group} at {index}: {e}"
                    ));
                    return;
                }
            }
        }
        let mut state = shared.snapshot();
        let mut confs = committed.confs.into_iter().peekable();
        let mut proposals = committed.proposals.into_iter().peekable();
        let mut batch = Batch::new();
        for entry in committed.entries {
            if shared.is_destroyed() {
                // Nothing more of a destroyed group reaches storage.
                batch = Batch::new();
                break;
            }
            let mut mine = None;
            while let Some(p) = proposals.next_if(|p| p.index <= entry.index) {
                if p.index == entry.index && p.term == entry.term {
                    mine = Some(p);
                } else {
                    p.replies.fail(&RaftError::Dropped(
                        "leadership changed before it committed".into(),
                    ));
                }
            }
            if entry.index <= state.applied_index {
                continue;
            }
            let reader: Arc<dyn super::fsm::KvReader> = Arc::new(PendingKv::new(
                self.store.clone(),
                group,
                batch.writes.clone(),
            ));
            let before = state;
            let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.run_entry(group, &entry, &mut state, reader)
            }));
            let (writes, outcome) = match attempt {
                Ok(Some(done)) => done,
                // Fatal: nothing of this group's task is committed or answered.
                Ok(None) => return,
                Err(panic) => {
                    state = before;
                    self.contain_panic(group, &entry, &*panic)
                }
            };
            state.applied_index = entry.index;
            state.applied_term = entry.term;
            while confs.next_if(|(i, _)| *i < entry.index).is_some() {}
            if let Some((_, cs)) = confs.next_if(|(i, _)| *i == entry.index) {
                batch.conf = Some(cs);
            }
            batch.bytes += writes
                .iter()
                .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
                .sum::<usize>();
            batch.writes.write().extend(writes);
            batch.state = Some(state);
            batch.entries += 1;
            if let Outcome::Commands(outcomes) = &outcome {
                batch.commands += outcomes.len() as u64;
            }
            if let Some(p) = mine {
                batch.answers.push((p, entry.index, group, outcome));
            }
            if batch.full() {
                round.push(Done {
                    group,
                    shared: shared.clone(),
                    batch: std::mem::replace(&mut batch, Batch::new()),
                    unapplied: Vec::new(),
                    last: false,
                });
                self.flush(round);
            }
        }
        round.push(Done {
            group,
            shared,
            batch,
            unapplied: proposals.collect(),
            last: true,
        });
    }

    /// Commits every group of the round in one storage batch, then publishes their
    /// states and answers their proposals. On a fatal storage error nothing is answered.
    fn flush(&self, round: &mut Round) {
        let Round {
            mut done, started, ..
        } = std::mem::take(round);
        if done.is_empty() {
            return;
        }
        let applies: Vec<GroupApply> = done
            .iter_mut()
            .filter_map(|d| {
                let state = d.batch.state?;
                Some(GroupApply {
                    group: d.group,
                    writes: std::mem::take(&mut *d.batch.writes.write()),
                    state,
                    conf: d.batch.conf.take(),
                })
            })
            .collect();
        if !applies.is_empty()
            && let Err(e) = self.store.commit_applies(applies)
        {
            (self.fatal)(&format!("apply of {} group(s): {e}", done.len()));
            return;
        }
        for d in done {
            if let Some(state) = d.batch.state {
                d.shared.publish(state);
            }
            for (p, index, group, outcome) in d.batch.answers {
                answer(p, index, group, outcome);
            }
            self.metrics.entries_applied.inc_by(d.batch.entries);
            self.metrics.commands_applied.inc_by(d.batch.commands);
            for p in d.unapplied {
                p.replies
                    .fail(&RaftError::Dropped("its entry was not applied".into()));
            }
            if d.last {
                self.router.notify(d.group);
            }
        }
        if let Some(started) = started {
            self.metrics
                .apply_duration
                .observe(started.elapsed().as_secs_f64());
        }
    }

    /// The outcome of an entry whose host code panicked: no writes, and every proposer
    /// gets [`FsmError::HostPanic`]. The same entry panics the same way on every replica
    /// (host code is deterministic over the log and the state), so all replicas reach
    /// this outcome at this index and stay identical, and a restart does not replay the
    /// panic into a crash loop.
    fn contain_panic(
        &self,
        group: GroupId,
        entry: &Entry,
        panic: &(dyn std::any::Any + Send),
    ) -> (WriteSet, Outcome) {
        let why = super::panic_message(panic);
        self.metrics.host_panics.inc();
        tracing::error!(
            group = group.0,
            index = entry.index,
            "host code panicked applying this entry: {why}; its commands are rejected \
             (on every replica) and the node goes on"
        );
        let error = FsmError::HostPanic(why.to_owned());
        let outcome = match payload::decode(&entry.data) {
            Ok(Payload::Commands { commands, .. }) => {
                Outcome::Commands(commands.iter().map(|_| Err(error.clone())).collect())
            }
            _ => Outcome::Failed(error),
        };
        (WriteSet::new(), outcome)
    }

    fn run_entry(
        &self,
        group: GroupId,
        entry: &Entry,
        state: &mut ApplyState,
        reader: Arc<dyn super::fsm::KvReader>,
    ) -> Option<(WriteSet, Outcome)> {
        if entry.get_entry_type() != EntryType::EntryNormal {
            return Some((WriteSet::new(), Outcome::ConfChanged));
        }
        if entry.data.is_empty() {
            return Some((WriteSet::new(), Outcome::Nothing));
        }
        match payload::decode(&entry.data) {
            Err(e) => {
                tracing::error!(group = group.0, index = entry.index, "skipping entry: {e}");
                Some((WriteSet::new(), Outcome::Nothing))
            }
            Ok(Payload::Upgrade {
                timestamp_ms,
                plugin,
            }) => {
                tracing::info!(group = group.0, index = entry.index, %plugin, "group switches plugin");
                state.plugin = plugin;
                state.applied_timestamp_ms = state.applied_timestamp_ms.max(timestamp_ms);
                Some((WriteSet::new(), Outcome::Upgraded))
            }
            Ok(Payload::Quota {
                timestamp_ms,
                quota,
            }) => {
                state.applied_timestamp_ms = state.applied_timestamp_ms.max(timestamp_ms);
                match quota::load(&*reader, group) {
                    Ok((account, _)) => {
                        tracing::info!(
                            group = group.0,
                            index = entry.index,
                            keys_max = quota.keys_max,
                            bytes_max = quota.bytes_max,
                            "group quota set"
                        );
                        let mut writes = WriteSet::new();
                        quota::record(&mut writes, &quota::Account { quota, ..account });
                        Some((writes, Outcome::Upgraded))
                    }
                    Err(e) => {
                        (self.fatal)(&format!("group {group} at {}: {e}", entry.index));
                        None
                    }
                }
            }
            Ok(Payload::Digest { timestamp_ms }) => {
                state.applied_timestamp_ms = state.applied_timestamp_ms.max(timestamp_ms);
                match digest::compute(&*reader, group, state.plugin) {
                    Ok((hash, pairs)) => {
                        tracing::info!(group = group.0, index = entry.index, pairs, digest = %hex::encode(hash), "state digest");
                        let mut writes = WriteSet::new();
                        if let Err(e) =
                            digest::record(&*reader, &mut writes, group, entry.index, hash)
                        {
                            (self.fatal)(&format!("group {group} at {}: {e}", entry.index));
                            return None;
                        }
                        Some((writes, Outcome::Upgraded))
                    }
                    Err(e) => {
                        (self.fatal)(&format!("group {group} at {}: {e}", entry.index));
                        None
                    }
                }
            }
            Ok(Payload::Commands {
                timestamp_ms,
                commands,
            }) => {
                let previous_ms = state.applied_timestamp_ms;
                state.applied_timestamp_ms = state.applied_timestamp_ms.max(timestamp_ms);
                let ctx = EntryContext {
                    group,
                    index: entry.index,
                    term: entry.term,
                    timestamp_ms: state.applied_timestamp_ms,
                    random_seed: EntryContext::seed_for(group, entry.index),
                };
                // Commands with a request id seen before get their recorded outcome;
                // a repeat inside this entry gets the outcome of its first copy.
                let mut host_writes = WriteSet::new();
                let mut recorded: Vec<Option<CommandOutcome>> = vec![None; commands.len()];
                let mut copy_of: Vec<Option<usize>> = vec![None; commands.len()];
                let mut run: Vec<usize> = Vec::new();
                for (i, c) in commands.iter().enumerate() {
                    if !c.request_id.is_empty() {
                        match dedup::lookup(&*reader, &host_writes, group, &c.request_id) {
                            Ok(Some(o)) => {
                                recorded[i] = Some(o);
                                continue;
                            }
                            Ok(None) => {}
                            Err(e) => {
                                (self.fatal)(&format!("group {group} at {}: {e}", entry.index));
                                return None;
                            }
                        }
                        if let Some(&j) = run
                            .iter()
                            .find(|&&j| commands[j].request_id == c.request_id)
                        {
                            copy_of[i] = Some(j);
                            continue;
                        }
                    }
                    run.push(i);
                }
                let cmds: Vec<&[u8]> = run.iter().map(|&i| commands[i].data.as_slice()).collect();
                let mut view = KvView::for_apply(reader.clone(), group);
                let mut loaded = None;
                if self.fsm.has_quota(state.plugin) {
                    match quota::load(&*reader, group) {
                        Ok((account, counted)) => {
                            view = view.with_account(account);
                            loaded = Some((account, counted));
                        }
                        Err(e) => {
                            (self.fatal)(&format!("group {group} at {}: {e}", entry.index));
                            return None;
                        }
                    }
                }
                let (view, ran) = self.fsm.apply_entry(state.plugin, ctx, &cmds, view);
                if let (Some((account, counted)), Some(after)) = (loaded, view.account())
                    && (counted || after != account)
                {
                    quota::record(&mut host_writes, &after);
                }
                if let Some(Err(e)) = ran
                    .iter()
                    .find(|o| matches!(o, Err(FsmError::Storage(_) | FsmError::HostFault(_))))
                {
                    (self.fatal)(&format!("group {group} at {}: {e}", entry.index));
                    return None;
                }
                let ts = state.applied_timestamp_ms;
                for (&i, o) in run.iter().zip(&ran) {
                    // A command that did not run leaves no record: its retry must run.
                    if !commands[i].request_id.is_empty() && !matches!(o, Err(FsmError::NotRun(_)))
                    {
                        dedup::record(&mut host_writes, ts, &commands[i].request_id, o);
                    }
                    recorded[i] = Some(o.clone());
                }
                for i in 0..commands.len() {
                    if let Some(j) = copy_of[i] {
                        recorded[i] = recorded[j].clone();
                    }
                }
                let records = commands.iter().any(|c| !c.request_id.is_empty());
                if dedup::expiry_due(records, previous_ms, ts)
                    && let Err(e) = dedup::expire(&*reader, &mut host_writes, group, ts)
                {
                    (self.fatal)(&format!("group {group} at {}: {e}", entry.index));
                    return None;
                }
                let outcomes: Vec<CommandOutcome> = recorded
                    .into_iter()
                    .map(|o| o.unwrap_or_else(|| Err(FsmError::Rejected("no outcome".into()))))
                    .collect();
                let mut writes = view.into_writes();
                writes.extend(host_writes);
                Some((writes, Outcome::Commands(outcomes)))
            }
        }
    }
}

fn answer(p: PendingProposal, index: u64, group: GroupId, outcome: Outcome) {
    match (p.replies, outcome) {
        (Replies::Commands(replies), Outcome::Commands(outcomes)) => {
            let mut outcomes = outcomes.into_iter();
            for r in replies {
                let result = match outcomes.next() {
                    Some(Ok(output)) => Ok(Proposed { index, output }),
                    // Backpressure on this group's own clients: the command changed
                    // nothing and may be sent again.
                    Some(Err(FsmError::NotRun(reason))) => Err(RaftError::Busy {
                        group,
                        reason: format!("the command did not run: {reason}"),
                        retry_after_ms: crate::limits::TICK_INTERVAL_MS,
                    }),
                    Some(Err(e)) => Err(RaftError::Fsm(e)),
                    None => Err(RaftError::Dropped("no outcome for the command".into())),
                };
                let _ = r.send(result);
            }
        }
        (Replies::Upgrade(r), Outcome::Upgraded) | (Replies::Conf(r), Outcome::ConfChanged) => {
            let _ = r.send(Ok(index));
        }
        (replies, Outcome::Failed(error)) => replies.fail(&RaftError::Fsm(error)),
        (replies, _) => {
            replies.fail(&RaftError::Dropped(
                "the entry at its index carried something else".into(),
            ));
        }
    }
}
