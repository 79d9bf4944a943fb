//! The [`World`]'s fault injection during the chaos phase: partitions (two-sided,
//! one-way, isolation) and their healing, network weather, node crashes and restarts,
//! quiet periods, leader transfers and membership changes (with their follow-ups).

use std::collections::BTreeSet;

use tokio::sync::oneshot;

use super::{OP_TIMEOUT_MS, World};
use crate::ids::{GroupId, NodeId, PeerId};
use crate::raftstore::msg::{PeerChange, PeerMsg, RaftError};
use crate::raftstore::sim::net::Weather;

/// One group's membership change in flight.
pub(super) struct Reconfig {
    rx: oneshot::Receiver<Result<u64, RaftError>>,
    change: PeerChange,
    deadline: u64,
}

impl World {
    pub(super) fn faults(&mut self) {
        if self.heal_at.is_some_and(|t| t <= self.now) {
            self.heal_at = None;
            let weather = self.net.weather;
            self.net.heal();
            self.net.weather = weather;
            self.trace.u64(0x4EA1);
        }
        let due: Vec<GroupId> = self
            .followups
            .iter()
            .filter(|(_, t)| **t <= self.now)
            .map(|(g, _)| *g)
            .collect();
        for g in due {
            self.followups.remove(&g);
            self.reconfigure(g);
        }
        if self.now < self.next_fault_at {
            return;
        }
        let gap = self.cfg.fault_gap_ms;
        self.next_fault_at = self.now + self.fault_rng.range(gap / 2, gap * 3 / 2);
        let all: Vec<NodeId> = self.nodes.iter().map(|n| n.id).collect();
        let n = all.len();
        let kind = self.fault_rng.below(12);
        self.trace.u64(0xFA17 ^ kind);
        match kind {
            0 | 1 => {
                // Two-sided partition (a random split) or a one-way cut.
                let mut a = Vec::new();
                let mut b = Vec::new();
                for id in &all {
                    if self.fault_rng.chance(0.5) {
                        a.push(*id);
                    } else {
                        b.push(*id);
                    }
                }
                if a.is_empty() || b.is_empty() {
                    return;
                }
                if kind == 0 {
                    self.net.partition(&a, &b);
                } else {
                    self.net.one_way(&a, &b);
                }
                self.stats.partitions += 1;
                self.heal_at = Some(self.now + self.fault_rng.range(300, 4_000));
            }
            2 => {
                let victim = all[self.fault_rng.index(n).unwrap_or(0)];
                self.net.isolate(victim, &all);
                self.stats.partitions += 1;
                self.heal_at = Some(self.now + self.fault_rng.range(300, 4_000));
            }
            3 => {
                let w = [0.0, 0.01, 0.05, 0.2];
                let d = [0.0, 0.02, 0.1];
                let delay = [5, 20, 80];
                let r = &mut self.fault_rng;
                self.net.weather = Weather {
                    drop: w[r.below(4) as usize],
                    duplicate: d[r.below(3) as usize],
                    delay_min_ms: 1,
                    delay_max_ms: delay[r.below(3) as usize],
                    straggle: if r.chance(0.3) { 0.02 } else { 0.0 },
                };
            }
            4 | 5 => {
                let down = self.nodes.iter().filter(|n| n.live.is_none()).count();
                if down < ((n - 1) / 2).max(1) {
                    let up: Vec<usize> = (0..n).filter(|i| self.nodes[*i].live.is_some()).collect();
                    if let Some(k) = self.fault_rng.index(up.len()) {
                        let down_ms = self.fault_rng.range(100, 4_000);
                        self.crash(up[k], down_ms);
                    }
                }
            }
            6 => {
                let g = self.groups[self.fault_rng.index(self.groups.len()).unwrap_or(0)];
                self.transfer(g);
            }
            7 | 8 => {
                let g = self.groups[self.fault_rng.index(self.groups.len()).unwrap_or(0)];
                self.reconfigure(g);
            }
            9 => {
                // Crash the leader of a group.
                let g = self.groups[self.fault_rng.index(self.groups.len()).unwrap_or(0)];
                let down = self.nodes.iter().filter(|n| n.live.is_none()).count();
                if down < ((n - 1) / 2).max(1)
                    && let Some((i, _, _)) = self.leader_of(g)
                {
                    let down_ms = self.fault_rng.range(100, 3_000);
                    self.crash(i, down_ms);
                }
            }
            11 => {
                // Quiet: no new client operations for a while, so groups hibernate.
                self.quiet_until = self.now + self.fault_rng.range(2_500, 8_000);
            }
            _ => {
                self.net.heal();
                self.heal_at = None;
            }
        }
    }

    fn transfer(&mut self, g: GroupId) {
        let Some((i, leader, voters, _)) = self.members(g) else {
            return;
        };
        let others: Vec<u64> = voters.into_iter().filter(|v| *v != leader.0).collect();
        let Some(k) = self.fault_rng.index(others.len()) else {
            return;
        };
        let (reply, _rx) = oneshot::channel();
        if let Some(live) = &self.nodes[i].live {
            let _ = live.router.send(
                g,
                PeerMsg::TransferLeader {
                    peer: PeerId(others[k]),
                    reply,
                },
            );
            self.stats.transfers += 1;
        }
    }

    /// One membership step for `g`: promote a learner, else remove a voter when there
    /// are four or more, else add a learner on a node without a replica.
    fn reconfigure(&mut self, g: GroupId) {
        if self.reconfigs.contains_key(&g) {
            return;
        }
        let Some((i, leader, voters, learners)) = self.members(g) else {
            return;
        };
        let change = if let Some(l) = learners.first() {
            PeerChange::AddVoter(PeerId(*l))
        } else if voters.len() >= 4 {
            let pick = if self.fault_rng.chance(0.15) {
                leader.0
            } else {
                let others: Vec<u64> = voters.iter().copied().filter(|v| *v != leader.0).collect();
                others[self.fault_rng.index(others.len()).unwrap_or(0)]
            };
            PeerChange::Remove(PeerId(pick))
        } else {
            let used: BTreeSet<u64> = voters.iter().map(|v| PeerId(*v).node().0).collect();
            let free: Vec<usize> = (0..self.nodes.len())
                .filter(|k| {
                    !used.contains(&self.nodes[*k].id.0)
                        && !self.nodes[*k].replicas.contains_key(&g)
                })
                .collect();
            let Some(k) = self.fault_rng.index(free.len()) else {
                return;
            };
            let node = self.nodes[free[k]].id;
            PeerChange::AddLearner(PeerId::compose(self.take_seq(), node))
        };
        let (reply, rx) = oneshot::channel();
        let Some(live) = &self.nodes[i].live else {
            return;
        };
        if live
            .router
            .send(
                g,
                PeerMsg::ChangePeers {
                    changes: vec![change],
                    reply,
                },
            )
            .is_ok()
        {
            self.trace.u64(0xCC ^ g.0);
            self.reconfigs.insert(
                g,
                Reconfig {
                    rx,
                    change,
                    deadline: self.now + OP_TIMEOUT_MS,
                },
            );
        }
    }

    pub(super) fn poll_reconfigs(&mut self) {
        let groups: Vec<GroupId> = self.reconfigs.keys().copied().collect();
        for g in groups {
            let Some(r) = self.reconfigs.get_mut(&g) else {
                continue;
            };
            let result = match r.rx.try_recv() {
                Err(oneshot::error::TryRecvError::Empty) if self.now < r.deadline => continue,
                Ok(result) => Some(result),
                Err(_) => None,
            };
            let change = r.change;
            self.reconfigs.remove(&g);
            if let Some(Ok(_)) = result {
                self.stats.conf_changes += 1;
                self.trace.u64(0xCD ^ g.0);
                if matches!(change, PeerChange::AddLearner(_) | PeerChange::Remove(_)) {
                    // Promote the learner (or add a replacement) soon.
                    let at = self.now + self.fault_rng.range(300, 3_000);
                    self.followups.insert(g, at);
                }
            }
        }
    }

    fn crash(&mut self, i: usize, down_ms: u64) {
        self.stats.crashes += 1;
        self.nodes[i].crash();
        self.nodes[i].restart_at = Some(self.now + down_ms);
        self.trace.u64(0xC0A5 ^ i as u64);
    }

    pub(super) fn restart(&mut self, i: usize) {
        self.nodes[i].restart_at = None;
        self.nodes[i].boot(self.clock.clone());
        self.trace.u64(0xB007 ^ i as u64);
    }
}
