//! [`CodeCache`]: compiled plugin code on disk, so a restart does not recompile.
//!
//! A file is `<cache_dir>/<digest hex>-<engine hex>.cwasm`: the digest of the plugin's
//! original bytes and a hash of the engine's compatibility settings (target, compiler
//! flags, tunables, wasm features, wasmtime version). A file is only ever written by
//! [`CodeCache::store`] after the plugin passed validation, through a temporary file,
//! fsync and rename, so a reader never sees half a file. A file that fails to load is
//! reported as a miss (with a warning) and overwritten by the next store.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::PluginError;
use crate::ids::PluginDigest;

/// Bytes of the engine hash kept in file names.
const ENGINE_HASH_BYTES: usize = 16;

/// The on-disk cache of compiled components for one engine configuration.
#[derive(Debug)]
pub(crate) struct CodeCache {
    dir: PathBuf,
    engine_hex: String,
    /// Distinguishes temporary files of concurrent writers in this process.
    next_tmp: AtomicU64,
}

impl CodeCache {
    /// Opens (creating if needed) the cache in `dir` for `engine`.
    pub fn open(dir: PathBuf, engine: &Engine) -> Result<Self, PluginError> {
        fs::create_dir_all(&dir).map_err(|source| PluginError::Cache {
            path: dir.clone(),
            source,
        })?;
        Ok(Self {
            dir,
            engine_hex: engine_hex(engine),
            next_tmp: AtomicU64::new(0),
        })
    }

    /// Where the compiled code of `digest` lives.
    pub fn path_of(&self, digest: PluginDigest) -> PathBuf {
        self.dir
            .join(format!("{}-{}.cwasm", digest.to_hex(), self.engine_hex))
    }

    /// The cached component of `digest`, or `None` when there is none or it does not
    /// load (then a warning says why).
    pub fn load(&self, engine: &Engine, digest: PluginDigest) -> Option<Component> {
        let path = self.path_of(digest);
        if !path.exists() {
            return None;
        }
        match deserialize(engine, &path) {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(
                    path = %path.display(),
                    error = %format!("{error:#}"),
                    "compiled plugin in the cache does not load; recompiling"
                );
                None
            }
        }
    }

    /// Writes the compiled `component` of `digest`, replacing any earlier file.
    pub fn store(&self, digest: PluginDigest, component: &Component) -> Result<(), PluginError> {
        let path = self.path_of(digest);
        let bytes = component.serialize().map_err(|e| PluginError::Cache {
            path: path.clone(),
            source: std::io::Error::other(format!("{e:#}")),
        })?;
        let tmp = path.with_extension(format!(
            "tmp.{}.{}",
            std::process::id(),
            self.next_tmp.fetch_add(1, Ordering::Relaxed)
        ));
        write_durably(&tmp, &bytes)
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(|source| {
                let _ = fs::remove_file(&tmp);
                PluginError::Cache { path, source }
            })
    }
}

/// Loads a compiled component from `path`.
#[expect(
    unsafe_code,
    reason = "wasmtime maps compiled code from disk without checking it is ours"
)]
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: `deserialize_file` trusts the file to be code wasmtime compiled. Files in
    // the cache directory are written only by `CodeCache::store`, from a component this
    // process compiled after validating the plugin, atomically (tmp, fsync, rename). The
    // name carries the plugin digest and the engine compatibility hash, and wasmtime
    // additionally checks its own version and configuration header before use.
    unsafe { Component::deserialize_file(engine, path) }
}

fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// The engine's compatibility hash as lower-case hex, stable across processes.
fn engine_hex(engine: &Engine) -> String {
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let digest = hasher.0.finalize();
    hex::encode(digest.get(..ENGINE_HASH_BYTES).unwrap_or(&digest))
}

/// Feeds `Hash` output into sha256, whose result (unlike `DefaultHasher`'s) is the same
/// in every process and every release.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
        u64::from_le_bytes(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::engine::deterministic_engine;

    #[test]
    fn engine_hash_is_stable_and_named() {
        let engine = deterministic_engine().expect("engine");
        let again = deterministic_engine().expect("engine");
        assert_eq!(engine_hex(&engine), engine_hex(&again));
        assert_eq!(engine_hex(&engine).len(), ENGINE_HASH_BYTES * 2);
        let dir = tempfile::tempdir().expect("tmp");
        let cache = CodeCache::open(dir.path().to_path_buf(), &engine).expect("open");
        let digest = PluginDigest::of(b"x");
        let name = cache.path_of(digest);
        let name = name.file_name().and_then(|n| n.to_str()).expect("name");
        assert!(name.starts_with(&digest.to_hex()));
        assert!(name.ends_with(".cwasm"));
    }

    #[test]
    fn a_corrupt_file_is_a_miss() {
        let engine = deterministic_engine().expect("engine");
        let dir = tempfile::tempdir().expect("tmp");
        let cache = CodeCache::open(dir.path().to_path_buf(), &engine).expect("open");
        let digest = PluginDigest::of(b"y");
        assert!(cache.load(&engine, digest).is_none());
        fs::write(cache.path_of(digest), b"not compiled code").expect("write");
        assert!(cache.load(&engine, digest).is_none());
        let component = Component::new(&engine, "(component)").expect("compile");
        cache.store(digest, &component).expect("store");
        assert!(cache.load(&engine, digest).is_some());
    }
}
