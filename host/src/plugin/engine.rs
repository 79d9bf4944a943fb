//! The one wasmtime [`Engine`] of a node, configured so that a plugin call has the same
//! outcome on every replica: fuel metering instead of wall-clock interruption, NaN
//! canonicalization, no threads, no relaxed SIMD, a fixed wasm stack, and a pooling
//! allocator whose slots are sized from [`crate::limits`], with explicit bounds checks
//! instead of guard pages so that a fresh instance per entry costs no `mprotect`.
//!
//! Nothing here decides an outcome at run time; that is [`super::sandbox`]'s job.

use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig,
    WasmFeatures,
};

use super::PluginError;
use crate::limits;

/// Core instances one plugin component may contain. A component made by `wit-component`
/// from one core module holds three (the module, a shim and its fixup); the rest is room
/// for components built by other toolchains.
pub(crate) const CORE_INSTANCES_PER_COMPONENT_MAX: u32 = 8;
/// Tables one plugin component may contain (one per core instance at most).
pub(crate) const TABLES_PER_COMPONENT_MAX: u32 = CORE_INSTANCES_PER_COMPONENT_MAX;
/// Linear memories one plugin component may contain: one, so the per-instance memory
/// limit is the plugin's memory limit.
pub(crate) const MEMORIES_PER_COMPONENT_MAX: u32 = 1;
/// Elements of one plugin table, at most.
pub(crate) const TABLE_ELEMENTS_MAX: usize = 20_000;

/// Bytes of a freed slot's linear memory reset in place instead of handed back to the
/// kernel. A Rust guest touches its shadow stack (the first MiB) and a little data and
/// heap above it; with Linux's PAGEMAP_SCAN (6.7+, used when available) only the dirty
/// pages are reset, which halves the cost of a fresh instance (measured: kv example
/// 36 -> 18 µs per entry). Costs up to this much resident memory per warm slot.
pub(crate) const MEMORY_KEEP_RESIDENT_BYTES: usize = 2 << 20;
/// Innermost Wasm frames a trap's backtrace captures: enough to tell a runaway
/// recursion from an ordinary out-of-bounds access (see `sandbox::classify`).
pub(crate) const BACKTRACE_FRAMES_MAX: usize = 64;

/// Bytes of a freed slot's table reset in place.
pub(crate) const TABLE_KEEP_RESIDENT_BYTES: usize = 64 << 10;

const _: () = assert!(MEMORY_KEEP_RESIDENT_BYTES <= limits::PLUGIN_MEMORY_BYTES_MAX);
const _: () = assert!(limits::PLUGIN_MEMORY_BYTES_MAX.is_multiple_of(65_536));
const _: () = assert!(limits::PLUGIN_INSTANCES_MAX > 0);

/// The wasmtime configuration every node uses. Compiled code is only reused (see
/// [`super::cache`]) by an engine with the same configuration.
pub(crate) fn deterministic_config() -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .consume_fuel(true)
        .epoch_interruption(false)
        .cranelift_nan_canonicalization(true)
        .wasm_features(WasmFeatures::THREADS, false)
        .wasm_relaxed_simd(false)
        .relaxed_simd_deterministic(true)
        .max_wasm_stack(limits::PLUGIN_STACK_BYTES_MAX)
        .wasm_backtrace_max_frames(std::num::NonZeroUsize::new(BACKTRACE_FRAMES_MAX))
        .cranelift_opt_level(OptLevel::Speed)
        // Explicit bounds checks instead of guard pages and signal handlers. With guard
        // pages every `memory.grow` of the guest's allocator and every reset of a freed
        // slot is an `mprotect`, i.e. a TLB shootdown across the node's threads, once
        // per entry; without them a warm slot keeps its grown pages mapped and only
        // their contents are reset. Measured with `cargo bench --bench apply`: a
        // one-command kv entry 20.1 -> 11.7 µs. Outcomes are unchanged: an
        // out-of-bounds access traps either way, and growth is still refused past
        // the plugin's memory limit by the sandbox's limiter.
        .memory_reservation(limits::PLUGIN_MEMORY_BYTES_MAX as u64)
        .memory_guard_size(0)
        .memory_reservation_for_growth(0)
        .signals_based_traps(false)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pooling()));
    config
}

/// The pool: [`limits::PLUGIN_INSTANCES_MAX`] component instances alive at once, each
/// with one memory of at most [`limits::PLUGIN_MEMORY_BYTES_MAX`].
fn pooling() -> PoolingAllocationConfig {
    let instances = limits::PLUGIN_INSTANCES_MAX;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(instances)
        .total_core_instances(instances * CORE_INSTANCES_PER_COMPONENT_MAX)
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT_MAX)
        .total_memories(instances * MEMORIES_PER_COMPONENT_MAX)
        .max_memories_per_component(MEMORIES_PER_COMPONENT_MAX)
        .total_tables(instances * TABLES_PER_COMPONENT_MAX)
        .max_tables_per_component(TABLES_PER_COMPONENT_MAX)
        .table_elements(TABLE_ELEMENTS_MAX)
        .max_memory_size(limits::PLUGIN_MEMORY_BYTES_MAX)
        .pagemap_scan(Enabled::Auto)
        .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT_BYTES)
        .table_keep_resident(TABLE_KEEP_RESIDENT_BYTES);
    pool
}

/// A new engine with [`deterministic_config`].
pub(crate) fn deterministic_engine() -> Result<Engine, PluginError> {
    Engine::new(&deterministic_config()).map_err(|e| PluginError::Engine(format!("{e:#}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_builds_and_refuses_threads() {
        let engine = deterministic_engine().expect("engine");
        let shared = r#"(module (memory 1 1 shared))"#;
        let err = wasmtime::Module::new(&engine, shared).expect_err("threads are off");
        assert!(format!("{err:#}").contains("threads"), "{err:#}");
    }
}
