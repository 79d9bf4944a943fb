//! The `Batch` stream: many proposals and queries multiplexed on one HTTP/2 stream, as
//! TiKV's `BatchCommands` does for its clients. A unary call costs a stream of its own
//! (headers, a service call, its own frames and flushes), and at one group that per-call
//! work was more than half of the leader's CPU; here a message carries many items and
//! a response message many results.
//!
//! Each item runs exactly as its unary call ([`propose_op`], [`query_op`]); items are
//! independent and answered in completion order, tagged with the client's id. Bounds:
//! at most [`limits::BATCH_ITEMS_PER_MESSAGE_MAX`] items per message (the items of a
//! longer message each get INVALID_ARGUMENT), at most [`limits::BATCH_INFLIGHT_MAX`]
//! in flight before the stream stops being read, and response messages of at most
//! [`limits::BATCH_RESPONSE_BYTES_MAX`], [`limits::BATCH_RESPONSES_QUEUED_MAX`] of
//! them queued for a slow reader before results wait.

use std::sync::Arc;

use futures::FutureExt as _;
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
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

/// Serves one `Batch` stream until the client closes it and every item is answered, or
/// the client goes away.
pub async fn serve(
    node: Arc<Node>,
    fwd: bool,
    mut inbound: Streaming<BatchRequest>,
    tx: mpsc::Sender<Result<BatchResponse, Status>>,
) {
    let node = &*node;
    let mut inflight: FuturesUnordered<BoxFut<'_, BatchResult>> = FuturesUnordered::new();
    let mut reading = true;
    loop {
        tokio::select! {
            // Answer before reading more: results free in-flight slots.
            biased;
            Some(first) = inflight.next(), if !inflight.is_empty() => {
                let results = gather(first, &mut inflight);
                if tx.send(Ok(BatchResponse { results })).await.is_err() {
                    return;
                }
            }
            msg = inbound.message(), if reading && inflight.len() < limits::BATCH_INFLIGHT_MAX => {
                match msg {
                    Ok(Some(req)) => {
                        let too_many = req.items.len() > limits::BATCH_ITEMS_PER_MESSAGE_MAX;
                        let count = req.items.len();
                        for item in req.items {
                            if too_many {
                                let e = Status::invalid_argument(format!(
                                    "its BatchRequest carries {count} items, over the limit of {}",
                                    limits::BATCH_ITEMS_PER_MESSAGE_MAX
                                ));
                                inflight.push(Box::pin(std::future::ready(failed(item.id, &e))));
                            } else {
                                inflight.push(Box::pin(run_item(node, fwd, item)));
                            }
                        }
                    }
                    Ok(None) => reading = false,
                    Err(status) => {
                        // The stream broke (a bad frame, the client reset it): nobody
                        // can read the remaining results.
                        tracing::debug!("batch stream ended: {status}");
                        return;
                    }
                }
            }
            else => return,
        }
    }
}

/// `first` and whatever else has already finished, up to one response message's bounds.
fn gather(
    first: BatchResult,
    inflight: &mut FuturesUnordered<BoxFut<'_, BatchResult>>,
) -> Vec<BatchResult> {
    let mut bytes = first.encoded_len();
    let mut results = vec![first];
    while results.len() < limits::BATCH_ITEMS_PER_MESSAGE_MAX
        && bytes < limits::BATCH_RESPONSE_BYTES_MAX
    {
        match inflight.next().now_or_never() {
            Some(Some(r)) => {
                bytes += r.encoded_len();
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

fn failed(id: u64, status: &Status) -> BatchResult {
    BatchResult {
        id,
        result: Some(Outcome::Error(BatchError {
            code: status.code() as i32,
            message: status.message().to_string(),
        })),
    }
}
