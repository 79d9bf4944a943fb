//! The [`StateMachine`] trait and the byte-level dispatch around it.
//!
//! The dispatch functions decode the request in its codec, call the typed method and
//! encode the answer in the same codec. They touch no host import themselves, so the
//! native test harness in [`crate::testing`] drives plugins through exactly the same path
//! as the Wasm exports.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::Codec;
use crate::context::{ApplyContext, CommandError, QueryContext, Rejection};

/// A replicated state machine whose state lives in the host KV ([`crate::kv`]).
///
/// Implement it on a unit struct and export it with [`crate::export!`]. Methods are
/// associated functions: the guest holds no state between calls, because the host may
/// run every call in a fresh instance. Both must be deterministic: use only the context,
/// the request and the KV, never a clock or a random source of your own.
pub trait StateMachine {
    /// A command, decoded from the entry (JSON or binary).
    type Command: DeserializeOwned;
    /// What a successful command returns to the client.
    type Output: Serialize;
    /// A read-only request.
    type Query: DeserializeOwned;
    /// What a successful query returns.
    type QueryOutput: Serialize;

    /// Applies one command. An `Err` discards every KV write the command made.
    fn apply(ctx: &ApplyContext, command: Self::Command) -> Result<Self::Output, Rejection>;

    /// Answers a query against the applied state. KV writes are refused here.
    fn query(ctx: &QueryContext, query: Self::Query) -> Result<Self::QueryOutput, Rejection>;
}

/// Decodes `command`, applies it and encodes the output in the command's codec.
pub fn dispatch_apply<M: StateMachine>(
    ctx: &ApplyContext,
    command: &[u8],
) -> Result<Vec<u8>, CommandError> {
    let codec = Codec::detect(command);
    let command = decode(codec, command)?;
    encode(codec, &M::apply(ctx, command)?)
}

/// Decodes `request`, runs the query and encodes the answer in the request's codec.
pub fn dispatch_query<M: StateMachine>(
    ctx: &QueryContext,
    request: &[u8],
) -> Result<Vec<u8>, CommandError> {
    let codec = Codec::detect(request);
    let request = decode(codec, request)?;
    encode(codec, &M::query(ctx, request)?)
}

fn decode<T: DeserializeOwned>(codec: Codec, bytes: &[u8]) -> Result<T, CommandError> {
    codec
        .decode(bytes)
        .map_err(|e| CommandError::Invalid(e.to_string()))
}

fn encode<T: Serialize>(codec: Codec, value: &T) -> Result<Vec<u8>, CommandError> {
    codec
        .encode(value)
        .map_err(|e| CommandError::Rejected(format!("the plugin's output does not encode: {e}")))
}
