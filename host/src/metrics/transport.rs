//! The transport's metrics, read at scrape time from its own atomic counters
//! ([`TransportStats`]), so the send path pays nothing extra for them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::registry::Unit;

use crate::transport::TransportStats;
use crate::transport::stats::BATCH_SIZE_BUCKETS;

/// Encodes the sending and the receiving side's [`TransportStats`].
#[derive(Debug)]
pub struct TransportCollector {
    pub sent: Arc<TransportStats>,
    pub received: Arc<TransportStats>,
}

fn load(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, unit, MetricType::Counter)?;
    ConstCounter::new(value).encode(metric)
}

impl Collector for TransportCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (s, r) = (&*self.sent, &*self.received);

        // Messages per RaftBatch (one stream message to one node): a histogram whose
        // count is the batches and whose sum is the messages.
        let sizes = s.batch_sizes();
        let buckets: Vec<(f64, u64)> = sizes
            .buckets
            .iter()
            .map(|&(bound, n)| {
                let bound = if bound == u64::MAX {
                    f64::INFINITY
                } else {
                    bound as f64
                };
                (bound, n)
            })
            .collect();
        debug_assert_eq!(buckets.len(), BATCH_SIZE_BUCKETS.len());
        let mut metric = encoder.encode_descriptor(
            "transport_batch_messages",
            "Raft messages per batch sent to one node on its stream (messages per RPC).",
            None,
            MetricType::Histogram,
        )?;
        metric.encode_histogram::<NoLabelSet>(
            sizes.messages as f64,
            sizes.batches,
            &buckets,
            None,
        )?;

        let mut dropped = encoder.encode_descriptor(
            "transport_messages_dropped",
            "Raft messages dropped by the transport, by reason.",
            None,
            MetricType::Counter,
        )?;
        for (reason, value) in [
            ("queue_full", load(&s.dropped_queue_full)),
            ("unreachable", load(&s.dropped_unreachable)),
        ] {
            let labels = [("reason", reason)];
            ConstCounter::new(value).encode(dropped.encode_family(&labels)?)?;
        }

        for (name, help, value) in [
            (
                "transport_messages_received",
                "Raft messages received from other nodes and handed to the raft core.",
                load(&r.messages_received),
            ),
            (
                "transport_envelopes_rejected",
                "Received raft message envelopes skipped as malformed or misaddressed.",
                load(&r.envelopes_rejected),
            ),
            (
                "transport_connect_failures",
                "Failed connection attempts to other nodes.",
                load(&s.connect_failures),
            ),
            (
                "transport_streams_opened",
                "Raft message streams opened to other nodes.",
                load(&s.streams_opened),
            ),
            (
                "transport_stream_breaks",
                "Raft message streams to other nodes that broke.",
                load(&s.stream_breaks),
            ),
            (
                "snapshots_sent",
                "Snapshots sent to other nodes.",
                load(&s.snapshots_sent),
            ),
            (
                "snapshots_send_failed",
                "Snapshot transfers to other nodes that failed.",
                load(&s.snapshots_failed),
            ),
            (
                "snapshots_received",
                "Snapshots received completely from other nodes.",
                load(&r.snapshots_received),
            ),
        ] {
            counter(&mut encoder, name, help, None, value)?;
        }
        counter(
            &mut encoder,
            "snapshot_sent",
            "Snapshot file bytes sent to other nodes.",
            Some(&Unit::Bytes),
            load(&s.snapshot_bytes_sent),
        )?;
        counter(
            &mut encoder,
            "snapshot_received",
            "Snapshot file bytes received from other nodes.",
            Some(&Unit::Bytes),
            load(&r.snapshot_bytes_received),
        )?;
        Ok(())
    }
}
