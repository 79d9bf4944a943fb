//! Deploy validation: what is refused, and how the refusal reads.

use super::fixture::{guest, stateful_guest, wasm};
use crate::ids::PluginDigest;
use crate::plugin::{PluginError, PluginRuntime};

fn runtime() -> (PluginRuntime, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tmp");
    let runtime = PluginRuntime::new(dir.path().to_path_buf()).expect("runtime");
    (runtime, dir)
}

#[test]
fn a_core_module_of_the_world_is_accepted_and_encoded() {
    let (runtime, _dir) = runtime();
    let bytes = guest();
    let plugin = runtime.validate(&bytes).expect("valid");
    assert_eq!(plugin.digest, PluginDigest::of(&bytes));
    assert_eq!(plugin.size_bytes, bytes.len());
    assert!(!plugin.stateful);
    assert!(wasmparser::Parser::is_component(&plugin.component));
}

#[test]
fn the_snapshot_exports_mark_a_stateful_plugin() {
    let (runtime, _dir) = runtime();
    let bytes = stateful_guest();
    assert!(runtime.validate(&bytes).expect("valid").stateful);
    let digest = PluginDigest::of(&bytes);
    runtime.load(digest, &bytes).expect("load");
    assert_eq!(runtime.is_stateful(digest), Some(true));
}

/// A new deployment of a stateful plugin is refused, saying why, until nodes can run
/// one (a plugin deployed before still loads, so groups that run it keep running).
#[test]
fn a_stateful_plugin_is_refused_at_deploy() {
    let (runtime, _dir) = runtime();
    let bytes = stateful_guest();
    let err = runtime.validate_deploy(&bytes).expect_err("refused");
    assert!(matches!(err, PluginError::StatefulNotSupported), "{err}");
    assert!(err.is_invalid_input());
    assert!(err.to_string().contains("stateful-fsm"), "{err}");
    assert!(runtime.validate_deploy(&guest()).is_ok());
}

#[test]
fn garbage_is_not_wasm() {
    let (runtime, _dir) = runtime();
    let err = runtime
        .validate(b"#!/bin/sh\necho hi\n")
        .expect_err("garbage");
    assert!(matches!(err, PluginError::NotWasm(_)), "{err}");
    assert!(
        err.to_string()
            .contains("magic bytes 00 61 73 6d but with [23 21 2f 62]"),
        "{err}"
    );
}

#[test]
fn malformed_wasm_says_where() {
    let (runtime, _dir) = runtime();
    let err = runtime
        .validate(b"\0asm\x01\0\0\0\x01")
        .expect_err("truncated");
    assert!(matches!(err, PluginError::NotWasm(_)), "{err}");
    assert!(err.to_string().contains("offset"), "{err}");
}

#[test]
fn wasi_imports_are_named_one_by_one() {
    let (runtime, _dir) = runtime();
    let module = wasm(
        r#"(module
            (import "wasi_snapshot_preview1" "fd_write"
                (func (param i32 i32 i32 i32) (result i32)))
            (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
            (import "flotilla:fsm/log@0.1.0" "log" (func (param i32 i32 i32))))"#,
    );
    let err = runtime.validate(&module).expect_err("wasi");
    let PluginError::ForbiddenImports(names) = &err else {
        panic!("expected ForbiddenImports, got {err}");
    };
    assert_eq!(
        names,
        &[
            "wasi_snapshot_preview1::fd_write",
            "wasi_snapshot_preview1::proc_exit"
        ]
    );
    let message = err.to_string();
    assert!(
        message.contains("wasi_snapshot_preview1::fd_write, wasi_snapshot_preview1::proc_exit")
    );
}

#[test]
fn a_component_importing_a_clock_is_refused() {
    let (runtime, _dir) = runtime();
    let component = wasm(r#"(component (import "wasi:clocks/wall-clock@0.2.0" (instance)))"#);
    let err = runtime.validate(&component).expect_err("clock");
    let PluginError::ForbiddenImports(names) = &err else {
        panic!("expected ForbiddenImports, got {err}");
    };
    assert_eq!(names, &["wasi:clocks/wall-clock@0.2.0"]);
}

#[test]
fn a_module_without_the_exports_is_not_the_world() {
    let (runtime, _dir) = runtime();
    let module = wasm(r#"(module (memory (export "memory") 1))"#);
    let err = runtime.validate(&module).expect_err("no exports");
    assert!(matches!(err, PluginError::NotFsmWorld(_)), "{err}");
    assert!(err.to_string().contains("apply"), "{err}");
}

#[test]
fn an_empty_component_is_not_the_world() {
    let (runtime, _dir) = runtime();
    let err = runtime.validate(&wasm("(component)")).expect_err("empty");
    assert!(matches!(err, PluginError::NotFsmWorld(_)), "{err}");
}

#[test]
fn threads_do_not_compile() {
    let (runtime, _dir) = runtime();
    let module = wasm(r#"(module (memory 1 1 shared))"#);
    let err = runtime.validate(&module).expect_err("threads");
    assert!(
        matches!(err, PluginError::Compile(_) | PluginError::NotFsmWorld(_)),
        "{err}"
    );
}

#[test]
fn oversized_uploads_are_refused_before_parsing() {
    let (runtime, _dir) = runtime();
    let huge = vec![0u8; crate::limits::PLUGIN_SIZE_BYTES_MAX + 1];
    let err = runtime.validate(&huge).expect_err("huge");
    assert!(matches!(err, PluginError::TooLarge { .. }), "{err}");
}
