//! The raft core's metrics: proposals and their failures, store-loop rounds and
//! persistence (fsync) rounds, messages handed to the transport, applies, and gauges of
//! the groups this node hosts.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::{count_buckets, duration_buckets};

type ReasonLabel = [(&'static str, &'static str); 1];

/// Failed proposals by reason, each resolved once to its own counter so that counting
/// one is a single atomic add (no label lookup).
#[derive(Clone, Debug)]
pub struct ProposalFailures {
    family: Family<ReasonLabel, Counter>,
    /// Not the leader (the API layer may forward it to the leader).
    pub not_leader: Counter,
    /// Overloaded: too many pending proposals or apply lag (`RESOURCE_EXHAUSTED`).
    pub busy: Counter,
    /// Dropped before it committed (leadership changed), or the log was overwritten.
    pub dropped: Counter,
    /// Applied, but the plugin refused it (its error, a trap, fuel or memory).
    pub plugin: Counter,
    /// Anything else (unknown group, shutting down, invalid).
    pub other: Counter,
}

impl Default for ProposalFailures {
    fn default() -> Self {
        let family = Family::<ReasonLabel, Counter>::default();
        let get = |reason| family.get_or_create_owned(&[("reason", reason)]);
        Self {
            not_leader: get("not_leader"),
            busy: get("busy"),
            dropped: get("dropped"),
            plugin: get("plugin"),
            other: get("other"),
            family,
        }
    }
}

/// Handles the store loop, the apply loop and [`crate::raftstore::RaftStore`] update.
/// `Default` gives working handles registered nowhere (tests, the simulation).
#[derive(Clone, Debug)]
pub struct RaftMetrics {
    /// Client commands proposed through this node's raft store.
    pub proposals: Counter,
    pub proposals_failed: ProposalFailures,
    /// Store-loop rounds.
    pub store_rounds: Counter,
    /// Raft `Ready`s handled (one per group with output per round).
    pub readies: Counter,
    /// Duration of one persistence round (one write batch and its fsync).
    pub fsync_duration: Histogram,
    /// Raft log entries written per persistence round (writes per fsync).
    pub fsync_entries: Histogram,
    /// Groups written per persistence round.
    pub fsync_groups: Histogram,
    /// Raft messages the store loop handed to the transport.
    pub raft_messages_sent: Counter,
    /// Groups with a replica on this node.
    pub groups: Gauge,
    /// Groups whose replica on this node leads.
    pub groups_led: Gauge,
    /// Proposals waiting to be applied, summed over groups.
    pub proposals_pending: Gauge,
    /// Groups not ticking (hibernating).
    pub groups_hibernating: Gauge,
    /// Log entries applied.
    pub entries_applied: Counter,
    /// Client commands applied (an entry carries one or more).
    pub commands_applied: Counter,
    /// Duration of applying one batch of one group's committed entries.
    pub apply_duration: Histogram,
    /// Panics of host code caught in the apply loop or a query thread outside a plugin
    /// call (the entry's commands or the reads were answered with an error instead).
    pub host_panics: Counter,
}

impl Default for RaftMetrics {
    fn default() -> Self {
        Self {
            proposals: Counter::default(),
            proposals_failed: ProposalFailures::default(),
            store_rounds: Counter::default(),
            readies: Counter::default(),
            fsync_duration: Histogram::new(duration_buckets()),
            fsync_entries: Histogram::new(count_buckets()),
            fsync_groups: Histogram::new(count_buckets()),
            raft_messages_sent: Counter::default(),
            groups: Gauge::default(),
            groups_led: Gauge::default(),
            proposals_pending: Gauge::default(),
            groups_hibernating: Gauge::default(),
            entries_applied: Counter::default(),
            commands_applied: Counter::default(),
            apply_duration: Histogram::new(duration_buckets()),
            host_panics: Counter::default(),
        }
    }
}

impl RaftMetrics {
    pub(super) fn register(&self, r: &mut Registry) {
        r.register(
            "proposals",
            "Client commands proposed through this node's raft groups",
            self.proposals.clone(),
        );
        r.register(
            "proposals_failed",
            "Proposals that did not apply successfully, by reason",
            self.proposals_failed.family.clone(),
        );
        r.register(
            "store_rounds",
            "Store-loop rounds (messages in, raft ticked, one persistence round, readies advanced)",
            self.store_rounds.clone(),
        );
        r.register(
            "raft_readies",
            "Raft Ready states handled (one per group with output per round)",
            self.readies.clone(),
        );
        r.register_with_unit(
            "fsync_duration",
            "Duration of one persistence round: one write batch for every group and one fsync",
            Unit::Seconds,
            self.fsync_duration.clone(),
        );
        r.register(
            "fsync_entries",
            "Raft log entries written per persistence round (writes per fsync)",
            self.fsync_entries.clone(),
        );
        r.register(
            "fsync_groups",
            "Groups written per persistence round",
            self.fsync_groups.clone(),
        );
        r.register(
            "raft_messages_sent",
            "Raft messages the store loop handed to the transport",
            self.raft_messages_sent.clone(),
        );
        r.register(
            "groups",
            "Groups with a replica on this node",
            self.groups.clone(),
        );
        r.register(
            "groups_led",
            "Groups whose replica on this node is the leader",
            self.groups_led.clone(),
        );
        r.register(
            "proposals_pending",
            "Proposed client commands not applied yet, summed over the groups",
            self.proposals_pending.clone(),
        );
        r.register(
            "groups_hibernating",
            "Idle groups that neither tick nor send heartbeats",
            self.groups_hibernating.clone(),
        );
        r.register(
            "entries_applied",
            "Raft log entries applied to the state machines",
            self.entries_applied.clone(),
        );
        r.register(
            "commands_applied",
            "Client commands applied (an entry carries one or more)",
            self.commands_applied.clone(),
        );
        r.register(
            "raft_host_panics",
            "Panics of host code caught in the apply loop or a query thread (outside plugin \
             calls); the commands or reads got an error and the node kept running",
            self.host_panics.clone(),
        );
        r.register_with_unit(
            "apply_duration",
            "Duration of one apply round: the committed entries of the groups queued together, applied and committed in one storage batch",
            Unit::Seconds,
            self.apply_duration.clone(),
        );
    }

    /// Counts one persistence round that wrote `groups` groups and `entries` entries
    /// and took `seconds`.
    pub fn observe_fsync(&self, seconds: f64, groups: usize, entries: usize) {
        self.fsync_duration.observe(seconds);
        self.fsync_groups.observe(groups as f64);
        self.fsync_entries.observe(entries as f64);
    }
}
