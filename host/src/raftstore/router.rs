//! The router: group id → bounded mailbox. Sending to a mailbox schedules its group for
//! the next store-loop round (once: a flag keeps a group from being queued twice, so the
//! ready queue never holds more than one slot per group).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::RwLock;

use super::msg::{PeerMsg, RaftError, StoreMsg};
use super::shared::GroupShared;
use crate::ids::GroupId;
use crate::limits;

/// One group's mailbox.
pub struct Mailbox {
    tx: Sender<PeerMsg>,
    pub(super) rx: Receiver<PeerMsg>,
    /// Messages queued; the bound is [`limits::MAILBOX_CAPACITY`]. The channel itself
    /// is unbounded (a linked list of small blocks): a bounded crossbeam channel
    /// allocates every slot up front, which was most of an idle replica's ~79 KiB.
    len: AtomicUsize,
    scheduled: AtomicBool,
    pub shared: Arc<GroupShared>,
}

impl Mailbox {
    /// Clears the scheduled flag; the store loop calls it before draining.
    pub(super) fn unschedule(&self) {
        self.scheduled.store(false, Ordering::Release);
    }

    /// Queues a message from the store loop itself (the caller schedules the group).
    pub(super) fn send_local(&self, msg: PeerMsg) -> bool {
        self.try_push(msg).is_ok()
    }

    /// Queues `msg` unless [`limits::MAILBOX_CAPACITY`] messages are waiting.
    fn try_push(&self, msg: PeerMsg) -> Result<(), TrySendError<PeerMsg>> {
        if self.len.fetch_add(1, Ordering::AcqRel) >= limits::MAILBOX_CAPACITY {
            self.len.fetch_sub(1, Ordering::AcqRel);
            return Err(TrySendError::Full(msg));
        }
        self.tx.send(msg).map_err(|e| {
            self.len.fetch_sub(1, Ordering::AcqRel);
            TrySendError::Disconnected(e.0)
        })
    }

    /// Takes up to `max` queued messages.
    pub(super) fn drain(&self, max: usize) -> Vec<PeerMsg> {
        let msgs: Vec<PeerMsg> = self.rx.try_iter().take(max).collect();
        self.len.fetch_sub(msgs.len(), Ordering::AcqRel);
        msgs
    }
}

pub struct Router {
    mailboxes: RwLock<HashMap<GroupId, Arc<Mailbox>>>,
    ready_tx: Sender<GroupId>,
    pub(super) control_tx: Sender<StoreMsg>,
    /// Groups whose data the apply loop has not removed yet.
    destroying: parking_lot::Mutex<std::collections::HashSet<GroupId>>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("groups", &self.mailboxes.read().len())
            .finish()
    }
}

/// The receiving ends the store loop owns.
pub struct RouterReceivers {
    pub ready_rx: Receiver<GroupId>,
    pub control_rx: Receiver<StoreMsg>,
}

impl Router {
    pub fn new() -> (Arc<Self>, RouterReceivers) {
        // Each group sits in the ready queue at most once (see `schedule`).
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(limits::GROUPS_PER_NODE_MAX);
        let (control_tx, control_rx) = crossbeam_channel::bounded(1024);
        let router = Arc::new(Self {
            mailboxes: RwLock::new(HashMap::new()),
            ready_tx,
            control_tx,
            destroying: Default::default(),
        });
        (
            router,
            RouterReceivers {
                ready_rx,
                control_rx,
            },
        )
    }

    /// Sends `msg` to `group`'s mailbox and schedules the group.
    pub fn send(&self, group: GroupId, msg: PeerMsg) -> Result<(), RaftError> {
        let mailbox = self.mailbox(group).ok_or(RaftError::GroupNotFound(group))?;
        match mailbox.try_push(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(RaftError::Busy {
                    group,
                    reason: format!("mailbox full ({} messages)", limits::MAILBOX_CAPACITY),
                    retry_after_ms: limits::TICK_INTERVAL_MS,
                });
            }
            Err(TrySendError::Disconnected(_)) => return Err(RaftError::Stopped),
        }
        if self.schedule(group, &mailbox) {
            Ok(())
        } else {
            Err(RaftError::Stopped)
        }
    }

    /// Schedules `group` for the next round without a message (e.g. after apply).
    pub fn notify(&self, group: GroupId) {
        if let Some(mailbox) = self.mailbox(group) {
            let _ = self.schedule(group, &mailbox);
        }
    }

    /// Marks `group` as being destroyed: it cannot start again until
    /// [`Router::destroyed`] (the apply loop removes its data first).
    pub(super) fn destroying(&self, group: GroupId) {
        self.destroying.lock().insert(group);
    }

    pub(super) fn destroyed(&self, group: GroupId) {
        self.destroying.lock().remove(&group);
    }

    pub(super) fn is_destroying(&self, group: GroupId) -> bool {
        self.destroying.lock().contains(&group)
    }

    /// Returns false if the store loop is gone.
    fn schedule(&self, group: GroupId, mailbox: &Mailbox) -> bool {
        if !mailbox.scheduled.swap(true, Ordering::AcqRel) {
            // Full only with stale ids of destroyed groups: one slot per live group.
            if self.ready_tx.try_send(group).is_err() {
                mailbox.scheduled.store(false, Ordering::Release);
                return false;
            }
        }
        true
    }

    pub fn mailbox(&self, group: GroupId) -> Option<Arc<Mailbox>> {
        self.mailboxes.read().get(&group).cloned()
    }

    pub fn shared(&self, group: GroupId) -> Option<Arc<GroupShared>> {
        self.mailbox(group).map(|m| m.shared.clone())
    }

    /// Adds a mailbox for `group`. Fails if the node already hosts its limit of groups.
    pub(super) fn register(
        &self,
        group: GroupId,
        shared: Arc<GroupShared>,
    ) -> Result<Arc<Mailbox>, RaftError> {
        let mut map = self.mailboxes.write();
        if map.contains_key(&group) {
            return Err(RaftError::GroupExists(group));
        }
        if map.len() >= limits::GROUPS_PER_NODE_MAX {
            return Err(RaftError::Busy {
                group,
                reason: format!(
                    "node hosts its limit of {} groups",
                    limits::GROUPS_PER_NODE_MAX
                ),
                retry_after_ms: 60_000,
            });
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        let mailbox = Arc::new(Mailbox {
            tx,
            rx,
            len: AtomicUsize::new(0),
            scheduled: AtomicBool::new(false),
            shared,
        });
        map.insert(group, mailbox.clone());
        Ok(mailbox)
    }

    pub(super) fn remove(&self, group: GroupId) {
        self.mailboxes.write().remove(&group);
    }

    /// Every group with a mailbox, ascending.
    pub fn groups(&self) -> Vec<GroupId> {
        let mut g: Vec<_> = self.mailboxes.read().keys().copied().collect();
        g.sort_unstable();
        g
    }

    pub fn send_control(&self, msg: StoreMsg) -> Result<(), RaftError> {
        self.control_tx.try_send(msg).map_err(|e| match e {
            TrySendError::Full(_) => RaftError::Busy {
                group: GroupId(0),
                reason: "store control queue full".into(),
                retry_after_ms: limits::TICK_INTERVAL_MS,
            },
            TrySendError::Disconnected(_) => RaftError::Stopped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raftstore::traits::ApplyState;

    #[test]
    fn a_mailbox_refuses_messages_over_its_bound_until_drained() {
        let (router, _rx) = Router::new();
        let g = GroupId(3);
        let shared = Arc::new(GroupShared::new(ApplyState {
            applied_index: 0,
            applied_term: 0,
            applied_timestamp_ms: 0,
            plugin: crate::ids::PluginDigest([0; 32]),
        }));
        let mailbox = router.register(g, shared).expect("register");
        for _ in 0..limits::MAILBOX_CAPACITY {
            router
                .send(g, PeerMsg::Campaign)
                .expect("room in the mailbox");
        }
        let full = router.send(g, PeerMsg::Campaign);
        assert!(matches!(full, Err(RaftError::Busy { .. })), "{full:?}");
        assert_eq!(mailbox.drain(10).len(), 10);
        for _ in 0..10 {
            router.send(g, PeerMsg::Campaign).expect("room again");
        }
        assert!(router.send(g, PeerMsg::Campaign).is_err());
        assert_eq!(mailbox.drain(usize::MAX).len(), limits::MAILBOX_CAPACITY);
        assert!(mailbox.rx.is_empty());
    }
}
