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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use flotilla_tests::linearizability::{
    BankInput, BankModel, BankOutput, CheckOptions, CheckResult, KvInput, KvModel, KvOutput,
    Operation, check_with,
};
use raft::StateRole;
use raft::eraftpb::MessageType;
use tokio::sync::oneshot;

use super::fsm::{ACCOUNTS, INITIAL, account_key, balance_of, kv_key};
use super::net::{Net, Sent, Weather};
use super::node::{SimClock, SimNode, StepOutput, plugin};
use super::rng::{Fnv, Rng};
use crate::ids::{GroupId, NodeId, PeerId};
use crate::limits;
use crate::raftstore::fsm::KvReader;
use crate::raftstore::msg::{PeerChange, PeerMsg, PeerSpec, Proposed, RaftError, ReadKind};
use crate::raftstore::traits::{ApplyStore, LogStore};
use crate::raftstore::transport::OutMessage;
use crate::storage::mem::{MemStore, SnapExchange};

/// Simulated milliseconds per step.
pub const STEP_MS: u64 = 10;
/// The bank group; KV groups follow it.
const BANK: GroupId = GroupId(1);
/// How long a client waits for one operation before calling its outcome unknown.
const OP_TIMEOUT_MS: u64 = 5_000;
/// Recovery must converge within this long.
const RECOVERY_MS: u64 = 60_000;

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

#[derive(Clone, Copy, Debug)]
enum OpRef {
    Kv(usize),
    Bank(usize),
}

enum Waiting {
    /// Not in flight: (re)send at `retry_at`.
    Idle,
    Propose(oneshot::Receiver<Result<Proposed, RaftError>>),
    Read(oneshot::Receiver<Result<u64, RaftError>>),
}

struct Pending {
    op: OpRef,
    /// The command to propose, or `None` for a linearizable read.
    command: Option<String>,
    waiting: Waiting,
    retry_at: u64,
    deadline: u64,
    /// A replica accepted it at least once: from then on a lost answer is "unknown".
    accepted: bool,
}

struct Client {
    id: u64,
    group: GroupId,
    target: usize,
    next_op_at: u64,
    seq: u64,
    pending: Option<Pending>,
}

/// One group's membership change in flight.
struct Reconfig {
    rx: oneshot::Receiver<Result<u64, RaftError>>,
    change: PeerChange,
    deadline: u64,
}

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

    // ---------------------------------------------------------------- network

    /// What `api::liveness` does on a real node: a node that cannot hear another (it
    /// is down, or the network between them is cut) wakes the replicas led from there.
    fn probe_liveness(&mut self) {
        let n = self.nodes.len();
        if self.now.is_multiple_of(limits::TICK_INTERVAL_MS) {
            for node in &self.nodes {
                if let Some(live) = &node.live {
                    let asleep = live.store_loop.peers.values();
                    let asleep = asleep.filter(|(p, _)| p.is_hibernating()).count();
                    self.stats.hibernating_peer_ticks += asleep as u64;
                }
            }
        }
        for i in 0..n {
            if self.nodes[i].live.is_none() {
                continue;
            }
            for j in (0..n).filter(|j| *j != i) {
                let (a, b) = (self.nodes[i].id, self.nodes[j].id);
                let answered = self.nodes[j].live.is_some()
                    && !self.net.is_cut(a, b)
                    && !self.net.is_cut(b, a);
                let silence = self.silences.entry((i, j)).or_default();
                if silence.probe(answered, self.now)
                    && let Some(live) = &self.nodes[i].live
                {
                    let _ = live
                        .router
                        .send_control(crate::raftstore::msg::StoreMsg::WakeLedBy(b));
                }
            }
        }
    }

    fn deliver(&mut self) {
        for (from, m, ok) in self.net.due(self.now) {
            let snapshot = m.msg.get_msg_type() == MessageType::MsgSnapshot;
            let (group, to_peer) = (m.group, PeerId(m.msg.to));
            let Some(to) = self.node_index(m.to_node) else {
                continue;
            };
            let mut delivered = false;
            if ok && let Some(live) = &self.nodes[to].live {
                let router = &live.router;
                let msg = Box::new(m.msg.clone());
                delivered = if router.mailbox(group).is_none() {
                    router
                        .send_control(crate::raftstore::msg::StoreMsg::RaftForUnknown {
                            group,
                            msg,
                        })
                        .is_ok()
                } else {
                    router.send(group, PeerMsg::Raft(msg)).is_ok()
                };
            }
            if delivered {
                let mut h = Fnv::default();
                h.u64(from.0);
                h.u64(m.to_node.0);
                h.u64(group.0);
                h.u64(m.msg.get_msg_type() as u64);
                h.u64(m.msg.term);
                h.u64(m.msg.index);
                h.u64(m.msg.commit);
                h.u64(m.msg.entries.len() as u64);
                self.trace.u64(h.0);
                if snapshot {
                    self.stats.snapshots_sent += 1;
                }
            }
            if let Some(i) = self.node_index(from)
                && let Some(live) = &self.nodes[i].live
            {
                if snapshot {
                    let _ = live.router.send(
                        group,
                        PeerMsg::SnapshotStatus {
                            peer: to_peer,
                            ok: delivered,
                        },
                    );
                }
                if ok && !delivered {
                    let _ = live
                        .router
                        .send(group, PeerMsg::Unreachable { peer: to_peer });
                }
            }
        }
    }

    fn send_out(&mut self, from: usize, msgs: Vec<OutMessage>) {
        let from_id = self.nodes[from].id;
        for m in msgs {
            let snapshot = m.msg.get_msg_type() == MessageType::MsgSnapshot;
            let (group, to_peer) = (m.group, PeerId(m.msg.to));
            let sent = self.net.send(self.now, from_id, m);
            let Some(live) = &self.nodes[from].live else {
                continue;
            };
            if sent == Sent::Unreachable {
                let _ = live
                    .router
                    .send(group, PeerMsg::Unreachable { peer: to_peer });
            }
            if snapshot && sent != Sent::Queued {
                let _ = live.router.send(
                    group,
                    PeerMsg::SnapshotStatus {
                        peer: to_peer,
                        ok: false,
                    },
                );
            }
        }
    }

    // ---------------------------------------------------------------- nodes

    fn observe(&mut self, i: usize, out: StepOutput) {
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
        let pairs = match KvReader::scan(&*store, g, b"", None, usize::MAX) {
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

    fn crash(&mut self, i: usize, down_ms: u64) {
        self.stats.crashes += 1;
        self.nodes[i].crash();
        self.nodes[i].restart_at = Some(self.now + down_ms);
        self.trace.u64(0xC0A5 ^ i as u64);
    }

    fn restart(&mut self, i: usize) {
        self.nodes[i].restart_at = None;
        self.nodes[i].boot(self.clock.clone());
        self.trace.u64(0xB007 ^ i as u64);
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

    // ---------------------------------------------------------------- faults

    fn faults(&mut self) {
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

    fn poll_reconfigs(&mut self) {
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

    // ---------------------------------------------------------------- clients

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

    fn pending(&self, op: OpRef, command: Option<String>) -> Pending {
        Pending {
            op,
            command,
            waiting: Waiting::Idle,
            retry_at: self.now,
            deadline: self.now + OP_TIMEOUT_MS,
            accepted: false,
        }
    }

    fn dispatch_clients(&mut self, new_ops: bool) {
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
                    reply,
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

    fn poll_clients(&mut self) {
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

    fn clients_busy(&self) -> bool {
        self.clients.iter().any(|c| c.pending.is_some())
    }

    // ---------------------------------------------------------------- phases

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

    fn recover(&mut self) {
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
    fn final_reads(&mut self) {
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

    fn check_histories(&mut self) {
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

    fn finish_stats(&mut self) {
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
