//! Tests of the plugin room, by theme: deploy validation, applying entries, queries, the
//! compile cache, the real example plugins, every host import under arbitrary arguments
//! (property tests), measurements. `fixture` holds a hand-written
//! guest, so most tests do not depend on the Rust-to-Wasm build.

mod fixture;
mod t10_validate;
mod t20_apply;
mod t30_query;
mod t40_cache;
mod t50_examples;
mod t60_host_imports;
mod t90_measure;
