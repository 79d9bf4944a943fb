//! A replicated 64-bit signed counter.
//!
//! Commands (output: the counter's value as a JSON number):
//! - `{"add":{"delta":5}}` adds `delta` (may be negative) and returns the new value;
//!   a result outside `i64` is rejected and leaves the counter unchanged.
//! - `{"reset":{}}` sets the counter to 0 and returns the value it had.
//!
//! Query: `{"get":{}}` returns the current value (0 before any command).

use flotilla_sdk::{ApplyContext, QueryContext, Rejection, StateMachine, kv, reject};
use serde::{Deserialize, Serialize};

/// A change to the counter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Add `delta`; returns the new value.
    Add {
        /// The amount to add (negative subtracts).
        delta: i64,
    },
    /// Set to zero; returns the previous value.
    Reset {},
}

/// A read of the counter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Query {
    /// The current value.
    Get {},
}

/// The KV key holding the value (postcard `i64`).
const KEY: &[u8] = b"counter";

/// The counter state machine.
#[derive(Debug)]
pub struct Counter;

fn value() -> Result<i64, Rejection> {
    Ok(kv::get_value::<i64>(KEY)?.unwrap_or(0))
}

impl StateMachine for Counter {
    type Command = Command;
    type Output = i64;
    type Query = Query;
    type QueryOutput = i64;

    fn apply(_ctx: &ApplyContext, command: Command) -> Result<i64, Rejection> {
        let current = value()?;
        match command {
            Command::Add { delta } => {
                let Some(next) = current.checked_add(delta) else {
                    reject!("overflow: {current} + {delta} does not fit in i64");
                };
                kv::put_value(KEY, &next)?;
                Ok(next)
            }
            Command::Reset {} => {
                kv::delete(KEY);
                Ok(current)
            }
        }
    }

    fn query(_ctx: &QueryContext, query: Query) -> Result<i64, Rejection> {
        match query {
            Query::Get {} => value(),
        }
    }
}

flotilla_sdk::export!(Counter);

#[cfg(test)]
mod tests;
