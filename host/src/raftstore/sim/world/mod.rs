//! The simulated cluster: nodes, network, clients, faults and the invariant checks,
//! all driven from one seed on one thread. [`run`] plays a whole scenario and returns a
//! [`Report`]; the same seed and [`Config`] always give the same run (the report's
//! `trace` hash covers every delivered message, client outcome and fault).
//!
//! A run has three phases: *chaos* (clients and faults for `Config::duration_ms`),
//! *recovery* (network healed, crashed nodes restarted, clients finish, every group's
//! members must converge on the leader's log), and *final reads* (a linearizable read
//! of every key and of the bank, added to the history). Then the recorded histories go
//! through the linearizability checker of `flotilla-tests`.
//!
//! This file holds the world itself — its configuration, counters, state and the step
//! that drives one round — and the submodules hold its sides: [`network`] (delivering
//! messages and liveness probes), [`faults`] (partitions, weather, crashes, leader
//! transfers and membership changes), [`clients`] (the workload and its recorded
//! histories), [`checks`] (the safety invariants and the linearizability check) and
//! [`phases`] (recovery, convergence and the final reads).

mod checks;
mod clients;
mod faults;
mod network;
mod phases;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use flotilla_tests::linearizability::{BankInput, BankOutput, KvInput, KvOutput, Operation};
use raft::StateRole;

use self::clients::Client;
use self::faults::Reconfig;
use super::net::Net;
use super::node::{SimClock, SimNode, plugin};
use super::rng::{Fnv, Rng};
use crate::ids::{GroupId, NodeId, PeerId};
use crate::limits;
use crate::raftstore::msg::PeerSpec;
use crate::storage::mem::{MemStore, SnapExchange};

/// Simulated milliseconds per step.
pub const STEP_MS: u64 = 10;
/// The bank group; KV groups follow it.
const BANK: GroupId = GroupId(1);
/// How long a client waits for one operation before calling its outcome unknown.
const OP_TIMEOUT_MS: u64 = 5_000;

/// What a run simulates.
#[derive(Clone, Debug)]
pub struct Config {
    pub nodes: usize,
    pub kv_groups: u64,
    pub kv_keys: usize,
    pub kv_clients: usize,
    pub bank_clients: usize,
    /// Length of the chaos phase.
    pub duration_ms: u64,
    pub faults: bool,
    /// Mean pause between two faults.
    pub fault_gap_ms: u64,
}

impl Config {
    /// A configuration drawn from the seed (3–5 nodes, 1–2 KV groups, 2–5 KV clients).
    pub fn for_seed(seed: u64, duration_ms: u64) -> Self {
        let mut r = Rng::stream(seed, 0xC0);
        Self {
            nodes: r.range(3, 5) as usize,
            kv_groups: r.range(1, 2),
            kv_keys: 8,
            kv_clients: r.range(5, 9) as usize,
            bank_clients: 2,
            duration_ms,
            faults: true,
            fault_gap_ms: r.range(400, 1500),
        }
    }
}

/// Counters of what happened in a run.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub steps: u64,
    pub ops_ok: u64,
    pub ops_unknown: u64,
    pub ops_abandoned: u64,
    pub messages_delivered: u64,
    pub messages_lost: u64,
    pub snapshots_sent: u64,
    pub crashes: u64,
    pub partitions: u64,
    pub transfers: u64,
    pub conf_changes: u64,
    pub leaders: u64,
    pub max_applied: u64,
    pub max_truncated: u64,
    pub entries_checked: u64,
    pub states_checked: u64,
    /// Proposals raft refused to append (retried).
    pub retried_drops: u64,
    /// Sum over simulated 100 ms ticks of the peers hibernating then.
    pub hibernating_peer_ticks: u64,
    /// Why operations ended with an unknown outcome, by reason.
    pub unknown_reasons: BTreeMap<String, u64>,
}

/// The outcome of a run.
#[derive(Debug)]
pub struct Report {
    pub seed: u64,
    pub config: Config,
    /// Broken invariants (safety); empty for a good run.
    pub violations: Vec<String>,
    /// Things that stopped the run short of a verdict or a liveness failure.
    pub notes: Vec<String>,
    pub trace: u64,
    pub stats: Stats,
}

type KvOp = Operation<KvInput<String, String>, KvOutput<String>>;
type BankOp = Operation<BankInput, BankOutput>;

pub struct World {
    seed: u64,
    cfg: Config,
    now: u64,
    clock: Arc<SimClock>,
    nodes: Vec<SimNode>,
    net: Net,
    client_rng: Rng,
    fault_rng: Rng,
    clients: Vec<Client>,
    kv_ops: Vec<KvOp>,
    bank_ops: Vec<BankOp>,
    abandoned: BTreeSet<(bool, usize)>,
    events: u64,
    /// Last value seen per key (to give cas a fair chance).
    last_seen: BTreeMap<String, Option<String>>,
    /// Put/cas values whose proposal was answered `Dropped`.
    dropped_values: BTreeMap<String, String>,
    next_fault_at: u64,
    heal_at: Option<u64>,
    reconfigs: BTreeMap<GroupId, Reconfig>,
    followups: BTreeMap<GroupId, u64>,
    /// What each node's liveness probes know of each other node (index i, j).
    silences: BTreeMap<(usize, usize), crate::raftstore::hibernate::Silence>,
    /// Clients start no new operations before this time (a quiet period, in which idle
    /// groups hibernate while the faults go on).
    quiet_until: u64,
    next_peer_seq: u64,
    groups: Vec<GroupId>,
    // Invariant state.
    leaders: BTreeMap<(GroupId, u64), PeerId>,
    committed: BTreeMap<(GroupId, u64), (u64, Option<u64>, NodeId)>,
    states: BTreeMap<(GroupId, u64), (u64, NodeId)>,
    checked_at: BTreeMap<(NodeId, GroupId), u64>,
    violations: Vec<String>,
    notes: Vec<String>,
    trace: Fnv,
    stats: Stats,
}

impl World {
    pub fn new(seed: u64, cfg: Config) -> Self {
        let exchange = SnapExchange::default();
        let mut setup = Rng::stream(seed, 0x5E7);
        let nodes = (1..=cfg.nodes as u64)
            .map(|n| {
                SimNode::new(
                    NodeId(n),
                    Arc::new(MemStore::with_exchange(exchange.clone())),
                    setup.range(1, limits::TICK_INTERVAL_MS),
                )
            })
            .collect();
        let groups = (1..=1 + cfg.kv_groups).map(GroupId).collect();
        Self {
            seed,
            now: 0,
            clock: Arc::default(),
            nodes,
            net: Net::new(Rng::stream(seed, 0x4E7)),
            client_rng: Rng::stream(seed, 0xC11),
            fault_rng: Rng::stream(seed, 0xFA1),
            clients: Vec::new(),
            kv_ops: Vec::new(),
            bank_ops: Vec::new(),
            abandoned: BTreeSet::new(),
            events: 0,
            last_seen: BTreeMap::new(),
            dropped_values: BTreeMap::new(),
            next_fault_at: 2_000,
            heal_at: None,
            reconfigs: BTreeMap::new(),
            followups: BTreeMap::new(),
            silences: BTreeMap::new(),
            quiet_until: 0,
            next_peer_seq: 1,
            groups,
            leaders: BTreeMap::new(),
            committed: BTreeMap::new(),
            states: BTreeMap::new(),
            checked_at: BTreeMap::new(),
            violations: Vec::new(),
            notes: Vec::new(),
            trace: Fnv::default(),
            stats: Stats::default(),
            cfg,
        }
    }

    fn violation(&mut self, what: String) {
        if self.violations.len() < 50 {
            self.violations.push(format!("t={}ms: {what}", self.now));
        }
    }

    fn event(&mut self) -> u64 {
        self.events += 1;
        self.events
    }

    fn node_index(&self, node: NodeId) -> Option<usize> {
        let i = usize::try_from(node.0).ok()?.checked_sub(1)?;
        (i < self.nodes.len()).then_some(i)
    }

    /// Starts every node and bootstraps the groups on three nodes each.
    fn bootstrap(&mut self) {
        for n in &mut self.nodes {
            n.boot(self.clock.clone());
        }
        let mut setup = Rng::stream(self.seed, 0xB00);
        for g in self.groups.clone() {
            let mut pool: Vec<usize> = (0..self.nodes.len()).collect();
            let mut chosen = Vec::new();
            for _ in 0..3 {
                let k = setup.index(pool.len()).unwrap_or(0);
                chosen.push(pool.remove(k));
            }
            chosen.sort_unstable();
            let voters: Vec<PeerId> = chosen
                .iter()
                .map(|i| PeerId::compose(self.take_seq(), self.nodes[*i].id))
                .collect();
            let first = setup.index(chosen.len()).unwrap_or(0);
            for (k, i) in chosen.iter().enumerate() {
                let spec = PeerSpec {
                    group: g,
                    peer: voters[k],
                    voters: voters.clone(),
                    plugin: plugin(),
                    campaign: k == first,
                };
                if !self.nodes[*i].start_peer(spec) {
                    self.violation(format!("group {g} did not start on node {}", i + 1));
                }
                self.nodes[*i].replicas.insert(g, voters[k]);
            }
        }
        let mut id = 0;
        for g in self.groups.clone() {
            let n = if g == BANK {
                self.cfg.bank_clients
            } else {
                self.cfg.kv_clients
            };
            for _ in 0..n {
                id += 1;
                let target = self.client_rng.index(self.nodes.len()).unwrap_or(0);
                self.clients.push(Client {
                    id,
                    group: g,
                    target,
                    next_op_at: 0,
                    seq: 0,
                    pending: None,
                });
            }
        }
    }

    fn take_seq(&mut self) -> u64 {
        self.next_peer_seq += 1;
        self.next_peer_seq
    }

    /// One step: time, faults, deliveries, clients, every node's round.
    fn step(&mut self, chaos: bool, new_ops: bool) {
        self.now += STEP_MS;
        self.stats.steps += 1;
        self.clock.0.store(self.now, Ordering::Relaxed);
        if chaos && self.cfg.faults {
            self.faults();
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].live.is_none()
                && self.nodes[i].restart_at.is_some_and(|t| t <= self.now)
            {
                self.restart(i);
            }
        }
        self.deliver();
        self.probe_liveness();
        self.dispatch_clients(new_ops && self.now >= self.quiet_until);
        self.poll_reconfigs();
        for i in 0..self.nodes.len() {
            let node = &mut self.nodes[i];
            let mut tick = false;
            while node.next_tick_ms <= self.now {
                node.next_tick_ms += limits::TICK_INTERVAL_MS;
                tick = true;
            }
            let out = node.step(tick, self.seed);
            if out.ran {
                self.observe(i, out);
            }
        }
        self.poll_clients();
    }

    /// The leader of `g` with the highest term among live nodes: (node index, peer).
    fn leader_of(&self, g: GroupId) -> Option<(usize, PeerId, u64)> {
        let mut best: Option<(usize, PeerId, u64)> = None;
        for (i, n) in self.nodes.iter().enumerate() {
            let Some(live) = &n.live else { continue };
            if let Some((peer, _)) = live.store_loop.peers.get(&g)
                && peer.raw.raft.state == StateRole::Leader
                && best.is_none_or(|b| b.2 < peer.raw.raft.term)
            {
                best = Some((i, peer.peer, peer.raw.raft.term));
            }
        }
        best
    }

    /// Voters and learners of `g` as its leader knows them.
    fn members(&self, g: GroupId) -> Option<(usize, PeerId, Vec<u64>, Vec<u64>)> {
        let (i, peer, _) = self.leader_of(g)?;
        let live = self.nodes[i].live.as_ref()?;
        let (p, _) = live.store_loop.peers.get(&g)?;
        let cs = p.raw.store().conf_state();
        let mut voters = cs.voters.clone();
        let mut learners = cs.learners.clone();
        voters.sort_unstable();
        learners.sort_unstable();
        Some((i, peer, voters, learners))
    }
}

/// Plays one scenario from `seed`.
pub fn run(seed: u64, cfg: Config) -> Report {
    let mut w = World::new(seed, cfg);
    w.bootstrap();
    while w.now < w.cfg.duration_ms {
        w.step(true, true);
    }
    w.recover();
    w.final_reads();
    w.check_histories();
    w.finish_stats();
    Report {
        seed,
        config: w.cfg.clone(),
        violations: std::mem::take(&mut w.violations),
        notes: std::mem::take(&mut w.notes),
        trace: w.trace.0,
        stats: w.stats.clone(),
    }
}
