//! A replicated string key-value store with compare-and-swap and ordered range scans.
//!
//! Keys and values are UTF-8 strings; each key is stored as-is in the group's KV, so
//! scans follow byte order and a range group could split the data where it lies.
//!
//! Commands (output: the key's previous value, a string or `null`):
//! - `{"put":{"key":"a","value":"1"}}` sets `a` to `1`.
//! - `{"set":{"key":"a","value":"1"}}` sets `a` to `1` without reading it first, and
//!   answers `null` whatever `a` held: a blind write, like etcd's Put without `prev_kv`,
//!   for writers that do not need the previous value (it saves a store lookup).
//! - `{"delete":{"key":"a"}}` removes `a`.
//! - `{"cas":{"key":"a","expected":"1","new":"2"}}` sets `a` to `2` only if it is `1`.
//!   `expected: null` (or omitted) means "must be absent", `new: null` (or omitted)
//!   deletes. A mismatch is rejected with a message naming the current value.
//!
//! Queries:
//! - `{"get":{"key":"a"}}` → `{"value":"1"}` (or `{"value":null}`).
//! - `{"scan":{"start":"a","end":"m","limit":10}}` → `{"pairs":[{"key":"a","value":"1"}]}`:
//!   keys in `[start, end)` in byte order. `start` defaults to `""`, `end` to unbounded,
//!   `limit` to 1000 (at most 10000).

use flotilla_sdk::{ApplyContext, QueryContext, Rejection, StateMachine, kv, reject};
use serde::{Deserialize, Serialize};

/// A change to the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Set `key` to `value`.
    Put {
        /// The key.
        key: String,
        /// The new value.
        value: String,
    },
    /// Remove `key`.
    Delete {
        /// The key.
        key: String,
    },
    /// Compare-and-swap: if `key` currently holds `expected`, make it hold `new`.
    Cas {
        /// The key.
        key: String,
        /// The value the key must hold (`None`: must be absent).
        #[serde(default)]
        expected: Option<String>,
        /// The value to store (`None`: delete).
        #[serde(default)]
        new: Option<String>,
    },
    /// Set `key` to `value` without reading the previous value; the output is `None`.
    /// Last, so that the binary codec's variant numbers of the others stay as they were.
    Set {
        /// The key.
        key: String,
        /// The new value.
        value: String,
    },
}

/// A read of the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Query {
    /// The value of one key.
    Get {
        /// The key.
        key: String,
    },
    /// Keys in `[start, end)`, ascending.
    Scan {
        /// First key (inclusive).
        #[serde(default)]
        start: String,
        /// Last key (exclusive); `None` scans to the end.
        #[serde(default)]
        end: Option<String>,
        /// At most this many pairs (default 1000, capped at 10000).
        #[serde(default)]
        limit: Option<u32>,
    },
}

/// One key and its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pair {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
}

/// The answer to a [`Query`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryOutput {
    /// For [`Query::Get`].
    Value(Option<String>),
    /// For [`Query::Scan`].
    Pairs(Vec<Pair>),
}

const DEFAULT_LIMIT: u32 = 1000;
const MAX_LIMIT: u32 = 10_000;

/// The key-value state machine.
#[derive(Debug)]
pub struct Kv;

fn text(key: &[u8], bytes: Vec<u8>) -> Result<String, Rejection> {
    String::from_utf8(bytes).map_err(|_| {
        let key = String::from_utf8_lossy(key);
        Rejection::new(format!("stored value of key {key:?} is not UTF-8"))
    })
}

fn read(key: &str) -> Result<Option<String>, Rejection> {
    kv::get(key.as_bytes())
        .map(|v| text(key.as_bytes(), v))
        .transpose()
}

fn write(key: &str, value: Option<&str>) {
    match value {
        Some(v) => kv::put(key.as_bytes(), v.as_bytes()),
        None => kv::delete(key.as_bytes()),
    }
}

impl StateMachine for Kv {
    type Command = Command;
    type Output = Option<String>;
    type Query = Query;
    type QueryOutput = QueryOutput;

    fn apply(_ctx: &ApplyContext, command: Command) -> Result<Option<String>, Rejection> {
        let (key, new) = match &command {
            Command::Set { key, value } => {
                write(key, Some(value));
                return Ok(None);
            }
            Command::Put { key, value } => (key, Some(value.as_str())),
            Command::Delete { key } => (key, None),
            Command::Cas { key, new, .. } => (key, new.as_deref()),
        };
        let previous = read(key)?;
        if let Command::Cas { expected, .. } = &command
            && previous != *expected
        {
            reject!(
                "cas failed on key {key:?}: current value is {}, expected {}",
                describe(previous.as_deref()),
                describe(expected.as_deref()),
            );
        }
        write(key, new);
        Ok(previous)
    }

    fn query(_ctx: &QueryContext, query: Query) -> Result<QueryOutput, Rejection> {
        match query {
            Query::Get { key } => Ok(QueryOutput::Value(read(&key)?)),
            Query::Scan { start, end, limit } => {
                let limit = limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT) as usize;
                kv::scan_all(start.as_bytes(), end.as_ref().map(String::as_bytes))
                    .take(limit)
                    .map(|(k, v)| {
                        let value = text(&k, v)?;
                        let key = String::from_utf8(k)
                            .map_err(|_| Rejection::new("stored key is not UTF-8"))?;
                        Ok(Pair { key, value })
                    })
                    .collect::<Result<_, _>>()
                    .map(QueryOutput::Pairs)
            }
        }
    }
}

fn describe(value: Option<&str>) -> String {
    value.map_or_else(|| "absent".to_owned(), |v| format!("{v:?}"))
}

flotilla_sdk::export!(Kv);

#[cfg(test)]
mod tests;
