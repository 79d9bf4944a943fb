//! The [`World`]'s safety checks: after every node's round, committed entries never
//! change, there is at most one leader per term and group, replicas at the same applied
//! index hold identical state and the bank conserves money; at the end, the recorded
//! client histories must be linearizable and no write answered `Dropped` may have taken
//! effect.

use std::collections::BTreeSet;

use flotilla_tests::linearizability::{
    BankModel, CheckOptions, CheckResult, KvModel, KvOutput, check_with,
};
use raft::StateRole;

use super::{BANK, BankOp, KvOp, World};
use crate::ids::GroupId;
use crate::raftstore::fsm::KvReader;
use crate::raftstore::sim::fsm::{ACCOUNTS, INITIAL, account_key, balance_of};
use crate::raftstore::sim::node::StepOutput;
use crate::raftstore::sim::rng::Fnv;
use crate::raftstore::traits::ApplyStore;

impl World {
    pub(super) fn observe(&mut self, i: usize, out: StepOutput) {
        let node_id = self.nodes[i].id;
        for why in out.fatal {
            self.violation(format!("node {node_id} hit a fatal error: {why}"));
        }
        for (group, index, term, hash) in out.committed {
            self.stats.entries_checked += 1;
            match self.committed.get(&(group, index)) {
                None => {
                    if hash.is_some() {
                        self.committed.insert((group, index), (term, hash, node_id));
                    }
                }
                Some(&(t, h, by)) => {
                    if t != term || (hash.is_some() && h != hash) {
                        self.violation(format!(
                            "group {group} committed index {index} differently: term {t} \
                             hash {h:?} on node {by}, term {term} hash {hash:?} on node {node_id}"
                        ));
                    }
                }
            }
        }
        self.send_out(i, out.messages);

        // Election safety, the replica records, and state at each applied index.
        let mut leaders = Vec::new();
        let mut groups = Vec::new();
        if let Some(live) = &self.nodes[i].live {
            for (g, (peer, _)) in &live.store_loop.peers {
                groups.push((*g, peer.peer));
                let raft = &peer.raw.raft;
                if raft.state == StateRole::Leader {
                    leaders.push((*g, raft.term, peer.peer));
                }
            }
        } else {
            return;
        }
        groups.sort_unstable();
        leaders.sort_unstable();
        for (g, term, peer) in leaders {
            match self.leaders.get(&(g, term)) {
                None => {
                    self.stats.leaders += 1;
                    self.trace.u64(peer.0 ^ term);
                    self.leaders.insert((g, term), peer);
                }
                Some(p) if *p != peer => {
                    let p = *p;
                    self.violation(format!(
                        "group {g} has two leaders in term {term}: {p} and {peer}"
                    ));
                }
                Some(_) => {}
            }
        }
        self.nodes[i].replicas = groups.iter().copied().collect();
        for (g, _) in groups {
            self.check_state(i, g);
        }
    }

    /// Replicas at the same applied index hold identical state; the bank conserves money.
    fn check_state(&mut self, i: usize, g: GroupId) {
        let node_id = self.nodes[i].id;
        let store = self.nodes[i].store.clone();
        let Ok(Some(state)) = ApplyStore::apply_state(&*store, g) else {
            return;
        };
        let applied = state.applied_index;
        if self.checked_at.get(&(node_id, g)) == Some(&applied) {
            return;
        }
        self.checked_at.insert((node_id, g), applied);
        self.stats.max_applied = self.stats.max_applied.max(applied);
        self.stats.states_checked += 1;
        let pairs = match KvReader::scan(&*store, g, b"", None).collect::<Result<Vec<_>, _>>() {
            Ok(p) => p,
            Err(e) => {
                self.violation(format!("node {node_id} cannot scan group {g}: {e}"));
                return;
            }
        };
        let mut h = Fnv::default();
        h.u64(state.applied_term);
        for (k, v) in &pairs {
            h.u64(k.len() as u64);
            h.bytes(k);
            h.u64(v.len() as u64);
            h.bytes(v);
        }
        match self.states.get(&(g, applied)) {
            None => {
                self.states.insert((g, applied), (h.0, node_id));
            }
            Some(&(other, by)) if other != h.0 => self.violation(format!(
                "group {g} at applied index {applied}: state on node {node_id} differs from \
                 node {by}"
            )),
            Some(_) => {}
        }
        if g == BANK {
            let mut total = 0u64;
            for a in 0..ACCOUNTS {
                let v = pairs
                    .iter()
                    .find(|(k, _)| *k == account_key(a))
                    .map(|(_, v)| v.as_slice());
                match balance_of(v) {
                    Some(b) => total += b,
                    None => self.violation(format!("node {node_id}: corrupt balance of {a}")),
                }
            }
            if total != ACCOUNTS as u64 * INITIAL {
                self.violation(format!(
                    "bank total on node {node_id} at index {applied} is {total}, not {}",
                    ACCOUNTS as u64 * INITIAL
                ));
            }
        }
    }

    pub(super) fn check_histories(&mut self) {
        let options = CheckOptions {
            max_states: 200_000,
        };
        let kv: Vec<KvOp> = self
            .kv_ops
            .iter()
            .enumerate()
            .filter(|(k, _)| !self.abandoned.contains(&(false, *k)))
            .map(|(_, o)| o.clone())
            .collect();
        let bank: Vec<BankOp> = self
            .bank_ops
            .iter()
            .enumerate()
            .filter(|(k, _)| !self.abandoned.contains(&(true, *k)))
            .map(|(_, o)| o.clone())
            .collect();
        match check_with::<KvModel<String, String>>(&kv, &options) {
            CheckResult::Ok => {}
            CheckResult::Violation {
                partition,
                explanation,
            } => self.violation(format!(
                "KV history is not linearizable (key {partition}):\n{explanation}"
            )),
            CheckResult::Unknown {
                partition,
                states_visited,
            } => self.notes.push(format!(
                "KV key {partition}: checker gave up after {states_visited} states"
            )),
        }
        match check_with::<BankModel<ACCOUNTS, INITIAL>>(&bank, &options) {
            CheckResult::Ok => {}
            CheckResult::Violation { explanation, .. } => {
                self.violation(format!("bank history is not linearizable:\n{explanation}"));
            }
            CheckResult::Unknown { states_visited, .. } => self.notes.push(format!(
                "bank: checker gave up after {states_visited} states"
            )),
        }
        // A proposal answered `Dropped` must not have taken effect.
        let mut seen = BTreeSet::new();
        for op in &self.kv_ops {
            if let Some(KvOutput::Value(Some(v))) = &op.output {
                seen.insert(v.clone());
            }
        }
        let wrong: Vec<String> = self
            .dropped_values
            .iter()
            .filter(|(v, _)| seen.contains(*v))
            .map(|(v, why)| format!("{v} ({why})"))
            .collect();
        for w in wrong {
            self.violation(format!(
                "a write answered Dropped (\"may be retried\") took effect: {w}"
            ));
        }
    }
}
