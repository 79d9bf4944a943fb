//! The leader board: the latest known leader of every group hosted on this node, for
//! `WatchLeaders` streams. The store loop writes it without ever blocking (one short
//! lock, no channel sends); watchers wake on a sequence number and read what changed
//! since the last number they saw. Updates coalesce per group, so a slow watcher skips
//! intermediate leaders but always sees the latest one, and memory is bounded by the
//! number of groups.

use std::collections::HashMap;

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::ids::{GroupId, PeerId};

/// One group's leadership as this node last saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderInfo {
    pub group: GroupId,
    pub leader: Option<PeerId>,
    pub term: u64,
    /// The board's sequence number when this was recorded.
    pub seq: u64,
}

#[derive(Debug)]
pub struct LeaderBoard {
    inner: Mutex<(u64, HashMap<GroupId, LeaderInfo>)>,
    tx: watch::Sender<u64>,
}

impl Default for LeaderBoard {
    fn default() -> Self {
        Self {
            inner: Mutex::new((0, HashMap::new())),
            tx: watch::channel(0).0,
        }
    }
}

impl LeaderBoard {
    /// Records `group`'s leader; a no-op if nothing changed.
    pub fn update(&self, group: GroupId, leader: Option<PeerId>, term: u64) {
        let seq = {
            let mut inner = self.inner.lock();
            if let Some(old) = inner.1.get(&group)
                && old.leader == leader
                && old.term == term
            {
                return;
            }
            inner.0 += 1;
            let seq = inner.0;
            inner.1.insert(
                group,
                LeaderInfo {
                    group,
                    leader,
                    term,
                    seq,
                },
            );
            seq
        };
        self.tx.send_replace(seq);
    }

    /// Forgets a group that left this node.
    pub fn remove(&self, group: GroupId) {
        self.inner.lock().1.remove(&group);
    }

    /// Every group whose leadership changed after `seq`, ordered by group, and the
    /// current sequence number.
    pub fn changed_since(&self, seq: u64) -> (Vec<LeaderInfo>, u64) {
        let inner = self.inner.lock();
        let mut out: Vec<LeaderInfo> = inner.1.values().filter(|i| i.seq > seq).copied().collect();
        out.sort_by_key(|i| i.group);
        (out, inner.0)
    }

    /// The latest leader of `group` known here.
    pub fn get(&self, group: GroupId) -> Option<LeaderInfo> {
        self.inner.lock().1.get(&group).copied()
    }

    /// Wakes when the board changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_coalesce_and_watchers_see_the_latest() {
        let board = LeaderBoard::default();
        let rx = board.subscribe();
        board.update(GroupId(1), Some(PeerId(1)), 1);
        board.update(GroupId(1), Some(PeerId(1)), 1); // no change
        board.update(GroupId(2), None, 1);
        board.update(GroupId(1), Some(PeerId(2)), 2);
        assert_eq!(*rx.borrow(), 3);
        let (changed, seq) = board.changed_since(0);
        assert_eq!(seq, 3);
        assert_eq!(changed.len(), 2);
        assert_eq!(changed[0].leader, Some(PeerId(2)));
        assert_eq!(changed[0].term, 2);
        let (later, _) = board.changed_since(seq);
        assert!(later.is_empty());
    }
}
