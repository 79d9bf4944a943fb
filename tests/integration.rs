//! The integration tests, one module per file, compiled as one test binary of the
//! `flotilla` package (so cargo builds the real `flotilla` binary first and
//! `CARGO_BIN_EXE_flotilla` names it). Every test starts real `flotilla` processes on
//! 127.0.0.1 ports from the harness in `src/lib.rs`. Run one file's tests with
//! `cargo test -p flotilla --test integration t70_cluster::`.

mod t10_single_node;
mod t15_batch;
mod t20_containment;
mod t21_attacks;
mod t30_many_groups;
mod t40_cli;
mod t50_examples;
mod t60_linearizable;
mod t70_cluster;
mod t80_bad_input;
mod t90_fault_loop;
mod t92_full_disk;
mod t95_metrics;
