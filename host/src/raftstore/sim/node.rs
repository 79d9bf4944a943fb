//! One simulated node: the real [`StoreLoop`], apply logic and snapshot worker over a
//! [`MemStore`], driven by hand on the simulation's thread instead of by threads and
//! wall-clock time. A step drains the router's ready queue and control channel, runs
//! one store-loop round, then runs the apply tasks and snapshot generations the round
//! queued (each through the real `ApplyLoop::run` / `snapshot::run_worker`, fed from a
//! channel that is closed once the queued work is in it, so they return at once).
//!
//! raft-rs draws election timeouts from `thread_rng`; after every round the node
//! overwrites each peer's randomized timeout with a value derived from the seed and the
//! peer's (deterministic) state, so a seed replays exactly. A drawn value can only
//! matter before it is overwritten if an election timer fires within the same round it
//! was drawn in, which cannot happen: a reset puts `election_elapsed` at 0 and a round
//! ticks at most once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_channel::Receiver;
use parking_lot::Mutex;

use super::fsm::SimFsm;
use super::rng::mix;
use crate::ids::{GroupId, NodeId, PeerId, PluginDigest};
use crate::limits;
use crate::raftstore::apply::{ApplyLoop, ApplyTask};
use crate::raftstore::leaders::LeaderBoard;
use crate::raftstore::msg::{PeerSpec, StoreMsg};
use crate::raftstore::router::{Router, RouterReceivers};
use crate::raftstore::snapshot::{self, SnapSlot, SnapWorker};
use crate::raftstore::store_loop::StoreLoop;
use crate::raftstore::transport::{OutMessage, Transport};
use crate::raftstore::{Clock, FatalHandler};
use crate::storage::mem::MemStore;

/// The simulation's clock: milliseconds the world advances by hand.
#[derive(Debug, Default)]
pub struct SimClock(pub AtomicU64);

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Collects a round's outgoing messages for the world to put on the network.
#[derive(Default)]
struct Outbox(Mutex<Vec<OutMessage>>);

impl Transport for Outbox {
    fn send(&self, msgs: Vec<OutMessage>) {
        self.0.lock().extend(msgs);
    }
}

/// A running incarnation of a node (dropped on a crash).
pub struct Live {
    pub store_loop: StoreLoop,
    pub router: Arc<Router>,
    rx: RouterReceivers,
    apply_rx: Receiver<ApplyTask>,
    snap_rx: Receiver<(GroupId, Arc<SnapSlot>)>,
    outbox: Arc<Outbox>,
    fatal: Arc<Mutex<Vec<String>>>,
    fatal_handler: FatalHandler,
    /// Per group: (reset epoch, election_elapsed seen after the last round).
    timer_epochs: BTreeMap<GroupId, (u64, usize)>,
}

/// What one step of a node produced.
#[derive(Default)]
pub struct StepOutput {
    /// Apply tasks' committed entries, `(group, index, term, data hash)`, and received
    /// snapshots `(group, index, term, None)`.
    pub committed: Vec<(GroupId, u64, u64, Option<u64>)>,
    pub messages: Vec<OutMessage>,
    pub fatal: Vec<String>,
    pub ran: bool,
}

pub struct SimNode {
    pub id: NodeId,
    pub store: Arc<MemStore>,
    pub live: Option<Live>,
    /// The replicas this node hosts (what a restart starts again), as the server keeps
    /// a record of them next to the data.
    pub replicas: BTreeMap<GroupId, PeerId>,
    pub next_tick_ms: u64,
    pub restart_at: Option<u64>,
    pub incarnation: u64,
}

pub fn plugin() -> PluginDigest {
    PluginDigest::of(b"flotilla-sim")
}

impl SimNode {
    pub fn new(id: NodeId, store: Arc<MemStore>, first_tick_ms: u64) -> Self {
        Self {
            id,
            store,
            live: None,
            replicas: BTreeMap::new(),
            next_tick_ms: first_tick_ms,
            restart_at: None,
            incarnation: 0,
        }
    }

    /// Starts a fresh incarnation over the node's store and restarts every recorded
    /// replica from what the store holds.
    pub fn boot(&mut self, clock: Arc<SimClock>) {
        let (router, rx) = Router::new();
        let (apply_tx, apply_rx) = crossbeam_channel::unbounded();
        let (snap_worker, snap_rx) = SnapWorker::new();
        let fatal: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = fatal.clone();
        let fatal_handler: FatalHandler = Arc::new(move |why: &str| sink.lock().push(why.into()));
        let outbox = Arc::new(Outbox::default());
        let store_loop = StoreLoop {
            peers: Default::default(),
            router: router.clone(),
            log: self.store.clone(),
            apply_store: self.store.clone(),
            apply_tx,
            clock,
            fatal: fatal_handler.clone(),
            node: self.id,
            transport: outbox.clone(),
            snap_worker,
            leaders: Arc::new(LeaderBoard::default()),
            uninitialized: Default::default(),
            hibernating: Default::default(),
            awake: Default::default(),
            metrics: Default::default(),
        };
        self.incarnation += 1;
        self.live = Some(Live {
            store_loop,
            router,
            rx,
            apply_rx,
            snap_rx,
            outbox,
            fatal,
            fatal_handler,
            timer_epochs: BTreeMap::new(),
        });
        let replicas: Vec<_> = self.replicas.iter().map(|(g, p)| (*g, *p)).collect();
        for (group, peer) in replicas {
            self.start_peer(PeerSpec {
                group,
                peer,
                voters: Vec::new(),
                plugin: plugin(),
                campaign: false,
            });
        }
    }

    /// Starts (bootstraps or recovers) a peer through the store loop's control path.
    pub fn start_peer(&mut self, spec: PeerSpec) -> bool {
        let Some(live) = &mut self.live else {
            return false;
        };
        let group = spec.group;
        let (reply, mut rx) = tokio::sync::oneshot::channel();
        let mut scheduled = Vec::new();
        live.store_loop
            .control(StoreMsg::StartPeer { spec, reply }, &mut scheduled);
        let ok = matches!(rx.try_recv(), Ok(Ok(())));
        if ok {
            live.router.notify(group);
        }
        ok
    }

    /// Drops the running incarnation and every write the store had not synced.
    pub fn crash(&mut self) {
        self.live = None;
        self.store.crash();
    }

    /// One store-loop round (if anything is scheduled or `tick`), then the apply tasks
    /// and snapshot generations it queued.
    pub fn step(&mut self, tick: bool, seed: u64) -> StepOutput {
        let mut out = StepOutput::default();
        let Some(live) = &mut self.live else {
            return out;
        };
        let mut scheduled: Vec<GroupId> = live.rx.ready_rx.try_iter().collect();
        while let Ok(msg) = live.rx.control_rx.try_recv() {
            live.store_loop.control(msg, &mut scheduled);
        }
        if scheduled.is_empty() && !tick {
            return out;
        }
        out.ran = true;
        if let Err(e) = live.store_loop.round(scheduled, tick) {
            out.fatal.push(format!("round failed: {e}"));
        }
        fix_election_timers(live, self.id, seed);

        let tasks: Vec<ApplyTask> = live.apply_rx.try_iter().collect();
        if !tasks.is_empty() {
            for t in &tasks {
                if let ApplyTask::Entries {
                    group, committed, ..
                } = t
                {
                    if let Some((i, term)) = committed.snapshot {
                        out.committed.push((*group, i, term, None));
                    }
                    for e in &committed.entries {
                        let mut h = super::rng::Fnv::default();
                        h.u64(e.get_entry_type() as u64);
                        h.bytes(&e.data);
                        out.committed.push((*group, e.index, e.term, Some(h.0)));
                    }
                }
            }
            let (tx, rx) = crossbeam_channel::unbounded();
            for t in tasks {
                let _ = tx.send(t);
            }
            drop(tx);
            ApplyLoop {
                store: self.store.clone(),
                fsm: Arc::new(SimFsm),
                router: live.router.clone(),
                fatal: live.fatal_handler.clone(),
                metrics: Default::default(),
            }
            .run(rx);
        }

        let jobs: Vec<_> = live.snap_rx.try_iter().collect();
        if !jobs.is_empty() {
            let (tx, rx) = crossbeam_channel::bounded(jobs.len());
            for j in jobs {
                let _ = tx.send(j);
            }
            drop(tx);
            snapshot::run_worker(
                rx,
                self.id,
                self.store.clone(),
                live.router.clone(),
                live.fatal_handler.clone(),
            );
        }

        let mut msgs = std::mem::take(&mut *live.outbox.0.lock());
        // The store loop gathers messages from a HashMap of peers: put groups in a fixed
        // order (stable, so each group's own order is kept).
        msgs.sort_by_key(|m| m.group);
        out.messages = msgs;
        out.fatal.extend(live.fatal.lock().drain(..));
        out
    }
}

/// Replaces raft-rs's `thread_rng` election timeouts with seed-derived ones.
fn fix_election_timers(live: &mut Live, node: NodeId, seed: u64) {
    let span = limits::ELECTION_TICKS as u64;
    for (group, (peer, _)) in live.store_loop.peers.iter_mut() {
        let raft = &mut peer.raw.raft;
        let entry = live.timer_epochs.entry(*group).or_insert((0, 0));
        if raft.election_elapsed < entry.1 {
            entry.0 += 1;
        }
        entry.1 = raft.election_elapsed;
        let mut h = mix(seed, node.0);
        h = mix(h, group.0);
        h = mix(h, raft.term);
        h = mix(h, raft.state as u64);
        h = mix(h, entry.0);
        let timeout = limits::ELECTION_TICKS + (h % span) as usize;
        raft.set_randomized_election_timeout(timeout);
    }
}
