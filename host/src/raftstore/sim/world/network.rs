//! The [`World`]'s network side: handing the simulated network's due messages to the
//! nodes' routers (and telling senders about unreachable peers and snapshot outcomes),
//! putting each node's outgoing messages on the network, and the liveness probes that
//! wake hibernating replicas led from a node no one can hear.

use raft::eraftpb::MessageType;

use super::World;
use crate::ids::PeerId;
use crate::limits;
use crate::raftstore::msg::PeerMsg;
use crate::raftstore::sim::net::Sent;
use crate::raftstore::sim::rng::Fnv;
use crate::raftstore::transport::OutMessage;

impl World {
    /// What `api::liveness` does on a real node: a node that cannot hear another (it
    /// is down, or the network between them is cut) wakes the replicas led from there.
    pub(super) fn probe_liveness(&mut self) {
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

    pub(super) fn deliver(&mut self) {
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

    pub(super) fn send_out(&mut self, from: usize, msgs: Vec<OutMessage>) {
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
}
