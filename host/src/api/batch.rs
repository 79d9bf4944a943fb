//! The `Batch` stream: many proposals and queries multiplexed on one HTTP/2 stream, as
//! TiKV's `BatchCommands` does for its clients. A unary call costs a stream of its own
//! (headers, a service call, its own frames and flushes), and at one group that per-call
//! work was more than half of the leader's CPU; here a message carries many items and
//! a response message many results.
//!
//! Each item runs exactly as its unary call ([`propose_op`], [`query_op`]); items are
//! independent and answered in completion order, tagged with the client's id. Bounds:
//! at most [`limits::BATCH_ITEMS_PER_MESSAGE_MAX`] items per message (a longer message
//! ends the stream with INVALID_ARGUMENT once the items before it are answered); the
//! stream is not read while [`limits::BATCH_INFLIGHT_MAX`] items or
//! [`limits::BATCH_INFLIGHT_BYTES_MAX`] bytes of requests are in flight; response
//! messages hold at most [`limits::BATCH_RESPONSE_BYTES_MAX`], and
//! [`limits::BATCH_RESPONSES_QUEUED_MAX`] of them wait for a slow reader before results
//! do. A node serves at most [`limits::BATCH_STREAMS_MAX`] streams at once
//! ([`StreamSlot`]).

use std::sync::Arc;

use futures::FutureExt as _;
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use prometheus_client::metrics::gauge::Gauge;
use prost::Message as _;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use super::client::{propose_op, query_op};
use super::node::Node;
use super::route::BoxFut;
use crate::limits;
use crate::proto::v1::batch_item::Op;
use crate::proto::v1::batch_result::Result as Outcome;
use crate::proto::v1::{BatchError, BatchItem, BatchRequest, BatchResponse, BatchResult};

/// One stream's place among the [`limits::BATCH_STREAMS_MAX`] a node serves. The
/// node's `flotilla_batch_streams` gauge is the count, so the limit and the metric
/// cannot disagree; dropping the slot gives the place back.
pub struct StreamSlot(Gauge);

impl StreamSlot {
    /// A place, or `RESOURCE_EXHAUSTED` naming the limit when all are taken.
    pub fn take(open: &Gauge) -> Result<Self, Status> {
        if open.inc() >= limits::BATCH_STREAMS_MAX as i64 {
            open.dec();
            return Err(Status::resource_exhausted(format!(
                "this node already serves {} Batch streams, the limit: close one, or use \
                 unary calls",
                limits::BATCH_STREAMS_MAX
            )));
        }
        Ok(Self(open.clone()))
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// An item in flight: its result, and the bytes its request held.
type InFlight<'a> = FuturesUnordered<BoxFut<'a, (BatchResult, usize)>>;

/// Serves one `Batch` stream until the client closes it and every item is answered, or
/// the client goes away. A stream that breaks or carries a message over the item limit
/// is read no further: the items already running are answered, then the stream ends
/// with that error.
pub async fn serve(
    node: Arc<Node>,
    fwd: bool,
    mut inbound: Streaming<BatchRequest>,
    tx: mpsc::Sender<Result<BatchResponse, Status>>,
) {
    let node = &*node;
    let mut inflight: InFlight<'_> = FuturesUnordered::new();
    let mut bytes = 0usize;
    let mut reading = true;
    let mut ended: Option<Status> = None;
    loop {
        let room =
            inflight.len() < limits::BATCH_INFLIGHT_MAX && bytes < limits::BATCH_INFLIGHT_BYTES_MAX;
        tokio::select! {
            // Answer before reading more: results free in-flight room.
            biased;
            Some(first) = inflight.next(), if !inflight.is_empty() => {
                let results = gather(first, &mut inflight, &mut bytes);
                if tx.send(Ok(BatchResponse { results })).await.is_err() {
                    return;
                }
            }
            msg = inbound.message(), if reading && room => match msg {
                Ok(Some(req)) if req.items.len() > limits::BATCH_ITEMS_PER_MESSAGE_MAX => {
                    reading = false;
                    ended = Some(Status::invalid_argument(format!(
                        "a BatchRequest carried {} items, over the limit of {}; none of its \
                         items ran, and the stream is read no further",
                        req.items.len(),
                        limits::BATCH_ITEMS_PER_MESSAGE_MAX
                    )));
                }
                Ok(Some(req)) => {
                    node.metrics.batch_items.observe(req.items.len() as f64);
                    for item in req.items {
                        let size = item.encoded_len();
                        bytes += size;
                        inflight.push(Box::pin(run_item(node, fwd, item).map(move |r| (r, size))));
                    }
                }
                Ok(None) => reading = false,
                Err(status) => {
                    // A bad frame or an over-size message: the client may still read.
                    reading = false;
                    ended = Some(status);
                }
            },
            else => break,
        }
    }
    if let Some(status) = ended {
        tracing::debug!("batch stream ended: {status}");
        let _ = tx.send(Err(status)).await;
    }
}

/// `first` and whatever else has already finished, up to one response message's bounds;
/// takes their requests' bytes off `bytes`.
fn gather(
    (first, size): (BatchResult, usize),
    inflight: &mut InFlight<'_>,
    bytes: &mut usize,
) -> Vec<BatchResult> {
    *bytes = bytes.saturating_sub(size);
    let mut out_bytes = first.encoded_len();
    let mut results = vec![first];
    while results.len() < limits::BATCH_ITEMS_PER_MESSAGE_MAX
        && out_bytes < limits::BATCH_RESPONSE_BYTES_MAX
    {
        match inflight.next().now_or_never() {
            Some(Some((r, size))) => {
                *bytes = bytes.saturating_sub(size);
                out_bytes += r.encoded_len();
                results.push(r);
            }
            _ => break,
        }
    }
    results
}

/// Runs one item; its failure becomes its result, never the stream's.
async fn run_item(node: &Node, fwd: bool, item: BatchItem) -> BatchResult {
    let outcome = match item.op {
        Some(Op::Propose(req)) => propose_op(node, fwd, req).await.map(Outcome::Propose),
        Some(Op::Query(req)) => query_op(node, fwd, req).await.map(Outcome::Query),
        None => Err(Status::invalid_argument(
            "a batch item has neither a propose nor a query",
        )),
    };
    match outcome {
        Ok(result) => BatchResult {
            id: item.id,
            result: Some(result),
        },
        Err(status) => failed(item.id, &status),
    }
}

/// An item's failure, carrying what its unary call would carry as metadata.
fn failed(id: u64, status: &Status) -> BatchResult {
    let retry_after_ms = status
        .metadata()
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    BatchResult {
        id,
        result: Some(Outcome::Error(BatchError {
            code: status.code() as i32,
            message: status.message().to_string(),
            leader_peer_id: super::route::leader_hint(status).map_or(0, |p| p.0),
            retry_after_ms,
            not_run: super::route::retryable(status),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::{Outcome, failed};
    use crate::api::status::from_raft;
    use crate::ids::{GroupId, PeerId};
    use crate::proto::v1::BatchError;
    use crate::raftstore::RaftError;

    fn error_of(e: RaftError) -> BatchError {
        match failed(9, &from_raft(e)).result {
            Some(Outcome::Error(e)) => e,
            other => panic!("not an error: {other:?}"),
        }
    }

    #[test]
    fn an_item_error_carries_what_the_unary_call_carries_as_metadata() {
        let not_leader = error_of(RaftError::NotLeader {
            group: GroupId(3),
            leader: Some(PeerId(131_074)),
        });
        assert_eq!(not_leader.code, tonic::Code::Unavailable as i32);
        assert_eq!(not_leader.leader_peer_id, 131_074);
        assert!(not_leader.not_run);
        assert_eq!(not_leader.retry_after_ms, 0);

        let unknown_leader = error_of(RaftError::NotLeader {
            group: GroupId(3),
            leader: None,
        });
        assert_eq!(unknown_leader.leader_peer_id, 0);
        assert!(unknown_leader.not_run);

        let busy = error_of(RaftError::Busy {
            group: GroupId(3),
            reason: "mailbox full".into(),
            retry_after_ms: 50,
        });
        assert_eq!(busy.code, tonic::Code::ResourceExhausted as i32);
        assert_eq!(busy.retry_after_ms, 50);
        assert!(!busy.not_run);

        // A dropped proposal may or may not have been applied: not_run must stay false.
        let dropped = error_of(RaftError::Dropped("leadership changed".into()));
        assert_eq!(dropped.code, tonic::Code::Unavailable as i32);
        assert!(!dropped.not_run);
        assert_eq!((dropped.leader_peer_id, dropped.retry_after_ms), (0, 0));
        assert!(dropped.message.contains("leadership changed"));
    }
}
