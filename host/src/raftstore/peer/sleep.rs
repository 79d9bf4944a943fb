//! The [`Peer`]'s side of hibernation (the rules live in [`super::super::hibernate`]):
//! ticking unless asleep, deciding when a leader's group is quiescent enough to send
//! hibernate notices, and waking.

use super::Peer;
use crate::ids::PeerId;
use crate::raftstore::hibernate;

impl Peer {
    /// Advances raft's clock unless the group hibernates; a leader whose group has
    /// been quiescent long enough sends hibernate notices and stops ticking. Returns
    /// true if there may be something to handle.
    pub fn tick(&mut self) -> bool {
        if self.hib.is_hibernating() {
            return false;
        }
        let ready = self.raw.tick();
        let leader = self.is_leader();
        let quiescent = leader && self.group.0 != 0 && hibernate::enabled() && self.quiescent();
        if self.hib.on_tick(quiescent) && leader {
            let raft = &mut self.raw.raft;
            let (me, term, commit) = (raft.id, raft.term, raft.raft_log.committed);
            let peers: Vec<u64> = raft.prs().iter().map(|(id, _)| *id).collect();
            for to in peers.into_iter().filter(|p| *p != me) {
                raft.msgs.push(hibernate::notice(me, to, term, commit));
            }
            self.hib.sleep();
            return true;
        }
        ready
    }

    /// Nothing in flight and every peer up to date: the group can hibernate.
    fn quiescent(&self) -> bool {
        let raft = &self.raw.raft;
        let last = raft.raft_log.last_index();
        self.pending_commands == 0
            && self.proposals.is_empty()
            && self.read_batches.is_empty()
            && self.reads_before_commit.is_empty()
            && self.reads_waiting_apply.is_empty()
            && self.installing.is_none()
            && self.compact_to.is_none()
            && raft.raft_log.committed == last
            && self.applied == last
            && !raft.has_pending_conf()
            && raft.lead_transferee.is_none()
            && raft.pending_read_count() == 0
            && self.raw.store().conf_state().voters_outgoing.is_empty()
            && raft.prs().iter().all(|(_, pr)| pr.matched == last)
    }

    /// Wakes a hibernating peer; a leader pings its followers so they wake too.
    pub fn wake(&mut self) {
        if self.hib.wake() && self.is_leader() {
            self.raw.ping();
        }
    }

    pub fn is_hibernating(&self) -> bool {
        self.hib.is_hibernating()
    }

    /// The node hosting this peer's leader, if one is known.
    pub fn leader_node(&self) -> Option<crate::ids::NodeId> {
        let id = self.raw.raft.leader_id;
        (id != 0).then(|| PeerId(id).node())
    }
}
