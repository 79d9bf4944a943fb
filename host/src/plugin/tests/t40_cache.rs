//! The compile cache: a restart (a second runtime over the same directory) does not
//! compile again; a corrupt file is recompiled and replaced.

use std::fs;

use super::fixture::guest;
use crate::ids::PluginDigest;
use crate::plugin::{LoadOutcome, PluginError, PluginRuntime};

#[test]
fn a_restart_loads_from_the_cache() {
    let dir = tempfile::tempdir().expect("tmp");
    let bytes = guest();
    let digest = PluginDigest::of(&bytes);
    let first = PluginRuntime::new(dir.path().to_path_buf()).expect("runtime");
    assert!(!first.is_loaded(digest));
    assert_eq!(
        first.load(digest, &bytes).expect("load"),
        LoadOutcome::Compiled
    );
    assert!(first.is_loaded(digest));
    assert_eq!(
        first.load(digest, &bytes).expect("load"),
        LoadOutcome::AlreadyLoaded
    );
    drop(first);

    let second = PluginRuntime::new(dir.path().to_path_buf()).expect("runtime");
    assert_eq!(
        second.load(digest, &bytes).expect("load"),
        LoadOutcome::CacheHit
    );
    assert!(second.is_loaded(digest));
}

#[test]
fn validation_fills_the_cache() {
    let dir = tempfile::tempdir().expect("tmp");
    let bytes = guest();
    let runtime = PluginRuntime::new(dir.path().to_path_buf()).expect("runtime");
    let plugin = runtime.validate(&bytes).expect("valid");
    assert_eq!(
        runtime.load(plugin.digest, &bytes).expect("load"),
        LoadOutcome::CacheHit
    );
}

#[test]
fn a_corrupt_cache_file_is_recompiled_and_replaced() {
    let dir = tempfile::tempdir().expect("tmp");
    let bytes = guest();
    let digest = PluginDigest::of(&bytes);
    PluginRuntime::new(dir.path().to_path_buf())
        .expect("runtime")
        .validate(&bytes)
        .expect("valid");
    let files: Vec<_> = fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .collect();
    let [file] = files.as_slice() else {
        panic!("one cached file: {files:?}");
    };
    fs::write(file, b"garbage").expect("corrupt");

    let runtime = PluginRuntime::new(dir.path().to_path_buf()).expect("runtime");
    assert_eq!(
        runtime.load(digest, &bytes).expect("load"),
        LoadOutcome::Compiled
    );
    let again = PluginRuntime::new(dir.path().to_path_buf()).expect("runtime");
    assert_eq!(
        again.load(digest, &bytes).expect("load"),
        LoadOutcome::CacheHit
    );
}

#[test]
fn bytes_must_match_the_digest() {
    let dir = tempfile::tempdir().expect("tmp");
    let runtime = PluginRuntime::new(dir.path().to_path_buf()).expect("runtime");
    let err = runtime
        .load(PluginDigest::of(b"other"), &guest())
        .expect_err("mismatch");
    assert!(matches!(err, PluginError::DigestMismatch { .. }), "{err}");
}
