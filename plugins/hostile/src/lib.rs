//! A deliberately badly behaved plugin for the host's containment tests.
//!
//! Every misbehaviour must end as a deterministic rejection of that one command, with
//! the group's state unchanged and the node unharmed. Commands:
//! - `{"trap":{}}`: executes `unreachable`.
//! - `{"loop_forever":{}}`: spins until fuel runs out.
//! - `{"alloc_forever":{}}`: allocates 1 MiB chunks until memory runs out.
//! - `{"recurse":{"depth":1000000}}`: recursion with 256-byte frames; deep enough, it
//!   overflows the stack. Returns `{"depth":N}` if it finishes.
//! - `{"huge_output":{"bytes":1048576}}`: returns `{"bytes":"xxx…"}` with that many `x`.
//! - `{"panic":{"message":"boom"}}`: panics; the host log gets `panic: boom (at …)`.
//! - `{"spin":{"iterations":1000}}`: a bounded busy loop, returns `{"count":1000}`.
//! - `{"write_then_trap":{"key":"k","value":"v"}}`: writes, then traps.
//! - `{"write_then_reject":{"key":"k","value":"v"}}`: writes, then returns an error.
//! - `{"put":{"key":"k","value":"v"}}`: a well-behaved write, returns `{"previous":null}`.
//!
//! Queries (output: a string or `null`):
//! - `{"get":{"key":"k"}}`: the value, to check that state is unchanged.
//! - `{"put":{"key":"k","value":"v"}}`: tries to write during a query (the host refuses).
//! - `{"loop_forever":{}}`, `{"trap":{}}`: misbehave on the read path.

mod misbehave;

use flotilla_sdk::{ApplyContext, QueryContext, Rejection, StateMachine, kv, reject};
use serde::{Deserialize, Serialize};

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    Trap {},
    LoopForever {},
    AllocForever {},
    Recurse { depth: u64 },
    HugeOutput { bytes: u64 },
    Panic { message: String },
    Spin { iterations: u64 },
    WriteThenTrap { key: String, value: String },
    WriteThenReject { key: String, value: String },
    Put { key: String, value: String },
}

/// What a command that finishes returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Output {
    Depth(u64),
    Bytes(String),
    Count(u64),
    Previous(Option<String>),
}

/// What to do on the read path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Query {
    Get { key: String },
    Put { key: String, value: String },
    LoopForever {},
    Trap {},
}

/// The hostile state machine.
#[derive(Debug)]
pub struct Hostile;

fn get(key: &str) -> Option<String> {
    kv::get(key.as_bytes()).map(|v| String::from_utf8_lossy(&v).into_owned())
}

impl StateMachine for Hostile {
    type Command = Command;
    type Output = Output;
    type Query = Query;
    type QueryOutput = Option<String>;

    fn apply(_ctx: &ApplyContext, command: Command) -> Result<Output, Rejection> {
        match command {
            Command::Trap {} => misbehave::trap(),
            Command::LoopForever {} => misbehave::loop_forever(),
            Command::AllocForever {} => misbehave::alloc_forever(),
            Command::Recurse { depth } => Ok(Output::Depth(misbehave::recurse(depth))),
            Command::HugeOutput { bytes } => {
                let Ok(len) = usize::try_from(bytes) else {
                    reject!("{bytes} bytes do not fit in memory");
                };
                Ok(Output::Bytes("x".repeat(len)))
            }
            Command::Panic { message } => panic!("{message}"),
            Command::Spin { iterations } => Ok(Output::Count(misbehave::spin(iterations))),
            Command::WriteThenTrap { key, value } => {
                kv::put(key.as_bytes(), value.as_bytes());
                misbehave::trap()
            }
            Command::WriteThenReject { key, value } => {
                kv::put(key.as_bytes(), value.as_bytes());
                reject!("rejected after writing {key:?}")
            }
            Command::Put { key, value } => {
                let previous = get(&key);
                kv::put(key.as_bytes(), value.as_bytes());
                Ok(Output::Previous(previous))
            }
        }
    }

    fn query(_ctx: &QueryContext, query: Query) -> Result<Option<String>, Rejection> {
        match query {
            Query::Get { key } => Ok(get(&key)),
            Query::Put { key, value } => {
                kv::put(key.as_bytes(), value.as_bytes());
                Ok(get(&key))
            }
            Query::LoopForever {} => misbehave::loop_forever(),
            Query::Trap {} => misbehave::trap(),
        }
    }
}

flotilla_sdk::export!(Hostile);

#[cfg(test)]
mod tests;
