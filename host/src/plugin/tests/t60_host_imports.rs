//! Every host import, and the storage reads under it, with arbitrary arguments against
//! a real fjall store: keys and bounds of every size around every limit (the 16 KiB key
//! limit, the store's 65,535-byte key limit, past both), runs of 0xff, the host's
//! reserved prefix, empty ones; values around the 4 MiB limit; any scan limit; any fuel
//! left. Each call must answer with a result or a deterministic error (a KV rule or
//! limit, or running out of fuel), never panic, and what it returns must keep the
//! rules (a scan page stays in its range, in order, within its count and byte budget).
//! The writes that pass must then commit to the store.

use std::sync::Arc;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use wasmtime::{AsContextMut, Trap};

use super::super::engine::deterministic_engine;
use super::super::host_imports;
use super::super::sandbox::{LogContext, Sandbox};
use super::fixture::GROUP;
use crate::ids::PluginDigest;
use crate::limits::{
    KV_KEY_BYTES_MAX, KV_SCAN_BYTES_MAX, KV_SCAN_PAIRS_MAX, KV_VALUE_BYTES_MAX,
    PLUGIN_FUEL_PER_CALL,
};
use crate::raftstore::fsm::{FsmError, KvReader, KvView, WriteSet};
use crate::raftstore::quota;
use crate::raftstore::traits::{ApplyState, ApplyStore};
use crate::storage::Store;
use crate::storage::keys::STORE_KEY_BYTES_MAX;

/// One call of an import.
#[derive(Clone)]
enum Call {
    Get(Vec<u8>),
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    Scan(Vec<u8>, Option<Vec<u8>>, u32),
    Log(String),
}

/// Bytes shown compactly: their length and first few, so a failure prints readably.
fn short(bytes: &[u8]) -> String {
    let head: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{}B[{}..]", bytes.len(), head.join(" "))
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Call::Get(k) => write!(f, "get({})", short(k)),
            Call::Put(k, v) => write!(f, "put({}, {})", short(k), short(v)),
            Call::Delete(k) => write!(f, "delete({})", short(k)),
            Call::Scan(s, e, l) => {
                write!(f, "scan({}, {:?}, {l})", short(s), e.as_deref().map(short))
            }
            Call::Log(m) => write!(f, "log({} bytes)", m.len()),
        }
    }
}

/// Key lengths at and around every limit a key meets on its way to the store.
fn edge_lengths() -> Vec<usize> {
    vec![
        KV_KEY_BYTES_MAX - 1,
        KV_KEY_BYTES_MAX,
        KV_KEY_BYTES_MAX + 1,
        STORE_KEY_BYTES_MAX - 8,
        STORE_KEY_BYTES_MAX - 7,
        STORE_KEY_BYTES_MAX,
        STORE_KEY_BYTES_MAX + 1,
        70_000,
    ]
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        vec(any::<u8>(), 0..24),
        (proptest::sample::select(edge_lengths()), any::<u8>()).prop_map(|(n, b)| vec![b; n]),
        (1usize..40).prop_map(|n| vec![0xff; n]),
        vec(any::<u8>(), 0..8).prop_map(|tail| [b"\xff\xff".as_slice(), &tail].concat()),
        (0u32..64).prop_map(|i| format!("k{i:02}").into_bytes()),
    ]
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => vec(any::<u8>(), 0..64),
        1 => proptest::sample::select(vec![
            KV_VALUE_BYTES_MAX - 1,
            KV_VALUE_BYTES_MAX,
            KV_VALUE_BYTES_MAX + 1,
        ])
        .prop_map(|n| vec![7u8; n]),
    ]
}

fn call() -> impl Strategy<Value = Call> {
    prop_oneof![
        key().prop_map(Call::Get),
        (key(), value()).prop_map(|(k, v)| Call::Put(k, v)),
        key().prop_map(Call::Delete),
        (
            key(),
            proptest::option::of(key()),
            prop_oneof![Just(0u32), Just(1), Just(u32::MAX), 0u32..20_000],
        )
            .prop_map(|(s, e, l)| Call::Scan(s, e, l)),
        "[a-z ]{0,40}".prop_map(Call::Log),
    ]
}

fn fuel() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(2_000),
        Just(10_000),
        Just(1_000_000),
        Just(PLUGIN_FUEL_PER_CALL)
    ]
}

/// A fjall store holding some of everything a call can meet: small keys, keys at the
/// key limit, 0xff runs, a large value, and the group's quota record.
fn store() -> (tempfile::TempDir, Arc<Store>) {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Arc::new(Store::open(&dir.path().join("db")).expect("store"));
    let mut writes = WriteSet::new();
    for i in 0..64u32 {
        writes.insert(format!("k{i:02}").into_bytes(), Some(vec![b'v'; 10]));
    }
    for b in [0u8, b'a', 0xfe] {
        writes.insert(vec![b; KV_KEY_BYTES_MAX], Some(vec![b; 3]));
    }
    writes.insert(vec![0xff; 5], Some(b"ff".to_vec()));
    writes.insert(b"large".to_vec(), Some(vec![1u8; KV_VALUE_BYTES_MAX]));
    let state = ApplyState {
        applied_index: 1,
        applied_term: 1,
        applied_timestamp_ms: 0,
        plugin: PluginDigest::of(b"p"),
    };
    store
        .commit_apply(GROUP, writes, state, None)
        .expect("fill");
    (dir, store)
}

/// Whether `error` is an outcome an import may have: a KV rule or limit, a command
/// that may not run, a quota refusal, or running out of fuel.
fn allowed(error: &wasmtime::Error) -> bool {
    error.downcast_ref::<Trap>() == Some(&Trap::OutOfFuel)
        || matches!(
            error.downcast_ref::<FsmError>(),
            Some(
                FsmError::KvLimit(_)
                    | FsmError::KvMisuse(_)
                    | FsmError::NotRun(_)
                    | FsmError::QuotaExceeded(_)
            )
        )
}

fn run_case(
    store: &Arc<Store>,
    engine: &wasmtime::Engine,
    calls: Vec<Call>,
    fuel: u64,
    read_only: bool,
) -> Result<(), TestCaseError> {
    let reader: Arc<dyn KvReader> = store.clone();
    let view = if read_only {
        KvView::for_query(reader.clone(), GROUP)
    } else {
        let (account, _) =
            quota::load(&*reader, GROUP).map_err(|e| TestCaseError::fail(e.to_string()))?;
        KvView::for_apply(reader.clone(), GROUP).with_account(account)
    };
    let log = LogContext {
        group: GROUP,
        index: 1,
    };
    let mut wasm_store = wasmtime::Store::new(engine, Sandbox::new(view, log));
    wasm_store
        .set_fuel(fuel)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    for call in calls {
        let s = wasm_store.as_context_mut();
        let (outcome, long_key) = match &call {
            Call::Get(k) => (
                host_imports::get(s, k.clone()).map(drop),
                k.len() > KV_KEY_BYTES_MAX,
            ),
            Call::Put(k, v) => (
                host_imports::put(s, k.clone(), v.clone()),
                k.len() > KV_KEY_BYTES_MAX,
            ),
            Call::Delete(k) => (
                host_imports::delete(s, k.clone()),
                k.len() > KV_KEY_BYTES_MAX,
            ),
            Call::Scan(start, end, limit) => {
                let long = start.len() > KV_KEY_BYTES_MAX
                    || end.as_ref().is_some_and(|e| e.len() > KV_KEY_BYTES_MAX);
                let page = host_imports::scan(s, start.clone(), end.clone(), *limit);
                if let Ok(pairs) = &page {
                    check_page(start, end.as_deref(), *limit, pairs)?;
                }
                (page.map(drop), long)
            }
            Call::Log(m) => (
                host_imports::write_log(
                    s,
                    super::super::bindings::flotilla::fsm::log::Level::Info,
                    m.clone(),
                ),
                false,
            ),
        };
        match outcome {
            Ok(()) => prop_assert!(!long_key, "{call:?} passed with an over-long key"),
            Err(e) => {
                prop_assert!(allowed(&e), "{call:?}: unexpected error {e:?}");
                // An over-long key is refused for its length (a write in a read is
                // refused first for being a write).
                if long_key && e.downcast_ref::<Trap>().is_none() {
                    let write_in_read =
                        read_only && matches!(call, Call::Put(..) | Call::Delete(_));
                    prop_assert!(
                        matches!(e.downcast_ref::<FsmError>(), Some(FsmError::KvLimit(_)))
                            || (write_in_read
                                && matches!(
                                    e.downcast_ref::<FsmError>(),
                                    Some(FsmError::KvMisuse(_))
                                )),
                        "{call:?}: {e:?}"
                    );
                }
                // A call's error aborts the guest; the next call starts over, as the
                // next command would, with what is left of the budget.
                wasm_store.data_mut().kv.discard_command();
            }
        }
    }
    let mut view = wasm_store.into_data().kv;
    if !read_only {
        let _ = view.commit_command();
        let writes = view.into_writes();
        let state = ApplyState {
            applied_index: 2,
            applied_term: 1,
            applied_timestamp_ms: 0,
            plugin: PluginDigest::of(b"p"),
        };
        store
            .commit_apply(GROUP, writes, state, None)
            .map_err(|e| TestCaseError::fail(format!("writes that passed must commit: {e}")))?;
    }
    Ok(())
}

fn check_page(
    start: &[u8],
    end: Option<&[u8]>,
    limit: u32,
    pairs: &[super::super::bindings::flotilla::fsm::types::KvPair],
) -> Result<(), TestCaseError> {
    prop_assert!(pairs.len() <= (limit as usize).min(KV_SCAN_PAIRS_MAX));
    let bytes: usize = pairs.iter().map(|p| p.key.len() + p.value.len()).sum();
    prop_assert!(
        bytes <= KV_SCAN_BYTES_MAX || pairs.len() == 1,
        "{bytes} bytes in {} pairs",
        pairs.len()
    );
    for (i, p) in pairs.iter().enumerate() {
        prop_assert!(p.key.as_slice() >= start);
        prop_assert!(end.is_none_or(|e| p.key.as_slice() < e));
        prop_assert!(
            !p.key.starts_with(b"\xff\xff"),
            "a scan reached the host's keys"
        );
        if let Some(next) = pairs.get(i + 1) {
            prop_assert!(p.key < next.key, "not ascending");
        }
    }
    Ok(())
}

#[test]
fn every_import_answers_any_argument_with_a_result_or_an_error() {
    let (_dir, store) = store();
    let engine = deterministic_engine().expect("engine");
    let mut runner = TestRunner::new(Config {
        cases: 96,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(
            &(vec(call(), 1..10), fuel(), any::<bool>()),
            |(calls, fuel, read_only)| run_case(&store, &engine, calls, fuel, read_only),
        )
        .expect("no import panics or breaks a rule");
}

/// The store's own reads, under the view: any key or bound, never a panic, and a scan
/// stays in its range (bounds longer than any stored key are clamped, not refused).
#[test]
fn store_reads_take_any_key_and_any_bounds() {
    let (_dir, store) = store();
    let snapshot = store.read_snapshot();
    let mut runner = TestRunner::new(Config {
        cases: 128,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&(key(), proptest::option::of(key())), |(start, end)| {
            for reader in [&*store as &dyn KvReader, &*snapshot as &dyn KvReader] {
                let got = reader.get(GROUP, &start);
                prop_assert!(got.is_ok(), "{got:?}");
                if start.len() + 8 > STORE_KEY_BYTES_MAX {
                    prop_assert_eq!(got, Ok(None));
                }
                prop_assert!(reader.value_size(GROUP, &start).is_ok());
                for item in reader.scan(GROUP, &start, end.as_deref()).take(100) {
                    let (k, _) = item.map_err(TestCaseError::fail)?;
                    prop_assert!(k >= start);
                    prop_assert!(end.as_ref().is_none_or(|e| k < *e));
                }
            }
            Ok(())
        })
        .expect("no store read panics");
}
