//! The [`World`]'s closing phases: *recovery* (the network heals, crashed nodes
//! restart, clients finish, and every group's members must converge on the leader's
//! log within [`RECOVERY_MS`]), the *final reads* (a linearizable read of every key and
//! of the bank, added to the history) and the end-of-run counters.

use flotilla_tests::linearizability::{BankInput, KvInput, Operation};

use super::clients::{Client, OpRef};
use super::{BANK, OP_TIMEOUT_MS, World};
use crate::ids::PeerId;
use crate::raftstore::traits::LogStore;

/// Recovery must converge within this long.
const RECOVERY_MS: u64 = 60_000;

impl World {
    /// True once every group has a leader whose log is committed and applied on every
    /// member (all of them running).
    fn converged(&self) -> bool {
        for g in &self.groups {
            let Some((i, _, voters, learners)) = self.members(*g) else {
                return false;
            };
            let Some(live) = &self.nodes[i].live else {
                return false;
            };
            let Some((leader, _)) = live.store_loop.peers.get(g) else {
                return false;
            };
            let last = leader.raw.raft.raft_log.last_index();
            if leader.raw.raft.raft_log.committed != last {
                return false;
            }
            for m in voters.iter().chain(&learners) {
                let Some(k) = self.node_index(PeerId(*m).node()) else {
                    return false;
                };
                let Some(live) = &self.nodes[k].live else {
                    return false;
                };
                match live.store_loop.peers.get(g) {
                    Some((p, _)) if p.peer.0 == *m && p.shared.applied_index() == last => {}
                    _ => return false,
                }
            }
        }
        true
    }

    pub(super) fn recover(&mut self) {
        self.net.heal();
        self.heal_at = None;
        for i in 0..self.nodes.len() {
            if self.nodes[i].live.is_none() {
                self.restart(i);
            }
        }
        let end = self.now + RECOVERY_MS;
        while self.now < end && (self.clients_busy() || !self.reconfigs.is_empty()) {
            self.step(false, false);
        }
        while self.now < end && !self.converged() {
            self.step(false, false);
        }
        if !self.converged() {
            let mut detail = String::new();
            for g in self.groups.clone() {
                detail.push_str(&format!("\n  group {g}: members {:?}", self.members(g)));
                for n in &self.nodes {
                    if let Some(live) = &n.live
                        && let Some((p, _)) = live.store_loop.peers.get(&g)
                    {
                        let r = &p.raw.raft;
                        detail.push_str(&format!(
                            "\n    node {} peer {} {:?} term {} last {} commit {} applied {}",
                            n.id,
                            p.peer,
                            r.state,
                            r.term,
                            r.raft_log.last_index(),
                            r.raft_log.committed,
                            p.shared.applied_index()
                        ));
                    }
                }
            }
            self.notes.push(format!(
                "liveness: the groups did not converge within {RECOVERY_MS} ms after healing{detail}"
            ));
        }
    }

    /// A linearizable read of every key and of the bank, recorded in the history.
    pub(super) fn final_reads(&mut self) {
        let mut id = 1_000;
        for g in self.groups.clone() {
            let target = self.leader_of(g).map_or(0, |l| l.0);
            let reads = if g == BANK { 1 } else { self.cfg.kv_keys };
            for k in 0..reads {
                id += 1;
                let call = self.event();
                let op = if g == BANK {
                    self.bank_ops.push(Operation {
                        client: id,
                        input: BankInput::Read,
                        output: None,
                        call,
                        ret: None,
                    });
                    OpRef::Bank(self.bank_ops.len() - 1)
                } else {
                    self.kv_ops.push(Operation {
                        client: id,
                        input: KvInput::Get {
                            key: format!("g{}k{k}", g.0),
                        },
                        output: None,
                        call,
                        ret: None,
                    });
                    OpRef::Kv(self.kv_ops.len() - 1)
                };
                let pending = self.pending(op, None);
                self.clients.push(Client {
                    id,
                    group: g,
                    target,
                    next_op_at: u64::MAX,
                    seq: 0,
                    pending: Some(pending),
                });
            }
        }
        let end = self.now + 2 * OP_TIMEOUT_MS;
        while self.now < end && self.clients_busy() {
            self.step(false, false);
        }
        let missing = self
            .kv_ops
            .iter()
            .filter(|o| o.client > 1_000 && o.output.is_none())
            .count()
            + self
                .bank_ops
                .iter()
                .filter(|o| o.client > 1_000 && o.output.is_none())
                .count();
        if missing > 0 {
            self.notes
                .push(format!("liveness: {missing} final reads got no answer"));
        }
    }

    pub(super) fn finish_stats(&mut self) {
        self.stats.messages_delivered = self.net.delivered;
        self.stats.messages_lost = self.net.lost;
        for n in &self.nodes {
            for g in &self.groups {
                if let Ok(Some(s)) = LogStore::raft_state(&*n.store, *g) {
                    self.stats.max_truncated = self.stats.max_truncated.max(s.truncated.0);
                }
            }
        }
    }
}
