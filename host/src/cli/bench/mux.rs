//! A client-side multiplexer over one `Batch` stream, as TiKV's client does with
//! `BatchCommands`: callers send one request each and await its result; a writer task
//! packs whatever requests are queued into one stream message, and a reader task hands
//! each result to its caller by id. Callers are bounded by the request queue
//! ([`QUEUE`]); the server bounds what is in flight on its side.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use prost::Message as _;
use tokio::sync::{mpsc, oneshot};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::limits;
use crate::proto::v1::batch_item::Op;
use crate::proto::v1::batch_result::Result as Outcome;
use crate::proto::v1::client_client::ClientClient;
use crate::proto::v1::{BatchItem, BatchRequest};

/// Requests queued for the writer before callers wait.
const QUEUE: usize = 4096;
/// A stream message stops gathering requests at this size (one request, at most a
/// command's size plus a little, always fits a gRPC message).
const MESSAGE_BYTES: usize = 2 * 1024 * 1024;

type Reply = oneshot::Sender<Result<Outcome, Status>>;

/// Results still owed, by item id; `None` once the stream has ended.
type Waiting = Arc<Mutex<Option<HashMap<u64, Reply>>>>;

/// One `Batch` stream shared by many callers.
#[derive(Clone)]
pub struct Mux {
    tx: mpsc::Sender<(Op, Reply)>,
}

impl Mux {
    /// Opens the stream on `channel`.
    pub async fn open(channel: Channel) -> Result<Self, Status> {
        let (tx, rx) = mpsc::channel::<(Op, Reply)>(QUEUE);
        let (out_tx, out_rx) = mpsc::channel::<BatchRequest>(limits::BATCH_RESPONSES_QUEUED_MAX);
        let mut client = ClientClient::new(channel)
            .max_decoding_message_size(limits::GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(limits::GRPC_MESSAGE_BYTES_MAX);
        let waiting: Waiting = Arc::new(Mutex::new(Some(HashMap::new())));
        tokio::spawn(write(rx, out_tx, waiting.clone()));
        let inbound = client
            .batch(tokio_stream::wrappers::ReceiverStream::new(out_rx))
            .await?
            .into_inner();
        tokio::spawn(read(inbound, waiting));
        Ok(Self { tx })
    }

    /// Sends `op` and waits for its result; an item's error comes back as its status.
    pub async fn call(&self, op: Op) -> Result<Outcome, Status> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((op, reply))
            .await
            .map_err(|_| Status::unavailable("the batch stream has ended"))?;
        match rx.await {
            Ok(Ok(Outcome::Error(e))) => Err(Status::new(Code::from(e.code), e.message)),
            Ok(r) => r,
            Err(_) => Err(Status::unavailable(
                "the batch stream ended before the result came",
            )),
        }
    }
}

/// Packs queued requests into stream messages (at most the server's item limit, and
/// about [`MESSAGE_BYTES`]) until the callers are gone or the stream ends.
async fn write(
    mut rx: mpsc::Receiver<(Op, Reply)>,
    out: mpsc::Sender<BatchRequest>,
    waiting: Waiting,
) {
    let mut next_id = 0u64;
    loop {
        let first = tokio::select! {
            first = rx.recv() => first,
            // The server ended the stream: fail the queued callers now.
            () = out.closed() => None,
        };
        let Some(first) = first else { break };
        let mut items = Vec::new();
        let mut bytes = 0;
        let mut pending = Some(first);
        while let Some((op, reply)) = pending.take() {
            next_id += 1;
            let registered = {
                let mut w = waiting.lock().unwrap_or_else(PoisonError::into_inner);
                match w.as_mut() {
                    Some(map) => {
                        map.insert(next_id, reply);
                        true
                    }
                    None => {
                        let _ = reply.send(Err(Status::unavailable("the batch stream has ended")));
                        false
                    }
                }
            };
            if registered {
                let item = BatchItem {
                    id: next_id,
                    op: Some(op),
                };
                bytes += item.encoded_len();
                items.push(item);
            }
            if items.len() < limits::BATCH_ITEMS_PER_MESSAGE_MAX && bytes < MESSAGE_BYTES {
                pending = rx.try_recv().ok();
            }
        }
        if !items.is_empty() && out.send(BatchRequest { items }).await.is_err() {
            break;
        }
    }
    // Results of items already sent may still be on their way: the reader answers
    // those (or fails them when the stream ends). Callers still queued are failed here.
    rx.close();
    while let Some((_, reply)) = rx.recv().await {
        let _ = reply.send(Err(Status::unavailable("the batch stream has ended")));
    }
}

/// Hands each result to its caller; when the stream ends, fails everyone still waiting.
async fn read(mut inbound: tonic::Streaming<crate::proto::v1::BatchResponse>, waiting: Waiting) {
    let end = loop {
        match inbound.message().await {
            Ok(Some(resp)) => {
                let mut w = waiting.lock().unwrap_or_else(PoisonError::into_inner);
                let Some(map) = w.as_mut() else { return };
                for r in resp.results {
                    let outcome = r
                        .result
                        .ok_or_else(|| Status::internal("a batch result without an outcome"));
                    if let Some(reply) = map.remove(&r.id) {
                        let _ = reply.send(outcome);
                    }
                }
            }
            Ok(None) => break Status::unavailable("the server ended the batch stream"),
            Err(s) => break s,
        }
    };
    close(&waiting, &end);
}

fn close(waiting: &Waiting, why: &Status) {
    let map = waiting
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    for (_, reply) in map.into_iter().flatten() {
        let _ = reply.send(Err(why.clone()));
    }
}
