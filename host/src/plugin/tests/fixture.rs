//! A guest written by hand in WAT, so the room's tests do not depend on a Rust-to-Wasm
//! build: a core module implementing the `fsm` world through the canonical ABI, without
//! WIT metadata (the host embeds the world). A command is one op byte and an argument:
//!
//! | op | effect |
//! |---|---|
//! | `w<k>` | put `k = k`, answer `k` |
//! | `g<k>` | answer the value of `k`, or `rejected("missing")` |
//! | `t<k>` | put `k = k`, then trap |
//! | `l` | loop forever |
//! | `m` | grow memory until refused, then trap (as Rust aborts on allocation failure) |
//! | `s` | recurse without end |
//! | `x` | log `panic: boom` at error level, then trap (as the SDK's panic hook does) |
//! | `r` | `rejected("no")` |
//! | `b` | answer one byte more than the output limit |
//! | `h` | log `hello from the guest` at info, answer nothing |
//! | `v` | log `hello from the guest` 100 times, answer nothing |
//! | other | `invalid(<the command>)` |
//!
//! `query` runs the same ops.

use std::sync::Arc;

use crate::ids::GroupId;
use crate::plugin::PluginRuntime;
use crate::raftstore::fsm::{EntryContext, KvIter, KvReader, KvView, QueryContext};

pub const GUEST_WAT: &str = r#"
(module
  (import "flotilla:fsm/kv@0.1.0" "get" (func $kv_get (param i32 i32 i32)))
  (import "flotilla:fsm/kv@0.1.0" "put" (func $kv_put (param i32 i32 i32 i32)))
  (import "flotilla:fsm/log@0.1.0" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (data (i32.const 64) "panic: boom")
  (data (i32.const 80) "no")
  (data (i32.const 88) "missing")
  (data (i32.const 96) "hello from the guest")

  (func $realloc (export "cabi_realloc")
    (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
    (local $ptr i32) (local $end i32)
    (local.set $ptr
      (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get $align))))
    (local.set $end (i32.add (local.get $ptr) (local.get $size)))
    (block $enough
      (loop $grow
        (br_if $enough
          (i32.le_u (local.get $end) (i32.mul (memory.size) (i32.const 65536))))
        (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) (then unreachable))
        (br $grow)))
    (global.set $heap (local.get $end))
    (local.get $ptr))

  ;; result<list<u8>, command-error> at 16: tag, then payload at 20.
  (func $ok (param $p i32) (param $n i32) (result i32)
    (i32.store8 (i32.const 16) (i32.const 0))
    (i32.store (i32.const 20) (local.get $p))
    (i32.store (i32.const 24) (local.get $n))
    (i32.const 16))
  (func $err (param $case i32) (param $p i32) (param $n i32) (result i32)
    (i32.store8 (i32.const 16) (i32.const 1))
    (i32.store8 (i32.const 20) (local.get $case))
    (i32.store (i32.const 24) (local.get $p))
    (i32.store (i32.const 28) (local.get $n))
    (i32.const 16))

  (func $recurse (param $n i32) (result i32)
    (i32.add (call $recurse (i32.add (local.get $n) (i32.const 1))) (i32.const 1)))

  (func $run (param $p i32) (param $n i32) (result i32)
    (local $op i32) (local $kp i32) (local $kn i32)
    (if (i32.eqz (local.get $n))
      (then (return (call $err (i32.const 0) (i32.const 88) (i32.const 7)))))
    (local.set $op (i32.load8_u (local.get $p)))
    (local.set $kp (i32.add (local.get $p) (i32.const 1)))
    (local.set $kn (i32.sub (local.get $n) (i32.const 1)))
    (if (i32.eq (local.get $op) (i32.const 119)) (then ;; w
      (call $kv_put (local.get $kp) (local.get $kn) (local.get $kp) (local.get $kn))
      (return (call $ok (local.get $kp) (local.get $kn)))))
    (if (i32.eq (local.get $op) (i32.const 103)) (then ;; g
      (call $kv_get (local.get $kp) (local.get $kn) (i32.const 32))
      (if (i32.load8_u (i32.const 32))
        (then (return (call $ok (i32.load (i32.const 36)) (i32.load (i32.const 40))))))
      (return (call $err (i32.const 1) (i32.const 88) (i32.const 7)))))
    (if (i32.eq (local.get $op) (i32.const 116)) (then ;; t
      (call $kv_put (local.get $kp) (local.get $kn) (local.get $kp) (local.get $kn))
      unreachable))
    (if (i32.eq (local.get $op) (i32.const 108)) (then ;; l
      (loop $forever (br $forever))))
    (if (i32.eq (local.get $op) (i32.const 109)) (then ;; m
      (loop $more
        (br_if $more (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
      unreachable))
    (if (i32.eq (local.get $op) (i32.const 115)) (then ;; s
      (drop (call $recurse (i32.const 0)))
      unreachable))
    (if (i32.eq (local.get $op) (i32.const 120)) (then ;; x
      (call $log (i32.const 4) (i32.const 64) (i32.const 11))
      unreachable))
    (if (i32.eq (local.get $op) (i32.const 114)) (then ;; r
      (return (call $err (i32.const 1) (i32.const 80) (i32.const 2)))))
    (if (i32.eq (local.get $op) (i32.const 98)) (then ;; b
      (drop (memory.grow (i32.const 17)))
      (return (call $ok (i32.const 0) (i32.const 1048577)))))
    (if (i32.eq (local.get $op) (i32.const 104)) (then ;; h
      (call $log (i32.const 2) (i32.const 96) (i32.const 20))
      (return (call $ok (i32.const 0) (i32.const 0)))))
    (if (i32.eq (local.get $op) (i32.const 118)) (then ;; v
      (local.set $kn (i32.const 100))
      (loop $again
        (call $log (i32.const 2) (i32.const 96) (i32.const 20))
        (local.set $kn (i32.sub (local.get $kn) (i32.const 1)))
        (br_if $again (local.get $kn)))
      (return (call $ok (i32.const 0) (i32.const 0)))))
    (call $err (i32.const 0) (local.get $p) (local.get $n)))

  (func (export "apply") (param i64 i64 i64 i64 i64 i32 i32) (result i32)
    (call $run (local.get 5) (local.get 6)))
  (func (export "query") (param i64 i64 i64 i32 i32) (result i32)
    (call $run (local.get 3) (local.get 4)))
)
"#;

/// The exports that turn the fixture into a `stateful-fsm` guest: an empty snapshot
/// and a restore that accepts anything.
const STATEFUL_EXPORTS_WAT: &str = r#"
  (func (export "snapshot-chunk") (param i64) (result i32)
    (i32.store8 (i32.const 48) (i32.const 0))
    (i32.const 48))
  (func (export "restore-chunk") (param i32 i32 i32) (result i32)
    (i32.store8 (i32.const 48) (i32.const 0))
    (i32.const 48))
"#;

/// The fixture guest with the snapshot exports, carrying `stateful-fsm` metadata.
pub fn stateful_guest() -> Vec<u8> {
    let body = GUEST_WAT
        .trim_end()
        .strip_suffix(')')
        .expect("module ends with )");
    let mut module = wasm(&format!("{body}{STATEFUL_EXPORTS_WAT})"));
    crate::plugin::world::embed_world(&mut module, "stateful-fsm").expect("embed");
    module
}

/// The fixture guest as a binary core module.
pub fn guest() -> Vec<u8> {
    wat::parse_str(GUEST_WAT).expect("fixture WAT parses")
}

/// `text` as a binary module or component.
pub fn wasm(text: &str) -> Vec<u8> {
    wat::parse_str(text).expect("test WAT parses")
}

/// Committed state in memory.
pub use crate::raftstore::mem_kv::MemKv as MapReader;

/// A reader whose storage is broken.
pub struct BrokenReader;

impl KvReader for BrokenReader {
    fn get(&self, _: GroupId, _: &[u8]) -> Result<Option<Vec<u8>>, String> {
        Err("disk on fire".into())
    }

    fn scan<'a>(&'a self, _: GroupId, _: &[u8], _: Option<&[u8]>) -> KvIter<'a> {
        Box::new(std::iter::once(Err("disk on fire".into())))
    }
}

pub const GROUP: GroupId = GroupId(7);

pub fn entry(index: u64) -> EntryContext {
    EntryContext {
        group: GROUP,
        index,
        term: 1,
        timestamp_ms: 1_700_000_000_000,
        random_seed: EntryContext::seed_for(GROUP, index),
    }
}

pub fn query_ctx(applied_index: u64) -> QueryContext {
    QueryContext {
        group: GROUP,
        applied_index,
        applied_timestamp_ms: 1_700_000_000_000,
    }
}

/// A runtime over a fresh cache dir, with `plugin` loaded. Keep the dir alive.
pub fn runtime_with(plugin: &[u8]) -> (PluginRuntime, crate::ids::PluginDigest, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tmp");
    let runtime = PluginRuntime::new(dir.path().join("code")).expect("runtime");
    let digest = crate::ids::PluginDigest::of(plugin);
    runtime.load(digest, plugin).expect("load");
    (runtime, digest, dir)
}

pub fn apply_view(reader: &Arc<MapReader>) -> KvView {
    KvView::for_apply(Arc::clone(reader) as Arc<dyn KvReader>, GROUP)
}

pub fn query_view(reader: &Arc<MapReader>) -> KvView {
    KvView::for_query(Arc::clone(reader) as Arc<dyn KvReader>, GROUP)
}
