//! Measurements, not assertions. Run with
//! `cargo test --release -p flotilla --lib plugin::tests::t90 -- --ignored --nocapture`.

use std::sync::Arc;
use std::time::Instant;

use super::fixture::{MapReader, apply_view, entry, guest, runtime_with};
use crate::examples::KV;
use crate::ids::PluginDigest;
use crate::raftstore::fsm::StateMachineHost;

/// Commands applied per measurement, spread over entries of different sizes.
const COMMANDS_TOTAL: usize = 20_000;

#[test]
#[ignore = "a measurement; run by hand"]
fn fresh_instance_and_call_costs() {
    println!("hand-written WAT guest, `wk` (one put):");
    measure(&guest(), b"wk");
    println!("kv example (Rust SDK, JSON), one put:");
    measure(KV, br#"{"put":{"key":"k","value":"v"}}"#);
}

fn measure(plugin: &[u8], command: &[u8]) {
    let (runtime, digest, _dir) = runtime_with(plugin);
    let reader = Arc::new(MapReader::default());
    for commands_per_entry in [1usize, 16, 256] {
        let commands: Vec<&[u8]> = vec![command; commands_per_entry];
        let entries = COMMANDS_TOTAL / commands_per_entry;
        for index in 0..100 {
            let _ = runtime.apply_entry(digest, entry(index), &commands, apply_view(&reader));
        }
        let start = Instant::now();
        for index in 0..entries as u64 {
            let _ = runtime.apply_entry(digest, entry(index), &commands, apply_view(&reader));
        }
        let per_entry_us = start.elapsed().as_secs_f64() * 1e6 / entries as f64;
        println!(
            "{commands_per_entry:>4} commands/entry: {per_entry_us:8.2} µs/entry, \
             {:6.2} µs/command",
            per_entry_us / commands_per_entry as f64
        );
    }
}

/// Wall time per unit of fuel for the hostile plugin's guest-only loop and for its
/// host-heavy commands over a fjall store: the host's prices (`plugin::meter`) are right
/// when a unit of fuel spent in host calls takes no longer than one spent in guest code,
/// so a command's fuel budget bounds its time whatever it does.
#[test]
#[ignore = "a measurement; run by hand"]
fn host_work_against_guest_work() {
    use crate::examples::HOSTILE;
    use crate::metrics::PluginMetrics;
    use crate::raftstore::fsm::{KvReader, KvView};
    use crate::raftstore::traits::{ApplyState, ApplyStore};

    let dir = tempfile::tempdir().expect("tmp");
    let store = Arc::new(crate::storage::Store::open(&dir.path().join("db")).expect("store"));
    let group = super::fixture::GROUP;
    // Some state to read and scan: 2,000 keys of 100 bytes, and 64 values of 64 KiB.
    let mut writes = crate::raftstore::fsm::WriteSet::new();
    for i in 0..2000u32 {
        writes.insert(format!("small/{i:06}").into_bytes(), Some(vec![b's'; 100]));
    }
    let mut wide = crate::raftstore::fsm::WriteSet::new();
    for i in 0..64u32 {
        wide.insert(
            format!("wide/{i:06}").into_bytes(),
            Some(vec![b'w'; 64 << 10]),
        );
    }
    let state = ApplyState {
        applied_index: 1,
        applied_term: 1,
        applied_timestamp_ms: 0,
        plugin: PluginDigest::of(HOSTILE),
    };
    store
        .commit_apply(group, writes, state, None)
        .expect("fill");
    let wide_group = crate::ids::GroupId(group.0 + 1);
    store
        .commit_apply(wide_group, wide, state, None)
        .expect("fill");
    let metrics = PluginMetrics::default();
    let (runtime, digest, _code) = runtime_with(HOSTILE);
    let runtime = runtime.with_metrics(metrics.clone());
    let reader: Arc<dyn KvReader> = store;
    let cases = [
        (
            "guest loop",
            r#"{"spin":{"iterations":5000000}}"#.to_string(),
        ),
        (
            "put 8 B",
            r#"{"put_many":{"count":20000,"key":"k","value":"v"}}"#.to_string(),
        ),
        (
            "put 16 KiB key",
            format!(
                r#"{{"put_many":{{"count":500,"key":"{}","value":"v"}}}}"#,
                "k".repeat(16 << 10)
            ),
        ),
        (
            "get miss 16 B key",
            r#"{"get_many":{"count":20000,"key_bytes":16}}"#.to_string(),
        ),
        (
            "get miss 16 KiB key",
            r#"{"get_many":{"count":2000,"key_bytes":16384}}"#.to_string(),
        ),
        ("scan 2,000 of 100 B", r#"{"scan_all":{}}"#.to_string()),
        ("scan 64 of 64 KiB", r#"{"scan_all":{}}"#.to_string()),
    ];
    println!(
        "{:<28} {:>12} {:>12} {:>10}",
        "command", "fuel", "µs", "ns/fuel"
    );
    for (name, command) in &cases {
        let mut best = f64::MAX;
        let mut fuel = 0;
        for index in 0..5 {
            let before = metrics.fuel_apply.get();
            let started = Instant::now();
            let g = if name.contains("64 KiB") {
                wide_group
            } else {
                group
            };
            // As the apply loop runs a plugin group: held to a quota, so that the
            // commit's lookups of what each written key held are timed too.
            let view = KvView::for_apply(reader.clone(), g)
                .with_account(crate::raftstore::quota::Account::default());
            let (_, outcomes) =
                runtime.apply_entry(digest, entry(index), &[command.as_bytes()], view);
            let took = started.elapsed().as_secs_f64();
            assert!(outcomes[0].is_ok(), "{name}: {:?}", outcomes[0]);
            fuel = metrics.fuel_apply.get() - before;
            best = best.min(took);
        }
        println!(
            "{name:<28} {fuel:>12} {:>12.0} {:>10.3}",
            best * 1e6,
            best * 1e9 / fuel as f64
        );
    }
}

/// What holding a group to its quota costs an entry of blind `set`s of new keys on a
/// fjall store: the same entries applied with and without the account (whose upkeep is
/// one value-size lookup per written key).
#[test]
#[ignore = "a measurement; run by hand"]
fn quota_upkeep_per_write() {
    use crate::raftstore::fsm::{KvReader, KvView};
    use crate::raftstore::quota::Account;
    use crate::raftstore::traits::{ApplyState, ApplyStore};

    let dir = tempfile::tempdir().expect("tmp");
    let store = Arc::new(crate::storage::Store::open(&dir.path().join("db")).expect("store"));
    let group = super::fixture::GROUP;
    let (runtime, digest, _code) = runtime_with(KV);
    let reader: Arc<dyn KvReader> = store.clone();
    let state = ApplyState {
        applied_index: 1,
        applied_term: 1,
        applied_timestamp_ms: 0,
        plugin: PluginDigest::of(KV),
    };
    let mut next = 0u64;
    let mut entry_of = |n: usize| -> Vec<Vec<u8>> {
        (0..n)
            .map(|_| {
                next += 1;
                format!(r#"{{"set":{{"key":"key-{next:012}","value":"0123456789abcdef"}}}}"#)
                    .into_bytes()
            })
            .collect()
    };
    for commands_per_entry in [4usize, 64] {
        for tracked in [false, true, false, true] {
            let entries = 4000 / commands_per_entry;
            let started = Instant::now();
            for index in 0..entries as u64 {
                let commands = entry_of(commands_per_entry);
                let refs: Vec<&[u8]> = commands.iter().map(Vec::as_slice).collect();
                let mut view = KvView::for_apply(reader.clone(), group);
                if tracked {
                    view = view.with_account(Account::default());
                }
                let (view, outcomes) = runtime.apply_entry(digest, entry(index), &refs, view);
                assert!(outcomes.iter().all(Result::is_ok));
                store
                    .commit_apply(group, view.into_writes(), state, None)
                    .expect("commit");
            }
            let per_command_us =
                started.elapsed().as_secs_f64() * 1e6 / (entries * commands_per_entry) as f64;
            println!(
                "{commands_per_entry:>3} sets/entry, quota tracked: {tracked:<5} {per_command_us:7.2} µs per set"
            );
        }
    }
}
