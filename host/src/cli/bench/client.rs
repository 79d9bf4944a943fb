//! One benchmark client's connection to the system under test, and the two operations
//! the workloads need: a put and a linearizable get of one key.
//!
//! A Flotilla put is the `kv` plugin's `set`, which does not read or answer the previous
//! value, as etcd's Put without `prev_kv` (what the etcd side sends) does not; it and the
//! get go in the codec `--codec` picks ([`KvWire`]).

use tonic::transport::Channel;

use super::etcd::pb;
use super::kv_wire::KvWire;
use super::mux::Mux;
use crate::proto::v1::batch_item::Op;
use crate::proto::v1::batch_result::Result as Outcome;
use crate::proto::v1::client_client::ClientClient;
use crate::proto::v1::{ProposeRequest, QueryRequest, ReadConsistency};

pub enum Client {
    /// `kv` puts and gets on one group, through the node that led it at setup.
    Flotilla {
        c: ClientClient<Channel>,
        group: u64,
        wire: KvWire,
    },
    /// The same puts and gets as items of a `Batch` stream shared with other clients.
    FlotillaBatch { mux: Mux, group: u64, wire: KvWire },
    /// etcd's KV service on one member.
    Etcd { c: pb::kv_client::KvClient<Channel> },
}

/// Why one operation did not succeed: a gRPC error, or a read that did not find the key
/// the preload wrote.
#[derive(Debug)]
pub enum OpError {
    Status(tonic::Status),
    Missing,
}

impl OpError {
    /// The label errors are counted under: the gRPC code, or `missing_key`.
    pub fn label(&self) -> String {
        match self {
            OpError::Status(s) => format!("{:?}", s.code()),
            OpError::Missing => "missing_key".to_string(),
        }
    }
}

impl From<tonic::Status> for OpError {
    fn from(s: tonic::Status) -> Self {
        OpError::Status(s)
    }
}

impl Client {
    /// Sets `key` to `value`; returns once the system acknowledged the write as committed.
    pub async fn put(&mut self, key: &str, value: &str) -> Result<(), OpError> {
        let put = |group: u64, wire: &KvWire| ProposeRequest {
            group_id: group,
            command: wire.set(key, value),
            request_id: String::new(),
        };
        match self {
            Client::Flotilla { c, group, wire } => {
                c.propose(put(*group, wire)).await?;
            }
            Client::FlotillaBatch { mux, group, wire } => {
                match mux.call(Op::Propose(put(*group, wire))).await? {
                    Outcome::Propose(_) => {}
                    other => return Err(unexpected(&other)),
                }
            }
            Client::Etcd { c } => {
                c.put(pb::PutRequest {
                    key: key.as_bytes().to_vec(),
                    value: value.as_bytes().to_vec(),
                    ..Default::default()
                })
                .await?;
            }
        }
        Ok(())
    }

    /// A linearizable read of `key` (Flotilla: ReadIndex; etcd: `serializable=false`),
    /// which must find a value.
    pub async fn get(&mut self, key: &str) -> Result<(), OpError> {
        let get = |group: u64, wire: &KvWire| QueryRequest {
            group_id: group,
            request: wire.get(key),
            consistency: ReadConsistency::Linearizable as i32,
        };
        match self {
            Client::Flotilla { c, group, wire } => {
                let r = c.query(get(*group, wire)).await?.into_inner();
                if wire.is_missing(&r.output) {
                    return Err(OpError::Missing);
                }
            }
            Client::FlotillaBatch { mux, group, wire } => {
                match mux.call(Op::Query(get(*group, wire))).await? {
                    Outcome::Query(r) if wire.is_missing(&r.output) => {
                        return Err(OpError::Missing);
                    }
                    Outcome::Query(_) => {}
                    other => return Err(unexpected(&other)),
                }
            }
            Client::Etcd { c } => {
                let r = c
                    .range(pb::RangeRequest {
                        key: key.as_bytes().to_vec(),
                        serializable: false,
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                if r.kvs.is_empty() {
                    return Err(OpError::Missing);
                }
            }
        }
        Ok(())
    }
}

/// A batch result of the wrong kind for its item: the server broke the protocol.
fn unexpected(outcome: &Outcome) -> OpError {
    OpError::Status(tonic::Status::internal(format!(
        "the batch stream answered with the wrong kind of result: {outcome:?}"
    )))
}
