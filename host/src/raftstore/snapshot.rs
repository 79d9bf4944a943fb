//! Snapshot generation off the raft loop. raft-rs asks a leader's `Storage` for a
//! snapshot when a follower is too far behind; [`PeerStorage`](super::peer_storage)
//! answers "temporarily unavailable" and queues the group here. The snapshot worker has
//! the storage room write the group's applied state to a snapshot file, then parks the
//! finished `Snapshot` in the group's [`SnapSlot`] and schedules the group, so raft-rs
//! picks it up on its next attempt.

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use parking_lot::Mutex;
use prost::Message as _;
use raft::eraftpb::{Snapshot, SnapshotMetadata};

use super::FatalHandler;
use super::router::Router;
use super::traits::ApplyStore;
use crate::ids::{GroupId, NodeId};
use crate::proto::v1::SnapshotHeader;

/// Snapshot generations queued at once, at most (one per group at a time).
pub const SNAPSHOT_QUEUE_CAPACITY: usize = 256;

#[derive(Debug, Default)]
enum SlotState {
    #[default]
    Idle,
    Generating,
    Ready(Box<Snapshot>),
}

/// One group's snapshot, being generated or ready to send.
#[derive(Debug, Default)]
pub struct SnapSlot {
    state: Mutex<SlotState>,
}

impl SnapSlot {
    /// A ready snapshot at or after `min_index`, or `None` after queueing a generation
    /// (unless one is running).
    pub fn get_or_request(
        self: &Arc<Self>,
        group: GroupId,
        min_index: u64,
        to: u64,
        worker: &SnapWorker,
    ) -> Option<Snapshot> {
        let mut state = self.state.lock();
        match &*state {
            // Reusable for another follower only if it is recent enough and already
            // names the follower (a snapshot from before a peer was added is refused).
            SlotState::Ready(s)
                if s.get_metadata().index >= min_index && names(s.get_metadata(), to) =>
            {
                return Some((**s).clone());
            }
            SlotState::Generating => return None,
            _ => {}
        }
        match worker.tx.try_send((group, self.clone())) {
            Ok(()) => *state = SlotState::Generating,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                tracing::debug!(group = group.0, "snapshot queue full; raft will ask again");
            }
        }
        None
    }
}

fn names(meta: &SnapshotMetadata, peer: u64) -> bool {
    let cs = meta.get_conf_state();
    cs.voters.contains(&peer)
        || cs.learners.contains(&peer)
        || cs.voters_outgoing.contains(&peer)
        || cs.learners_next.contains(&peer)
}

/// The handle peers use to queue generations.
#[derive(Clone, Debug)]
pub struct SnapWorker {
    tx: Sender<(GroupId, Arc<SnapSlot>)>,
}

impl SnapWorker {
    pub fn new() -> (Self, Receiver<(GroupId, Arc<SnapSlot>)>) {
        let (tx, rx) = crossbeam_channel::bounded(SNAPSHOT_QUEUE_CAPACITY);
        (Self { tx }, rx)
    }
}

/// Runs generations until every [`SnapWorker`] handle is gone.
pub fn run_worker(
    rx: Receiver<(GroupId, Arc<SnapSlot>)>,
    node: NodeId,
    store: Arc<dyn ApplyStore>,
    router: Arc<Router>,
    fatal: FatalHandler,
) {
    while let Ok((group, slot)) = rx.recv() {
        let info = match store.generate_snapshot(group) {
            Ok(info) => info,
            Err(e) => {
                if router.mailbox(group).is_some() {
                    (fatal)(&format!("cannot generate a snapshot of group {group}: {e}"));
                    return;
                }
                // The group was destroyed meanwhile.
                *slot.state.lock() = SlotState::Idle;
                continue;
            }
        };
        let header = SnapshotHeader {
            group_id: group.0,
            index: info.state.applied_index,
            term: info.state.applied_term,
            plugin_digest: info.state.plugin.0.to_vec(),
            applied_timestamp_ms: info.state.applied_timestamp_ms,
            file_size_bytes: info.file_size_bytes,
            from_node: node.0,
        };
        let mut meta = SnapshotMetadata {
            index: info.state.applied_index,
            term: info.state.applied_term,
            ..Default::default()
        };
        meta.set_conf_state(info.conf_state);
        let mut snap = Snapshot::default();
        snap.set_metadata(meta);
        snap.data = header.encode_to_vec().into();
        tracing::info!(
            group = group.0,
            index = header.index,
            bytes = header.file_size_bytes,
            "snapshot generated"
        );
        *slot.state.lock() = SlotState::Ready(Box::new(snap));
        router.notify(group);
    }
}

/// Decodes the header a snapshot's data carries.
pub fn header_of(snap: &Snapshot) -> Result<SnapshotHeader, String> {
    SnapshotHeader::decode(snap.get_data()).map_err(|e| format!("undecodable snapshot header: {e}"))
}
