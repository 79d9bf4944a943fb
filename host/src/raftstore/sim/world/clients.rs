//! The [`World`]'s workload: simulated clients that send KV puts, compare-and-sets and
//! gets and bank transfers and reads to a node, follow redirects, retry what certainly
//! did not happen, give up on what timed out (an unknown outcome), and record every
//! operation in the histories the linearizability checker reads.

use flotilla_tests::linearizability::{BankInput, BankOutput, KvInput, KvOutput, Operation};
use tokio::sync::oneshot;

use super::{BANK, OP_TIMEOUT_MS, World};
use crate::ids::{GroupId, PeerId};
use crate::raftstore::fsm::KvReader;
use crate::raftstore::msg::{PeerMsg, Proposed, RaftError, ReadKind, ReadWaiter};
use crate::raftstore::sim::fsm::{ACCOUNTS, account_key, balance_of, kv_key};
use crate::raftstore::traits::ApplyStore;

#[derive(Clone, Copy, Debug)]
pub(super) enum OpRef {
    Kv(usize),
    Bank(usize),
}

enum Waiting {
    /// Not in flight: (re)send at `retry_at`.
    Idle,
    Propose(oneshot::Receiver<Result<Proposed, RaftError>>),
    Read(oneshot::Receiver<Result<u64, RaftError>>),
}

pub(super) struct Pending {
    op: OpRef,
    /// The command to propose, or `None` for a linearizable read.
    command: Option<String>,
    waiting: Waiting,
    retry_at: u64,
    deadline: u64,
    /// A replica accepted it at least once: from then on a lost answer is "unknown".
    accepted: bool,
}

pub(super) struct Client {
    pub(super) id: u64,
    pub(super) group: GroupId,
    pub(super) target: usize,
    pub(super) next_op_at: u64,
    pub(super) seq: u64,
    pub(super) pending: Option<Pending>,
}

impl World {
    fn new_op(&mut self, c: usize) -> Pending {
        let (id, group) = (self.clients[c].id, self.clients[c].group);
        self.clients[c].seq += 1;
        let seq = self.clients[c].seq;
        let r = &mut self.client_rng;
        let call = {
            self.events += 1;
            self.events
        };
        if group == BANK {
            let (input, command) = if r.chance(0.75) {
                let from = r.below(ACCOUNTS as u64) as usize;
                let to = (from + 1 + r.below(ACCOUNTS as u64 - 1) as usize) % ACCOUNTS;
                let amount = r.range(1, 60);
                (
                    BankInput::Transfer { from, to, amount },
                    Some(format!("xfer {from} {to} {amount}")),
                )
            } else {
                (BankInput::Read, None)
            };
            self.bank_ops.push(Operation {
                client: id,
                input,
                output: None,
                call,
                ret: None,
            });
            return self.pending(OpRef::Bank(self.bank_ops.len() - 1), command);
        }
        let key = format!("g{}k{}", group.0, r.below(self.cfg.kv_keys as u64));
        let value = format!("c{id}n{seq}");
        let dice = r.below(100);
        let (input, command) = if dice < 45 {
            let command = format!("put {key} {value}");
            (KvInput::Put { key, value }, Some(command))
        } else if dice < 65 {
            let expected = self.last_seen.get(&key).cloned().flatten();
            let new = (!r.chance(0.1)).then_some(value);
            let command = format!(
                "cas {key} {} {}",
                expected.as_deref().unwrap_or("-"),
                new.as_deref().unwrap_or("-")
            );
            (KvInput::Cas { key, expected, new }, Some(command))
        } else {
            (KvInput::Get { key }, None)
        };
        self.kv_ops.push(Operation {
            client: id,
            input,
            output: None,
            call,
            ret: None,
        });
        self.pending(OpRef::Kv(self.kv_ops.len() - 1), command)
    }

    pub(super) fn pending(&self, op: OpRef, command: Option<String>) -> Pending {
        Pending {
            op,
            command,
            waiting: Waiting::Idle,
            retry_at: self.now,
            deadline: self.now + OP_TIMEOUT_MS,
            accepted: false,
        }
    }

    pub(super) fn dispatch_clients(&mut self, new_ops: bool) {
        for c in 0..self.clients.len() {
            if self.clients[c].pending.is_none() {
                if !new_ops || self.now < self.clients[c].next_op_at {
                    continue;
                }
                let p = self.new_op(c);
                self.clients[c].pending = Some(p);
            }
            let Some(mut p) = self.clients[c].pending.take() else {
                continue;
            };
            if matches!(p.waiting, Waiting::Idle) && p.retry_at <= self.now {
                if self.now >= p.deadline {
                    self.finish(c, p, None);
                    continue;
                }
                self.send_op(c, &mut p);
            }
            self.clients[c].pending = Some(p);
        }
    }

    fn send_op(&mut self, c: usize, p: &mut Pending) {
        let n = self.nodes.len();
        let group = self.clients[c].group;
        let target = self.clients[c].target;
        let Some(live) = &self.nodes[target].live else {
            self.clients[c].target = self.client_rng.index(n).unwrap_or(0);
            p.retry_at = self.now + 20;
            return;
        };
        let sent = match &p.command {
            Some(cmd) => {
                let (reply, rx) = oneshot::channel();
                let msg = PeerMsg::Propose {
                    command: cmd.clone().into_bytes(),
                    request_id: String::new(),
                    reply,
                };
                live.router.send(group, msg).map(|()| Waiting::Propose(rx))
            }
            None => {
                let (reply, rx) = oneshot::channel();
                let msg = PeerMsg::Read {
                    kind: ReadKind::Linearizable,
                    reply: ReadWaiter::Index(reply),
                };
                live.router.send(group, msg).map(|()| Waiting::Read(rx))
            }
        };
        match sent {
            Ok(w) => {
                p.waiting = w;
                p.accepted = true;
            }
            Err(_) => {
                self.clients[c].target = self.client_rng.index(n).unwrap_or(0);
                p.retry_at = self.now + 20;
            }
        }
    }

    /// A definite "not done, try elsewhere" answer.
    fn redirect(&mut self, c: usize, p: &mut Pending, leader: Option<PeerId>) {
        p.waiting = Waiting::Idle;
        match leader.and_then(|l| self.node_index(l.node())) {
            Some(i) if i != self.clients[c].target => {
                self.clients[c].target = i;
                p.retry_at = self.now;
            }
            _ => {
                self.clients[c].target = self.client_rng.index(self.nodes.len()).unwrap_or(0);
                p.retry_at = self.now + 50;
            }
        }
    }

    pub(super) fn poll_clients(&mut self) {
        for c in 0..self.clients.len() {
            let Some(mut p) = self.clients[c].pending.take() else {
                continue;
            };
            let waiting = std::mem::replace(&mut p.waiting, Waiting::Idle);
            match waiting {
                Waiting::Idle => {
                    self.clients[c].pending = Some(p);
                }
                Waiting::Propose(mut rx) => match rx.try_recv() {
                    Err(oneshot::error::TryRecvError::Empty) => {
                        if self.now >= p.deadline {
                            self.unknown_reason("propose timed out");
                            self.finish(c, p, None);
                        } else {
                            p.waiting = Waiting::Propose(rx);
                            self.clients[c].pending = Some(p);
                        }
                    }
                    Err(oneshot::error::TryRecvError::Closed) => {
                        self.unknown_reason("propose reply dropped");
                        self.finish(c, p, None);
                    }
                    Ok(Ok(proposed)) => {
                        let out = String::from_utf8_lossy(&proposed.output).into_owned();
                        self.finish(c, p, Some(out));
                    }
                    Ok(Err(RaftError::NotLeader { leader, .. })) => {
                        self.redirect(c, &mut p, leader);
                        self.clients[c].pending = Some(p);
                    }
                    Ok(Err(RaftError::Busy { .. })) => {
                        p.retry_at = self.now + 100;
                        self.clients[c].pending = Some(p);
                    }
                    Ok(Err(RaftError::Dropped(why)))
                        if why == "raft did not append it" || why.contains("proposal dropped") =>
                    {
                        // Refused before it reached the log (raft-rs drops proposals
                        // during a leader transfer): certainly not applied, retry.
                        self.stats.retried_drops += 1;
                        p.retry_at = self.now + 50;
                        self.clients[c].pending = Some(p);
                    }
                    Ok(Err(RaftError::Dropped(why))) => {
                        self.unknown_reason(&format!("propose dropped: {why}"));
                        if let OpRef::Kv(k) = p.op {
                            match &self.kv_ops[k].input {
                                KvInput::Put { value, .. }
                                | KvInput::Cas {
                                    new: Some(value), ..
                                } => {
                                    self.dropped_values.insert(value.clone(), why);
                                }
                                _ => {}
                            }
                        }
                        self.finish(c, p, None);
                    }
                    Ok(Err(e)) => {
                        if matches!(e, RaftError::Fsm(_) | RaftError::Invalid(_)) {
                            self.violation(format!("a valid command failed: {e}"));
                        }
                        self.unknown_reason(&format!("propose: {e}"));
                        self.finish(c, p, None);
                    }
                },
                Waiting::Read(mut rx) => match rx.try_recv() {
                    Err(oneshot::error::TryRecvError::Empty) => {
                        if self.now >= p.deadline {
                            self.unknown_reason("read timed out");
                            self.finish(c, p, None);
                        } else {
                            p.waiting = Waiting::Read(rx);
                            self.clients[c].pending = Some(p);
                        }
                    }
                    Ok(Ok(index)) => {
                        let out = self.read_at(c, &p, index);
                        self.finish(c, p, out);
                    }
                    Ok(Err(RaftError::NotLeader { leader, .. })) => {
                        self.redirect(c, &mut p, leader);
                        self.clients[c].pending = Some(p);
                    }
                    Ok(Err(RaftError::Busy { .. })) => {
                        p.retry_at = self.now + 100;
                        self.clients[c].pending = Some(p);
                    }
                    Ok(Err(_)) | Err(oneshot::error::TryRecvError::Closed) => {
                        self.unknown_reason("read failed");
                        self.finish(c, p, None);
                    }
                },
            }
        }
    }

    /// Reads the answer of a linearizable read on the replica that confirmed `index`.
    fn read_at(&mut self, c: usize, p: &Pending, index: u64) -> Option<String> {
        let (group, target) = (self.clients[c].group, self.clients[c].target);
        let store = self.nodes[target].store.clone();
        let applied = ApplyStore::apply_state(&*store, group)
            .ok()
            .flatten()
            .map_or(0, |s| s.applied_index);
        if applied < index {
            self.violation(format!(
                "a read of group {group} on node {} was answered at index {index} before \
                 applying it (applied {applied})",
                target + 1
            ));
            return None;
        }
        match p.op {
            OpRef::Kv(k) => {
                let KvInput::Get { key } = &self.kv_ops[k].input else {
                    return None;
                };
                let v = KvReader::get(&*store, group, &kv_key(key)).ok()?;
                Some(v.map_or_else(|| "-".into(), |v| String::from_utf8_lossy(&v).into_owned()))
            }
            OpRef::Bank(_) => {
                let mut out = Vec::new();
                for a in 0..ACCOUNTS {
                    let v = KvReader::get(&*store, group, &account_key(a)).ok()?;
                    out.push(balance_of(v.as_deref())?.to_string());
                }
                Some(out.join(","))
            }
        }
    }

    fn unknown_reason(&mut self, why: &str) {
        // Keep the reason's kind, not its details (indices, terms).
        let kind: String = why.chars().take_while(|c| *c != '(').collect();
        *self
            .stats
            .unknown_reasons
            .entry(kind.trim().to_string())
            .or_default() += 1;
    }

    /// Completes a client's operation with `out` (its raw answer) or as unknown.
    fn finish(&mut self, c: usize, p: Pending, out: Option<String>) {
        let ret = self.event();
        // Bank histories are checked as a whole: fewer, sparser operations keep the
        // search tractable.
        let think = if self.clients[c].group == BANK {
            self.client_rng.range(50, 300)
        } else {
            self.client_rng.range(0, 30)
        };
        self.clients[c].next_op_at = self.now + think;
        self.trace.u64(ret);
        if let Some(o) = &out {
            self.trace.bytes(o.as_bytes());
        }
        let Some(out) = out else {
            if p.accepted {
                self.stats.ops_unknown += 1;
            } else {
                // Never accepted by any replica: it certainly did not happen.
                self.stats.ops_abandoned += 1;
                self.abandoned.insert(match p.op {
                    OpRef::Kv(k) => (false, k),
                    OpRef::Bank(b) => (true, b),
                });
            }
            return;
        };
        self.stats.ops_ok += 1;
        match p.op {
            OpRef::Kv(k) => {
                let (output, seen) = match (&self.kv_ops[k].input, out.as_str()) {
                    (KvInput::Put { key, value }, "ok") => {
                        (KvOutput::Ok, Some((key.clone(), Some(value.clone()))))
                    }
                    (KvInput::Cas { key, new, .. }, "1") => {
                        (KvOutput::Cas(true), Some((key.clone(), new.clone())))
                    }
                    (KvInput::Cas { .. }, "0") => (KvOutput::Cas(false), None),
                    (KvInput::Get { key }, v) => {
                        let v = (v != "-").then(|| v.to_string());
                        (KvOutput::Value(v.clone()), Some((key.clone(), v)))
                    }
                    (input, _) => {
                        let input = format!("{input:?}");
                        self.violation(format!("unexpected answer {out:?} to {input}"));
                        return;
                    }
                };
                if let Some((key, v)) = seen {
                    self.last_seen.insert(key, v);
                }
                let op = &mut self.kv_ops[k];
                op.output = Some(output);
                op.ret = Some(ret);
            }
            OpRef::Bank(b) => {
                let output = match (&self.bank_ops[b].input, out.as_str()) {
                    (BankInput::Transfer { .. }, "1") => BankOutput::Transfer(true),
                    (BankInput::Transfer { .. }, "0") => BankOutput::Transfer(false),
                    (BankInput::Read, v) => {
                        BankOutput::Balances(v.split(',').filter_map(|x| x.parse().ok()).collect())
                    }
                    (input, _) => {
                        let input = format!("{input:?}");
                        self.violation(format!("unexpected answer {out:?} to {input}"));
                        return;
                    }
                };
                let op = &mut self.bank_ops[b];
                op.output = Some(output);
                op.ret = Some(ret);
            }
        }
    }

    pub(super) fn clients_busy(&self) -> bool {
        self.clients.iter().any(|c| c.pending.is_some())
    }
}
