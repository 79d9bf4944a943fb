//! The real example plugins (Rust, built with the guest SDK, embedded by the build
//! script): `kv` round-trips through apply and query, and every misbehaviour of `hostile`
//! becomes the right error with the state unchanged and the entry going on.

use std::sync::Arc;

use super::fixture::{MapReader, apply_view, entry, query_ctx, query_view, runtime_with};
use crate::examples::{HOSTILE, KV};
use crate::ids::PluginDigest;
use crate::limits;
use crate::plugin::PluginRuntime;
use crate::raftstore::fsm::{FsmError, StateMachineHost};

/// Applies JSON `commands` as one entry and commits the result.
fn apply(
    runtime: &PluginRuntime,
    digest: PluginDigest,
    reader: &Arc<MapReader>,
    commands: &[&str],
) -> Vec<Result<String, FsmError>> {
    let commands: Vec<&[u8]> = commands.iter().map(|c| c.as_bytes()).collect();
    let (view, outcomes) = runtime.apply_entry(digest, entry(9), &commands, apply_view(reader));
    reader.commit(view);
    outcomes
        .into_iter()
        .map(|o| o.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
        .collect()
}

fn query(
    runtime: &PluginRuntime,
    digest: PluginDigest,
    reader: &Arc<MapReader>,
    request: &str,
) -> Result<String, FsmError> {
    runtime
        .query(digest, query_ctx(9), request.as_bytes(), query_view(reader))
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

#[test]
fn kv_round_trips_a_put_through_apply_and_query() {
    let (runtime, digest, _dir) = runtime_with(KV);
    let reader = Arc::new(MapReader::default());
    let outcomes = apply(
        &runtime,
        digest,
        &reader,
        &[
            r#"{"put":{"key":"a","value":"b"}}"#,
            r#"{"put":{"key":"a","value":"c"}}"#,
        ],
    );
    assert_eq!(outcomes, [Ok("null".to_owned()), Ok(r#""b""#.to_owned())]);
    let answer = query(&runtime, digest, &reader, r#"{"get":{"key":"a"}}"#);
    assert_eq!(answer.as_deref(), Ok(r#"{"value":"c"}"#));
    let garbage = apply(&runtime, digest, &reader, &["not json"]);
    assert!(
        matches!(garbage[0], Err(FsmError::Invalid(_))),
        "{garbage:?}"
    );
}

/// A hostile command, and whether its error is the expected one.
type Case = (String, fn(&FsmError) -> bool);

fn hostile_cases() -> Vec<Case> {
    let huge = limits::OUTPUT_SIZE_BYTES_MAX;
    vec![
        (
            r#"{"trap":{}}"#.into(),
            |e| matches!(e, FsmError::Trapped(m) if m.contains("unreachable")),
        ),
        (r#"{"loop_forever":{}}"#.into(), |e| {
            matches!(e, FsmError::OutOfFuel { .. })
        }),
        (r#"{"alloc_forever":{}}"#.into(), |e| {
            matches!(e, FsmError::MemoryLimit { .. })
        }),
        // The 256-byte frames live on the guest's shadow stack in linear memory, which
        // Rust places first: overflowing it runs below address 0, an out-of-bounds
        // access. Shallow frames exhaust the wasm call stack instead (see t20).
        (r#"{"recurse":{"depth":100000000}}"#.into(), |e| {
            // Rust's own stack at the bottom of linear memory overflows first: named as
            // a stack overflow, with the function that recursed.
            matches!(e, FsmError::Trapped(m)
                if m.starts_with("stack overflow") && m.contains("misbehave::recurse"))
        }),
        (format!(r#"{{"huge_output":{{"bytes":{huge}}}}}"#), |e| {
            matches!(e, FsmError::OutputTooLarge { .. })
        }),
        (
            r#"{"panic":{"message":"boom"}}"#.into(),
            |e| matches!(e, FsmError::Panicked(m) if m.starts_with("boom")),
        ),
        (
            r#"{"write_then_trap":{"key":"k","value":"v"}}"#.into(),
            |e| matches!(e, FsmError::Trapped(_)),
        ),
        (
            r#"{"write_then_reject":{"key":"k","value":"v"}}"#.into(),
            |e| matches!(e, FsmError::Rejected(_)),
        ),
    ]
}

#[test]
fn hostile_misbehaviour_is_contained() {
    let (runtime, digest, _dir) = runtime_with(HOSTILE);
    let reader = Arc::new(MapReader::default());
    let put = r#"{"put":{"key":"ok","value":"yes"}}"#;
    for (command, expected) in hostile_cases() {
        let outcomes = apply(&runtime, digest, &reader, &[&command, put]);
        let [failed, ok] = outcomes.as_slice() else {
            panic!("two outcomes for {command}");
        };
        let error = failed.as_ref().expect_err(&command);
        assert!(expected(error), "{command}: {error:?}");
        if matches!(error, FsmError::OutOfFuel { .. }) {
            // The entry's shared fuel is spent: the put did not run, and may be retried.
            assert!(
                matches!(ok, Err(FsmError::NotRun(_))),
                "after {command}: {ok:?}"
            );
        } else {
            assert!(ok.is_ok(), "the put after {command}: {ok:?}");
        }
        let k = query(&runtime, digest, &reader, r#"{"get":{"key":"k"}}"#);
        assert_eq!(k.as_deref(), Ok("null"), "after {command}");
    }
    assert_eq!(reader.value("ok").as_deref(), Some("yes"));
    assert_eq!(reader.len(), 1);
}

#[test]
fn hostile_queries_are_contained() {
    let (runtime, digest, _dir) = runtime_with(HOSTILE);
    let reader = Arc::new(MapReader::default());
    let write = query(
        &runtime,
        digest,
        &reader,
        r#"{"put":{"key":"k","value":"v"}}"#,
    );
    assert!(matches!(write, Err(FsmError::KvMisuse(_))), "{write:?}");
    let spin = query(&runtime, digest, &reader, r#"{"loop_forever":{}}"#);
    assert!(matches!(spin, Err(FsmError::OutOfFuel { .. })), "{spin:?}");
    let trap = query(&runtime, digest, &reader, r#"{"trap":{}}"#);
    assert!(matches!(trap, Err(FsmError::Trapped(_))), "{trap:?}");
    assert_eq!(reader.value("k"), None);
}
