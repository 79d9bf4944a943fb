//! Deterministic simulation of the multi-raft core. N nodes (3–5) run in one thread,
//! each a real [`StoreLoop`](super::store_loop::StoreLoop) with the real apply loop and
//! snapshot worker over a [`MemStore`](crate::storage::mem::MemStore) (snapshots shared
//! through a `SnapExchange`), native KV and bank state machines, a simulated clock and a
//! simulated network. One `u64` seed decides everything — the configuration, message
//! delays, drops, duplicates, partitions, crashes, leader transfers, membership changes
//! and what the clients send — so a failing seed replays byte for byte.
//!
//! Invariants checked while it runs: at most one leader per term and group; an index
//! once committed never changes (term and data hash of every entry handed to apply, on
//! every node, across crashes); replicas at the same applied index hold identical state
//! (hash of the group's KV); the bank's total is conserved on every replica at every
//! applied index; reads are served only once applied; a write answered `Dropped` never
//! takes effect. At the end the network heals, crashed nodes restart, every group's
//! members must converge (liveness), a linearizable read of every key and of the bank
//! is added to the history, and the client histories (with unknown outcomes for lost
//! answers) go through the linearizability checker of `tests/src/linearizability.rs`
//! — which is also what shows that every acknowledged write survived.
//!
//! Commands:
//!
//! ```text
//! cargo test -p flotilla --lib sim::tests::ci_seeds                    # CI: a bounded set of seeds
//! SIM_SEED=1234 cargo test -p flotilla --lib sim::tests::replay -- --nocapture
//! SIM_SEEDS=200 SIM_SEED_BASE=1000 cargo test -p flotilla --release --lib \
//!     sim::tests::many_seeds -- --ignored --nocapture                  # long runs
//! ```
//!
//! `SIM_MS` sets the length of the chaos phase in simulated milliseconds for `replay`
//! and `many_seeds` (default 60000, enough writes for log compaction and snapshots).

mod fsm;
mod net;
mod node;
mod rng;
mod world;

pub use world::{Config, Report, Stats, run};

/// Runs `seed`, turning a panic anywhere in the core into a reported violation.
pub fn run_seed(seed: u64, duration_ms: u64) -> Report {
    let cfg = Config::for_seed(seed, duration_ms);
    let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(seed, cfg.clone())));
    attempt.unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("unknown panic")
            .to_string();
        Report {
            seed,
            config: cfg,
            violations: vec![format!("panic: {why}")],
            notes: Vec::new(),
            trace: 0,
            stats: Stats::default(),
        }
    })
}

/// The command that replays `r`'s seed.
pub fn replay_command(r: &Report) -> String {
    format!(
        "SIM_SEED={} SIM_MS={} cargo test -p flotilla --lib sim::tests::replay -- --nocapture",
        r.seed, r.config.duration_ms
    )
}

/// One line per run, plus the details of anything wrong.
pub fn describe(r: &Report) -> String {
    let s = &r.stats;
    let mut out = format!(
        "seed {}: {} nodes, {} kv groups, trace {:016x}; {} steps, ops ok/unknown/abandoned \
         {}/{}/{}, msgs {} delivered {} lost, {} snapshots, {} crashes, {} partitions, {} \
         transfers, {} conf changes, {} leaders, max applied {}, max truncated {}, {} \
         hibernating peer-ticks",
        r.seed,
        r.config.nodes,
        r.config.kv_groups,
        r.trace,
        s.steps,
        s.ops_ok,
        s.ops_unknown,
        s.ops_abandoned,
        s.messages_delivered,
        s.messages_lost,
        s.snapshots_sent,
        s.crashes,
        s.partitions,
        s.transfers,
        s.conf_changes,
        s.leaders,
        s.max_applied,
        s.max_truncated,
        s.hibernating_peer_ticks
    );
    if !s.unknown_reasons.is_empty() {
        out.push_str(&format!("\n  unknown outcomes: {:?}", s.unknown_reasons));
    }
    for n in &r.notes {
        out.push_str(&format!("\n  note: {n}"));
    }
    for v in &r.violations {
        out.push_str(&format!("\n  VIOLATION: {v}"));
    }
    if !r.violations.is_empty() {
        out.push_str(&format!("\n  replay: {}", replay_command(r)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_u64(name: &str) -> Option<u64> {
        std::env::var(name).ok().and_then(|v| v.parse().ok())
    }

    const DEFAULT_MS: u64 = 60_000;

    /// The seeds CI runs: short ones for breadth and one long enough for compaction.
    #[test]
    fn ci_seeds() {
        let mut failed = Vec::new();
        let mut snapshots = 0;
        let mut truncated = 0;
        let runs: Vec<(u64, u64)> = (1..=6)
            .map(|s| (s, 8_000))
            .chain([(7, DEFAULT_MS)])
            .collect();
        for (seed, ms) in runs {
            let r = run_seed(seed, ms);
            println!("{}", describe(&r));
            snapshots += r.stats.snapshots_sent;
            truncated = truncated.max(r.stats.max_truncated);
            if !r.violations.is_empty() {
                failed.push(replay_command(&r));
            }
        }
        assert!(failed.is_empty(), "failing seeds:\n{}", failed.join("\n"));
        assert!(snapshots > 0, "no run sent a snapshot");
        assert!(
            truncated > crate::raftstore::store_loop::INIT_INDEX,
            "no run compacted its log"
        );
    }

    /// The same seed gives the same run, byte for byte.
    #[test]
    fn same_seed_same_trace() {
        let a = run_seed(42, 5_000);
        let b = run_seed(42, 5_000);
        assert_eq!(a.trace, b.trace, "{}\n{}", describe(&a), describe(&b));
        assert_eq!(a.stats.steps, b.stats.steps);
        assert_ne!(a.trace, run_seed(43, 5_000).trace);
    }

    /// Replays `SIM_SEED` (does nothing without it).
    #[test]
    fn replay() {
        let Some(seed) = env_u64("SIM_SEED") else {
            return;
        };
        let r = run_seed(seed, env_u64("SIM_MS").unwrap_or(DEFAULT_MS));
        println!("{}", describe(&r));
        assert!(r.violations.is_empty(), "seed {seed} broke an invariant");
    }

    /// `SIM_SEEDS` seeds from `SIM_SEED_BASE` (default 100 from 1000).
    #[test]
    #[ignore = "long: run with SIM_SEEDS=N ... -- --ignored"]
    fn many_seeds() {
        let n = env_u64("SIM_SEEDS").unwrap_or(100);
        let base = env_u64("SIM_SEED_BASE").unwrap_or(1_000);
        let ms = env_u64("SIM_MS").unwrap_or(DEFAULT_MS);
        let mut failed = Vec::new();
        for seed in base..base + n {
            let r = run_seed(seed, ms);
            println!("{}", describe(&r));
            if !r.violations.is_empty() {
                failed.push(replay_command(&r));
            }
        }
        assert!(failed.is_empty(), "failing seeds:\n{}", failed.join("\n"));
    }
}
