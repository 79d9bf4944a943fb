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
//! - `{"put_many":{"count":1000000,"key":"k","value":"v"}}`: `count` host `put` calls of
//!   the same pair (host work that the guest's own fuel does not see), `{"count":N}`.
//! - `{"get_many":{"count":1000000,"key_bytes":16384}}`: `count` host `get` calls of a key
//!   of `key_bytes` bytes, `{"count":N}`.
//! - `{"fill":{"prefix":"big/","first":0,"count":4,"value_bytes":4194304}}`: writes keys
//!   `prefix` + zero-padded `first..first+count` with values of `value_bytes` bytes.
//! - `{"scan_all":{}}`: walks every key with `kv::scan` pages of 10,000 pairs, keeping
//!   nothing; `{"count":pairs}`.
//! - `{"amplify":{"bytes":12582912,"prefix":"a1/"}}`: a small command that writes
//!   `bytes` bytes in values of at most 4 MiB, under keys `prefix` + a number (`prefix`
//!   defaults to `amp/`).
//!
//! Queries (output: a string or `null`):
//! - `{"get":{"key":"k"}}`: the value, to check that state is unchanged.
//! - `{"put":{"key":"k","value":"v"}}`: tries to write during a query (the host refuses).
//! - `{"loop_forever":{}}`, `{"trap":{}}`: misbehave on the read path.
//! - `{"scan_all":{}}`: as the command, on the read path.
//! - `{"count_static":{}}`: bumps a counter in a guest static and returns it (a read
//!   that could see what earlier reads left behind in a shared instance).

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
    Recurse {
        depth: u64,
    },
    HugeOutput {
        bytes: u64,
    },
    Panic {
        message: String,
    },
    Spin {
        iterations: u64,
    },
    WriteThenTrap {
        key: String,
        value: String,
    },
    WriteThenReject {
        key: String,
        value: String,
    },
    Put {
        key: String,
        value: String,
    },
    PutMany {
        count: u64,
        key: String,
        value: String,
    },
    GetMany {
        count: u64,
        key_bytes: u64,
    },
    Fill {
        prefix: String,
        first: u64,
        count: u64,
        value_bytes: u64,
    },
    ScanAll {},
    Amplify {
        bytes: u64,
        #[serde(default = "amplify_prefix")]
        prefix: String,
    },
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
    ScanAll {},
    CountStatic {},
}

/// The hostile state machine.
#[derive(Debug)]
pub struct Hostile;

fn amplify_prefix() -> String {
    "amp/".into()
}

/// `n` as a length, or a rejection when it does not fit in memory.
fn size(n: u64) -> Result<usize, Rejection> {
    usize::try_from(n).map_err(|_| Rejection::new(format!("{n} bytes do not fit in memory")))
}

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
            Command::PutMany { count, key, value } => {
                for _ in 0..count {
                    kv::put(key.as_bytes(), value.as_bytes());
                }
                Ok(Output::Count(count))
            }
            Command::GetMany { count, key_bytes } => {
                let key = vec![b'k'; size(key_bytes)?];
                let mut found = 0;
                for _ in 0..count {
                    found += u64::from(kv::get(&key).is_some());
                }
                Ok(Output::Count(count + found))
            }
            Command::Fill {
                prefix,
                first,
                count,
                value_bytes,
            } => {
                let value = vec![b'v'; size(value_bytes)?];
                for i in first..first.saturating_add(count) {
                    kv::put(format!("{prefix}{i:08}").as_bytes(), &value);
                }
                Ok(Output::Count(count))
            }
            Command::ScanAll {} => Ok(Output::Count(misbehave::scan_all())),
            Command::Amplify { bytes, prefix } => {
                let chunk = 4 << 20;
                let value = vec![b'a'; chunk];
                let mut left = size(bytes)?;
                let mut i = 0u64;
                while left > 0 {
                    let n = left.min(chunk);
                    kv::put(
                        format!("{prefix}{i:08}").as_bytes(),
                        value.get(..n).unwrap_or(&value),
                    );
                    left -= n;
                    i += 1;
                }
                Ok(Output::Count(i))
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
            Query::ScanAll {} => Ok(Some(misbehave::scan_all().to_string())),
            Query::CountStatic {} => Ok(Some(misbehave::count_static().to_string())),
        }
    }
}

flotilla_sdk::export!(Hostile);

#[cfg(test)]
mod tests;
