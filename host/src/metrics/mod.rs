//! Prometheus metrics of one node. Each node owns one [`NodeMetrics`]: a
//! `prometheus_client` registry plus the metric handles the rooms update — the raft core
//! ([`RaftMetrics`]: proposals, rounds, fsyncs, applies, gauges), the plugin host
//! ([`PluginMetrics`]: fuel and time in Wasm) and the API ([`OpsMetrics`]: consistency
//! checks, `Batch` streams). The transport keeps its own atomic counters ([`TransportStats`]); a collector
//! reads them at scrape time. There is no global registry: `flotilla dev` runs several
//! nodes in one process, each with its own endpoint.
//!
//! Handles are cheap clones of `Arc`'d atomics (histograms: a short mutex), updated in
//! memory only, so the raft core may hold them without doing IO. Hot paths update them
//! once per round or batch, never per entry where it can be avoided, and never allocate.
//! The text encoding happens on scrape, in [`NodeMetrics::encode`]; [`http`] serves it on
//! `GET /metrics` (`flotilla server --metrics-listen HOST:PORT`).

pub mod http;
mod plugin;
mod raft;
pub mod scrape;
mod transport;

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub use plugin::PluginMetrics;
pub use raft::{ProposalFailures, RaftMetrics};
pub use transport::TransportCollector;

use crate::transport::TransportStats;

/// The content type of [`NodeMetrics::encode`]'s output (OpenMetrics text, which
/// Prometheus scrapes natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric name starts with this (and `_`).
pub const PREFIX: &str = "flotilla";

/// What can go wrong exposing metrics.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot encode the metrics: {0}")]
    Encode(#[from] std::fmt::Error),
    #[error("cannot serve metrics on {addr}: {source}")]
    Serve {
        addr: String,
        source: std::io::Error,
    },
}

/// Metrics of the API room.
#[derive(Clone, Debug)]
pub struct OpsMetrics {
    /// Replica consistency checks this node ran (as the group's leader node).
    pub consistency_checks: Counter,
    /// Checks that found replicas with different digests at the same index.
    pub replica_divergences: Counter,
    /// `Batch` streams being served (also what their limit counts: `api::batch::StreamSlot`).
    pub batch_streams: Gauge,
    /// Items per `Batch` request message.
    pub batch_items: Histogram,
}

impl Default for OpsMetrics {
    fn default() -> Self {
        Self {
            consistency_checks: Counter::default(),
            replica_divergences: Counter::default(),
            batch_streams: Gauge::default(),
            batch_items: Histogram::new(count_buckets()),
        }
    }
}

impl OpsMetrics {
    fn register(&self, r: &mut Registry) {
        r.register(
            "batch_streams",
            "Client Batch streams this node serves now",
            self.batch_streams.clone(),
        );
        r.register(
            "batch_items",
            "Items (proposals and queries) per Client Batch request message",
            self.batch_items.clone(),
        );
        r.register(
            "consistency_checks",
            "Replica consistency checks run by this node (it led the group)",
            self.consistency_checks.clone(),
        );
        r.register(
            "replica_divergences",
            "Consistency checks that found replicas with different state digests at the same index",
            self.replica_divergences.clone(),
        );
    }
}

/// One node's registry and the handles registered in it.
#[derive(Debug)]
pub struct NodeMetrics {
    registry: Registry,
    pub raft: RaftMetrics,
    pub plugin: PluginMetrics,
    pub ops: OpsMetrics,
    /// Worker threads of the async runtime the node runs on (`--worker-threads`).
    pub runtime_workers: Gauge,
}

impl Default for NodeMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl NodeMetrics {
    /// A fresh registry with every metric of the node registered (the transport's once
    /// [`NodeMetrics::add_transport`] is called).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let (raft, plugin, ops) = (
            RaftMetrics::default(),
            PluginMetrics::default(),
            OpsMetrics::default(),
        );
        raft.register(&mut registry);
        plugin.register(&mut registry);
        ops.register(&mut registry);
        let runtime_workers = Gauge::default();
        registry.register(
            "runtime_workers",
            "Worker threads of the async runtime this node runs on (shared by the nodes of one process)",
            runtime_workers.clone(),
        );
        Self {
            registry,
            raft,
            plugin,
            ops,
            runtime_workers,
        }
    }

    /// Exposes the transport's counters: `sent` from the sending side (the raft client
    /// streams), `received` from the receiving side (the gRPC service).
    pub fn add_transport(&mut self, sent: Arc<TransportStats>, received: Arc<TransportStats>) {
        self.registry
            .register_collector(Box::new(TransportCollector { sent, received }));
    }

    /// The OpenMetrics text of every metric, as of now.
    pub fn encode(&self) -> Result<String, MetricsError> {
        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Upper bounds for histograms of durations: 20 µs to ~5 s, doubling.
pub(crate) fn duration_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(20e-6, 2.0, 19)
}

/// Upper bounds for histograms of counts: 1 to 8192, doubling.
pub(crate) fn count_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(1.0, 2.0, 14)
}

#[cfg(test)]
mod tests;
