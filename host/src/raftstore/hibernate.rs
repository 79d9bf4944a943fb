//! Hibernation of idle groups: a group with nothing to do stops ticking, so ten
//! thousand idle groups cost no heartbeats and almost no CPU.
//!
//! - A **leader** counts ticks during which its group is quiescent (no proposals or
//!   reads in flight, everything committed and applied, every peer matched up to the
//!   last index, no membership change or transfer under way). After
//!   [`HIBERNATE_IDLE_TICKS`] of them it sends each peer a *hibernate notice* (a
//!   heartbeat carrying [`NOTICE_CONTEXT`]) and stops ticking.
//! - A **follower** stops ticking when it steps a notice from its leader.
//! - Any other raft message, a proposal, a read, a membership or leadership request
//!   **wakes** the peer; a woken leader pings its followers at once, which wakes them.
//!   Heartbeat responses (the answers to the notice) do not wake a leader.
//! - A hibernating follower does not notice that its leader died; the node does: when a
//!   node stops answering probes for [`DOWN_AFTER_MS`] ([`Silence`]), every local peer
//!   whose leader lives there is woken ([`super::RaftStore::wake_led_by`]) and elects a
//!   new leader in the usual timeout.
//! - **Leases stay safe:** a leader that did not tick cannot have run check-quorum, so
//!   it serves lease reads only after [`LEASE_WARMUP_TICKS`] of ticking since it last
//!   woke (two full check-quorum periods); until then lease reads take the ReadIndex
//!   path, which asks a quorum.

use raft::eraftpb::{Message, MessageType};

use crate::limits;

/// Quiescent ticks before a leader hibernates its group (two election timeouts).
pub const HIBERNATE_IDLE_TICKS: u32 = 2 * limits::ELECTION_TICKS as u32;

/// Ticks a woken leader must run before it trusts its lease again.
pub const LEASE_WARMUP_TICKS: u32 = 2 * limits::ELECTION_TICKS as u32;

/// The heartbeat context that marks a hibernate notice. Its length differs from the
/// 8-byte read-index contexts, so it never matches a pending read.
pub const NOTICE_CONTEXT: &[u8] = b"flotilla/hibernate";

/// A hibernate notice from `from` (the leader) to `to`.
pub fn notice(from: u64, to: u64, term: u64, commit: u64) -> Message {
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgHeartbeat);
    m.from = from;
    m.to = to;
    m.term = term;
    m.commit = commit;
    m.context = NOTICE_CONTEXT.to_vec().into();
    m
}

pub fn is_notice(m: &Message) -> bool {
    m.get_msg_type() == MessageType::MsgHeartbeat && m.context.as_ref() == NOTICE_CONTEXT
}

/// Whether stepping `m` should wake a hibernating peer.
pub fn wakes(m: &Message) -> bool {
    !(is_notice(m) || m.get_msg_type() == MessageType::MsgHeartbeatResponse)
}

/// How long a node is silent before the followers of its leaders are woken (one
/// election timeout).
pub const DOWN_AFTER_MS: u64 = limits::TICK_INTERVAL_MS * limits::ELECTION_TICKS as u64;
/// How often the wake-up is repeated while a node stays silent (for replicas that
/// hibernated again meanwhile).
pub const REWAKE_EVERY_MS: u64 = 5_000;

/// One other node as seen by the liveness probes: since when it has been silent, and
/// when the followers of its leaders were last woken. Time in milliseconds of any
/// monotonic clock (the simulation's, or the process's).
#[derive(Debug, Default)]
pub struct Silence {
    since: Option<u64>,
    woken: Option<u64>,
}

impl Silence {
    /// Records a probe; returns true if the node's followers should be woken now.
    pub fn probe(&mut self, answered: bool, now_ms: u64) -> bool {
        if answered {
            *self = Self::default();
            return false;
        }
        let since = *self.since.get_or_insert(now_ms);
        let due = now_ms.saturating_sub(since) >= DOWN_AFTER_MS
            && self
                .woken
                .is_none_or(|w| now_ms.saturating_sub(w) >= REWAKE_EVERY_MS);
        if due {
            self.woken = Some(now_ms);
        }
        due
    }
}

/// Whether groups may hibernate at all: on, unless the process was started with
/// `FLOTILLA_HIBERNATE=off` (a benchmarking switch, to measure what idle groups cost
/// without it; read once).
pub fn enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var("FLOTILLA_HIBERNATE").map_or(true, |v| v != "off"))
}

/// One peer's hibernation state.
#[derive(Debug, Default)]
pub struct Hibernation {
    hibernating: bool,
    idle_ticks: u32,
    /// Ticks since the peer last woke (saturating); starts at 0, so a new leader also
    /// warms up before serving lease reads.
    awake_ticks: u32,
}

impl Hibernation {
    pub fn is_hibernating(&self) -> bool {
        self.hibernating
    }

    /// Counts one tick of an awake peer; `quiescent` says whether the group (as its
    /// leader sees it) has nothing to do. Returns true when the leader should hibernate
    /// now.
    pub fn on_tick(&mut self, quiescent: bool) -> bool {
        self.awake_ticks = self.awake_ticks.saturating_add(1);
        if !quiescent {
            self.idle_ticks = 0;
            return false;
        }
        self.idle_ticks += 1;
        self.idle_ticks >= HIBERNATE_IDLE_TICKS
    }

    pub fn sleep(&mut self) {
        self.hibernating = true;
        self.idle_ticks = 0;
    }

    /// Wakes the peer; returns true if it was hibernating.
    pub fn wake(&mut self) -> bool {
        self.idle_ticks = 0;
        if self.hibernating {
            self.hibernating = false;
            self.awake_ticks = 0;
            true
        } else {
            false
        }
    }

    /// Some activity that keeps the group awake without having hibernated.
    pub fn touch(&mut self) {
        self.idle_ticks = 0;
    }

    pub fn lease_ready(&self) -> bool {
        !self.hibernating && self.awake_ticks >= LEASE_WARMUP_TICKS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_leader_hibernates_after_the_idle_ticks_and_activity_resets_them() {
        let mut h = Hibernation::default();
        for _ in 1..HIBERNATE_IDLE_TICKS {
            assert!(!h.on_tick(true));
        }
        h.touch();
        for _ in 1..HIBERNATE_IDLE_TICKS {
            assert!(!h.on_tick(true));
        }
        assert!(!h.on_tick(false), "a busy tick resets the count");
        for _ in 1..HIBERNATE_IDLE_TICKS {
            assert!(!h.on_tick(true));
        }
        assert!(h.on_tick(true));
        h.sleep();
        assert!(h.is_hibernating());
        assert!(!h.lease_ready());
    }

    #[test]
    fn a_woken_leader_warms_up_before_trusting_its_lease() {
        let mut h = Hibernation::default();
        for _ in 0..LEASE_WARMUP_TICKS {
            h.on_tick(false);
        }
        assert!(h.lease_ready());
        h.sleep();
        assert!(h.wake());
        assert!(!h.wake(), "waking twice reports once");
        for _ in 1..LEASE_WARMUP_TICKS {
            h.on_tick(false);
        }
        assert!(!h.lease_ready());
        h.on_tick(false);
        assert!(h.lease_ready());
    }

    #[test]
    fn a_silent_node_wakes_its_followers_after_the_timeout_then_every_few_seconds() {
        let mut s = Silence::default();
        let t0 = 1_000;
        assert!(!s.probe(true, t0));
        assert!(!s.probe(false, t0));
        assert!(!s.probe(false, t0 + DOWN_AFTER_MS / 2));
        assert!(s.probe(false, t0 + DOWN_AFTER_MS));
        assert!(!s.probe(false, t0 + DOWN_AFTER_MS + 1_000));
        assert!(s.probe(false, t0 + DOWN_AFTER_MS + REWAKE_EVERY_MS));
        assert!(!s.probe(true, t0 + DOWN_AFTER_MS + REWAKE_EVERY_MS * 2));
        let t1 = t0 + REWAKE_EVERY_MS * 3;
        assert!(!s.probe(false, t1), "an answer resets the silence");
        assert!(s.probe(false, t1 + DOWN_AFTER_MS));
    }

    #[test]
    fn notices_and_heartbeat_answers_do_not_wake() {
        let n = notice(1, 2, 5, 10);
        assert!(is_notice(&n) && !wakes(&n));
        let mut r = Message::default();
        r.set_msg_type(MessageType::MsgHeartbeatResponse);
        assert!(!wakes(&r));
        let mut hb = Message::default();
        hb.set_msg_type(MessageType::MsgHeartbeat);
        assert!(
            wakes(&hb),
            "a plain heartbeat (a woken leader's ping) wakes"
        );
        let mut v = Message::default();
        v.set_msg_type(MessageType::MsgRequestPreVote);
        assert!(wakes(&v));
    }
}
