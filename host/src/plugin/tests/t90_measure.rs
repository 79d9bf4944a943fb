//! Measurements, not assertions. Run with
//! `cargo test --release -p flotilla --lib plugin::tests::t90 -- --ignored --nocapture`.

use std::sync::Arc;
use std::time::Instant;

use super::fixture::{MapReader, apply_view, entry, guest, runtime_with};
use crate::examples::KV;
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
