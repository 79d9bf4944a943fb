//! Counters of the transport, kept in atomics so the send path never locks for them and
//! the metrics endpoint can read them at any time: batches and how many messages each
//! carried, drops, stream breaks, reconnects and snapshot transfers.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (inclusive) of the "messages per batch" buckets; the last bucket counts
/// everything above the previous bound up to [`super::BATCH_MESSAGES_MAX`].
pub const BATCH_SIZE_BUCKETS: [u64; 9] = [1, 2, 4, 8, 16, 32, 64, 128, u64::MAX];

/// Transport counters. Every field only grows.
#[derive(Debug, Default)]
pub struct TransportStats {
    /// `RaftBatch`es handed to a stream.
    pub batches_sent: AtomicU64,
    /// Raft messages handed to a stream.
    pub messages_sent: AtomicU64,
    /// Batches by number of messages, bucketed by [`BATCH_SIZE_BUCKETS`].
    pub batch_sizes: [AtomicU64; BATCH_SIZE_BUCKETS.len()],
    /// Messages dropped because the destination's queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Messages dropped because the destination was unknown, unreachable or in backoff,
    /// or the message could not be encoded or was too large.
    pub dropped_unreachable: AtomicU64,
    /// Connection attempts that failed.
    pub connect_failures: AtomicU64,
    /// Streams opened.
    pub streams_opened: AtomicU64,
    /// Streams that broke.
    pub stream_breaks: AtomicU64,
    /// Snapshot transfers that succeeded / failed (sending side).
    pub snapshots_sent: AtomicU64,
    pub snapshots_failed: AtomicU64,
    /// Raft messages received and handed to the raft core, and envelopes skipped as bad.
    pub messages_received: AtomicU64,
    pub envelopes_rejected: AtomicU64,
    /// Snapshots received completely (file on disk, message stepped).
    pub snapshots_received: AtomicU64,
    /// Snapshot file bytes sent (transfers that succeeded) and received (complete files).
    pub snapshot_bytes_sent: AtomicU64,
    pub snapshot_bytes_received: AtomicU64,
}

/// A plain copy of the "messages per batch" counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchSizes {
    /// `(upper bound, batches)` per bucket, in [`BATCH_SIZE_BUCKETS`] order.
    pub buckets: Vec<(u64, u64)>,
    pub batches: u64,
    pub messages: u64,
}

impl TransportStats {
    /// Counts one batch of `messages` messages.
    pub(crate) fn record_batch(&self, messages: usize) {
        let n = messages as u64;
        self.batches_sent.fetch_add(1, Ordering::Relaxed);
        self.messages_sent.fetch_add(n, Ordering::Relaxed);
        let bucket = BATCH_SIZE_BUCKETS
            .iter()
            .position(|&bound| n <= bound)
            .unwrap_or(BATCH_SIZE_BUCKETS.len() - 1);
        self.batch_sizes[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// The "messages per batch" counts as they are now.
    pub fn batch_sizes(&self) -> BatchSizes {
        BatchSizes {
            buckets: BATCH_SIZE_BUCKETS
                .iter()
                .zip(&self.batch_sizes)
                .map(|(&bound, count)| (bound, count.load(Ordering::Relaxed)))
                .collect(),
            batches: self.batches_sent.load(Ordering::Relaxed),
            messages: self.messages_sent.load(Ordering::Relaxed),
        }
    }
}

pub(crate) fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_land_in_their_bucket() {
        let s = TransportStats::default();
        s.record_batch(1);
        s.record_batch(3);
        s.record_batch(4);
        s.record_batch(200);
        let b = s.batch_sizes();
        assert_eq!(b.batches, 4);
        assert_eq!(b.messages, 208);
        assert_eq!(b.buckets[0], (1, 1));
        assert_eq!(b.buckets[2], (4, 2));
        assert_eq!(b.buckets[8], (u64::MAX, 1));
    }
}
