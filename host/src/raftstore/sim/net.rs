//! The simulated network between nodes: a queue of raft messages ordered by delivery
//! time, with fault filters drawn from one seeded stream. Random drops, bounded random
//! delays (which also reorder), duplicates and directed link cuts (a two-sided
//! partition cuts both directions, a one-way partition one, isolating a node cuts all
//! its links). A message on a cut link is refused at send time (a real transport's
//! connection fails: the sender hears `report_unreachable`) and dropped at delivery if
//! the cut happened while it was in flight.

use std::collections::{BTreeMap, BTreeSet};

use super::rng::Rng;
use crate::ids::NodeId;
use crate::raftstore::transport::OutMessage;

/// How lossy the network is right now.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Weather {
    pub drop: f64,
    pub duplicate: f64,
    pub delay_min_ms: u64,
    pub delay_max_ms: u64,
    /// Chance of an extra long delay (up to `delay_max_ms * 10`): late, reordered messages.
    pub straggle: f64,
}

impl Weather {
    pub const CALM: Weather = Weather {
        drop: 0.0,
        duplicate: 0.0,
        delay_min_ms: 1,
        delay_max_ms: 10,
        straggle: 0.0,
    };
}

/// What became of a message handed to the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    Queued,
    /// Lost silently (the sender cannot tell).
    Lost,
    /// Refused: the link is cut (the sender's transport notices).
    Unreachable,
}

pub struct Net {
    queue: BTreeMap<(u64, u64), (NodeId, OutMessage)>,
    seq: u64,
    pub weather: Weather,
    cut: BTreeSet<(NodeId, NodeId)>,
    rng: Rng,
    pub delivered: u64,
    pub lost: u64,
}

impl Net {
    pub fn new(rng: Rng) -> Self {
        Self {
            queue: BTreeMap::new(),
            seq: 0,
            weather: Weather::CALM,
            cut: BTreeSet::new(),
            rng,
            delivered: 0,
            lost: 0,
        }
    }

    pub fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.cut.contains(&(from, to))
    }

    /// Queues `msg` from `from`, subject to the weather and the cuts.
    pub fn send(&mut self, now: u64, from: NodeId, msg: OutMessage) -> Sent {
        if self.is_cut(from, msg.to_node) {
            self.lost += 1;
            return Sent::Unreachable;
        }
        let w = self.weather;
        if self.rng.chance(w.drop) {
            self.lost += 1;
            return Sent::Lost;
        }
        let copies = if self.rng.chance(w.duplicate) { 2 } else { 1 };
        for _ in 0..copies {
            let mut delay = self.rng.range(w.delay_min_ms, w.delay_max_ms);
            if self.rng.chance(w.straggle) {
                delay += self.rng.range(w.delay_max_ms, w.delay_max_ms * 10);
            }
            self.seq += 1;
            self.queue
                .insert((now + delay, self.seq), (from, msg.clone()));
        }
        Sent::Queued
    }

    /// Messages due at or before `now`, in delivery order; those whose link was cut
    /// while they were in flight are returned as lost (`false`).
    pub fn due(&mut self, now: u64) -> Vec<(NodeId, OutMessage, bool)> {
        let later = self.queue.split_off(&(now + 1, 0));
        let due = std::mem::replace(&mut self.queue, later);
        due.into_values()
            .map(|(from, m)| {
                let ok = !self.is_cut(from, m.to_node);
                if ok {
                    self.delivered += 1;
                } else {
                    self.lost += 1;
                }
                (from, m, ok)
            })
            .collect()
    }

    /// Cuts every link between `a` and `b`, both ways.
    pub fn partition(&mut self, a: &[NodeId], b: &[NodeId]) {
        for x in a {
            for y in b {
                self.cut.insert((*x, *y));
                self.cut.insert((*y, *x));
            }
        }
    }

    /// Cuts the links from `a` to `b` only.
    pub fn one_way(&mut self, a: &[NodeId], b: &[NodeId]) {
        for x in a {
            for y in b {
                self.cut.insert((*x, *y));
            }
        }
    }

    /// Cuts every link of `n`.
    pub fn isolate(&mut self, n: NodeId, all: &[NodeId]) {
        for m in all {
            if *m != n {
                self.cut.insert((n, *m));
                self.cut.insert((*m, n));
            }
        }
    }

    /// Restores every link and calms the weather.
    pub fn heal(&mut self) {
        self.cut.clear();
        self.weather = Weather::CALM;
    }
}
