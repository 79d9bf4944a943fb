//! Applying entries: outputs, writes kept and dropped, and every way a guest can fail
//! turned into the right error with the state unchanged.

use std::sync::Arc;

use super::fixture::{BrokenReader, GROUP, MapReader, apply_view, entry, guest, runtime_with};
use crate::ids::PluginDigest;
use crate::limits;
use crate::raftstore::fsm::{FsmError, KvReader, KvView, StateMachineHost};

/// Applies `commands` as one entry over `reader` and commits the result.
fn apply(
    runtime: &dyn StateMachineHost,
    digest: PluginDigest,
    reader: &Arc<MapReader>,
    commands: &[&str],
) -> Vec<Result<String, FsmError>> {
    let commands: Vec<&[u8]> = commands.iter().map(|c| c.as_bytes()).collect();
    let (view, outcomes) = runtime.apply_entry(digest, entry(5), &commands, apply_view(reader));
    reader.commit(view);
    outcomes
        .into_iter()
        .map(|o| o.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
        .collect()
}

#[test]
fn writes_of_a_command_are_visible_to_the_next_and_committed() {
    let (runtime, digest, _dir) = runtime_with(&guest());
    let reader = Arc::new(MapReader::default());
    let outcomes = apply(&runtime, digest, &reader, &["wa", "ga"]);
    assert_eq!(outcomes, [Ok("a".to_owned()), Ok("a".to_owned())]);
    assert_eq!(reader.value("a").as_deref(), Some("a"));
}

/// Whether an error is the one a case expects.
type Expected = fn(&FsmError) -> bool;

#[test]
fn every_failure_is_its_own_error_and_writes_nothing() {
    let (runtime, digest, _dir) = runtime_with(&guest());
    let reader = Arc::new(MapReader::default());
    let cases: [(&str, Expected); 8] = [
        (
            "tk",
            |e| matches!(e, FsmError::Trapped(m) if m == "wasm `unreachable` instruction executed"),
        ),
        ("l", |e| {
            *e == FsmError::OutOfFuel {
                budget: limits::PLUGIN_FUEL_PER_CALL,
            }
        }),
        ("m", |e| {
            *e == FsmError::MemoryLimit {
                limit_bytes: limits::PLUGIN_MEMORY_BYTES_MAX,
            }
        }),
        (
            "s",
            |e| matches!(e, FsmError::Trapped(m) if m.starts_with("stack overflow: ") && m.contains("512 KiB")),
        ),
        ("x", |e| *e == FsmError::Panicked("boom".into())),
        ("r", |e| *e == FsmError::Rejected("no".into())),
        ("?oops", |e| *e == FsmError::Invalid("?oops".into())),
        ("b", |e| {
            *e == FsmError::OutputTooLarge {
                size_bytes: limits::OUTPUT_SIZE_BYTES_MAX + 1,
                limit_bytes: limits::OUTPUT_SIZE_BYTES_MAX,
            }
        }),
    ];
    for (command, expected) in cases {
        let outcomes = apply(&runtime, digest, &reader, &[command, "wok"]);
        let [failed, ok] = outcomes.as_slice() else {
            panic!("two outcomes for {command}");
        };
        let error = failed.as_ref().expect_err(command);
        assert!(expected(error), "{command}: {error:?}");
        if matches!(error, FsmError::OutOfFuel { .. }) {
            // The loop spent the entry's shared fuel: the next command did not run.
            assert!(
                matches!(ok, Err(FsmError::NotRun(_))),
                "after {command}: {ok:?}"
            );
        } else {
            assert_eq!(ok.as_deref(), Ok("ok"), "after {command}");
        }
    }
    let map = reader.0.lock();
    assert_eq!(map.len(), 1, "only `ok` was written: {map:?}");
}

#[test]
fn a_trap_drops_the_commands_writes_but_not_the_earlier_ones() {
    let (runtime, digest, _dir) = runtime_with(&guest());
    let reader = Arc::new(MapReader::default());
    let outcomes = apply(&runtime, digest, &reader, &["wa", "tb", "gb", "ga"]);
    assert_eq!(outcomes[0], Ok("a".to_owned()));
    assert!(matches!(outcomes[1], Err(FsmError::Trapped(_))));
    assert_eq!(outcomes[2], Err(FsmError::Rejected("missing".into())));
    assert_eq!(outcomes[3], Ok("a".to_owned()));
    assert_eq!(reader.value("a").as_deref(), Some("a"));
    assert_eq!(reader.value("b"), None);
}

#[test]
fn a_broken_disk_is_a_storage_error() {
    let (runtime, digest, _dir) = runtime_with(&guest());
    let kv = KvView::for_apply(Arc::new(BrokenReader) as Arc<dyn KvReader>, GROUP);
    let (_, outcomes) = runtime.apply_entry(digest, entry(1), &[b"gx"], kv);
    assert_eq!(outcomes, [Err(FsmError::Storage("disk on fire".into()))]);
}

#[test]
fn an_unknown_plugin_is_missing_for_every_command() {
    let (runtime, _, _dir) = runtime_with(&guest());
    let reader = Arc::new(MapReader::default());
    let unknown = PluginDigest::of(b"never deployed");
    let outcomes = apply(&runtime, unknown, &reader, &["wa", "wb"]);
    assert_eq!(
        outcomes,
        [
            Err(FsmError::MissingPlugin(unknown)),
            Err(FsmError::MissingPlugin(unknown))
        ]
    );
}
