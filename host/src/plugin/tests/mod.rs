//! Tests of the plugin room, by theme: deploy validation, applying entries, queries, the
//! compile cache, measurements. `fixture` holds a hand-written guest.

mod fixture;
mod t10_validate;
mod t20_apply;
mod t30_query;
mod t40_cache;
mod t90_measure;
