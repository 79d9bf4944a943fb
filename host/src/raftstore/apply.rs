//! The apply loop: runs committed entries through the group's state machine off the
//! raft loop, commits each entry's state changes together with its applied index in one
//! batch, answers the proposals, and publishes the new applied state.

use std::sync::Arc;

use crossbeam_channel::Receiver;
use raft::eraftpb::{Entry, EntryType};
use tokio::sync::oneshot;

use super::FatalHandler;
use super::fsm::{CommandOutcome, EntryContext, FsmError, KvView, StateMachineHost, WriteSet};
use super::msg::{Proposed, RaftError};
use super::payload::{self, Payload};
use super::peer::{Committed, PendingProposal, Replies};
use super::router::Router;
use super::shared::GroupShared;
use super::traits::{ApplyState, ApplyStore};
use super::{dedup, digest};
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

/// What applying one entry produced for its proposers.
enum Outcome {
    Commands(Vec<Result<Vec<u8>, FsmError>>),
    Upgraded,
    ConfChanged,
    Nothing,
}

impl ApplyLoop {
    /// Runs until every sender of `rx` is gone.
    pub fn run(self, rx: Receiver<ApplyTask>) {
        while let Ok(task) = rx.recv() {
            match task {
                ApplyTask::Entries {
                    group,
                    shared,
                    committed,
                } => {
                    let started = std::time::Instant::now();
                    self.apply(group, &shared, committed);
                    self.metrics
                        .apply_duration
                        .observe(started.elapsed().as_secs_f64());
                }
                ApplyTask::Destroy {
                    group,
                    reply,
                    tombstone,
                } => {
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
    }

    fn apply(&self, group: GroupId, shared: &GroupShared, committed: Committed) {
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
        let (mut entries_applied, mut commands_applied) = (0u64, 0u64);
        let mut confs = committed.confs.into_iter().peekable();
        let mut proposals = committed.proposals.into_iter().peekable();
        for entry in committed.entries {
            if shared.is_destroyed() {
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
            let Some((writes, outcome)) = self.run_entry(group, &entry, &mut state) else {
                // Fatal: nothing of this entry is committed or answered.
                return;
            };
            state.applied_index = entry.index;
            state.applied_term = entry.term;
            while confs.next_if(|(i, _)| *i < entry.index).is_some() {}
            let conf = confs.next_if(|(i, _)| *i == entry.index).map(|(_, cs)| cs);
            if let Err(e) = self.store.commit_apply(group, writes, state, conf.as_ref()) {
                (self.fatal)(&format!("apply of group {group} at {}: {e}", entry.index));
                return;
            }
            shared.publish(state);
            entries_applied += 1;
            if let Outcome::Commands(outcomes) = &outcome {
                commands_applied += outcomes.len() as u64;
            }
            if let Some(p) = mine {
                answer(p, entry.index, outcome);
            }
        }
        self.metrics.entries_applied.inc_by(entries_applied);
        self.metrics.commands_applied.inc_by(commands_applied);
        for p in proposals {
            p.replies
                .fail(&RaftError::Dropped("its entry was not applied".into()));
        }
        self.router.notify(group);
    }

    fn run_entry(
        &self,
        group: GroupId,
        entry: &Entry,
        state: &mut ApplyState,
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
            Ok(Payload::Digest { timestamp_ms }) => {
                state.applied_timestamp_ms = state.applied_timestamp_ms.max(timestamp_ms);
                match digest::compute(&*self.store, group, state.plugin) {
                    Ok((hash, pairs)) => {
                        tracing::info!(group = group.0, index = entry.index, pairs, digest = %hex::encode(hash), "state digest");
                        let mut writes = WriteSet::new();
                        if let Err(e) =
                            digest::record(&*self.store, &mut writes, group, entry.index, hash)
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
                let reader = self.store.clone();
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
                let view = KvView::for_apply(reader.clone(), group);
                let (view, ran) = self.fsm.apply_entry(state.plugin, ctx, &cmds, view);
                if let Some(Err(e)) = ran
                    .iter()
                    .find(|o| matches!(o, Err(FsmError::Storage(_) | FsmError::HostFault(_))))
                {
                    (self.fatal)(&format!("group {group} at {}: {e}", entry.index));
                    return None;
                }
                let ts = state.applied_timestamp_ms;
                for (&i, o) in run.iter().zip(&ran) {
                    if !commands[i].request_id.is_empty() {
                        dedup::record(&mut host_writes, ts, &commands[i].request_id, o);
                    }
                    recorded[i] = Some(o.clone());
                }
                for i in 0..commands.len() {
                    if let Some(j) = copy_of[i] {
                        recorded[i] = recorded[j].clone();
                    }
                }
                if let Err(e) = dedup::expire(&*reader, &mut host_writes, group, ts) {
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

fn answer(p: PendingProposal, index: u64, outcome: Outcome) {
    match (p.replies, outcome) {
        (Replies::Commands(replies), Outcome::Commands(outcomes)) => {
            let mut outcomes = outcomes.into_iter();
            for r in replies {
                let result = match outcomes.next() {
                    Some(Ok(output)) => Ok(Proposed { index, output }),
                    Some(Err(e)) => Err(RaftError::Fsm(e)),
                    None => Err(RaftError::Dropped("no outcome for the command".into())),
                };
                let _ = r.send(result);
            }
        }
        (Replies::Upgrade(r), Outcome::Upgraded) | (Replies::Conf(r), Outcome::ConfChanged) => {
            let _ = r.send(Ok(index));
        }
        (replies, _) => {
            replies.fail(&RaftError::Dropped(
                "the entry at its index carried something else".into(),
            ));
        }
    }
}
