//! [`PluginRuntime`]: the node's plugin host. It validates uploads, makes plugins
//! runnable (compiling them, or loading their compiled code from the disk cache), and
//! implements the raft core's [`StateMachineHost`] by running each entry in a fresh,
//! fuel-metered, memory-capped instance.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::RwLock;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use super::PluginError;
use super::cache::CodeCache;
use super::engine::deterministic_engine;
use super::entry::{run_entry, run_query};
use super::prepared::{Prepared, linker, prepare};
use super::sandbox::Sandbox;
use super::slots::InstanceSlots;
use super::validate::{ValidatedPlugin, check};
use crate::ids::PluginDigest;
use crate::limits;
use crate::metrics::PluginMetrics;
use crate::raftstore::fsm::{
    CommandOutcome, EntryContext, FsmError, KvReader, KvView, QueryContext, StateMachineHost,
};

/// How [`PluginRuntime::load`] made a plugin runnable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadOutcome {
    /// It was loaded already; nothing was done.
    AlreadyLoaded,
    /// Its compiled code came from the disk cache: no compilation.
    CacheHit,
    /// It was validated and compiled, and the code written to the cache.
    Compiled,
}

/// Validates, compiles, caches and runs plugins. One per node; shared by the apply
/// workers and the read path (`Send + Sync`).
pub struct PluginRuntime {
    engine: Engine,
    linker: Linker<Sandbox>,
    cache: CodeCache,
    loaded: RwLock<HashMap<PluginDigest, Arc<Prepared>>>,
    slots: Arc<InstanceSlots>,
    metrics: PluginMetrics,
}

impl std::fmt::Debug for PluginRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRuntime")
            .field("cache", &self.cache)
            .field("loaded", &self.loaded.read().len())
            .finish_non_exhaustive()
    }
}

impl PluginRuntime {
    /// A runtime whose compiled code lives in `cache_dir` (created if missing).
    pub fn new(cache_dir: PathBuf) -> Result<Self, PluginError> {
        let engine = deterministic_engine()?;
        let linker = linker(&engine)?;
        let cache = CodeCache::open(cache_dir, &engine)?;
        Ok(Self {
            engine,
            linker,
            cache,
            loaded: RwLock::new(HashMap::new()),
            slots: InstanceSlots::new(limits::PLUGIN_INSTANCES_MAX),
            metrics: PluginMetrics::default(),
        })
    }

    /// Counts fuel and time in Wasm into `metrics` (the node's registry) instead of
    /// handles registered nowhere.
    pub fn with_metrics(mut self, metrics: PluginMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Runs every deploy check on `bytes`. A plugin that passes has been compiled on the
    /// way; its code goes to the cache, so the [`load`](Self::load) that follows a
    /// deploy does not compile again.
    pub fn validate(&self, bytes: &[u8]) -> Result<ValidatedPlugin, PluginError> {
        let checked = check(&self.engine, &self.linker, bytes)?;
        self.remember(checked.plugin.digest, &checked.compiled);
        Ok(checked.plugin)
    }

    /// [`Self::validate`], and the rules of a new deployment on top: a plugin of the
    /// `stateful-fsm` world is refused until nodes can run one
    /// ([`PluginError::StatefulNotSupported`]). Plugins deployed before keep loading.
    pub fn validate_deploy(&self, bytes: &[u8]) -> Result<ValidatedPlugin, PluginError> {
        let plugin = self.validate(bytes)?;
        if plugin.stateful {
            return Err(PluginError::StatefulNotSupported);
        }
        Ok(plugin)
    }

    /// Makes `digest` runnable. `original_bytes` are the plugin as uploaded (they must
    /// hash to `digest`); they are only validated and compiled when the cache has no
    /// code for them. Idempotent.
    pub fn load(
        &self,
        digest: PluginDigest,
        original_bytes: &[u8],
    ) -> Result<LoadOutcome, PluginError> {
        let actual = PluginDigest::of(original_bytes);
        if actual != digest {
            return Err(PluginError::DigestMismatch {
                expected: digest,
                actual,
            });
        }
        if self.is_loaded(digest) {
            return Ok(LoadOutcome::AlreadyLoaded);
        }
        let (prepared, outcome) = match self.load_cached(digest) {
            Some(prepared) => (prepared, LoadOutcome::CacheHit),
            None => {
                let checked = check(&self.engine, &self.linker, original_bytes)?;
                self.remember(digest, &checked.compiled);
                (checked.prepared, LoadOutcome::Compiled)
            }
        };
        self.loaded
            .write()
            .entry(digest)
            .or_insert_with(|| Arc::new(prepared));
        Ok(outcome)
    }

    /// Whether `digest` is runnable on this node.
    pub fn is_loaded(&self, digest: PluginDigest) -> bool {
        self.loaded.read().contains_key(&digest)
    }

    /// Whether a loaded plugin implements `stateful-fsm`; `None` when not loaded.
    pub fn is_stateful(&self, digest: PluginDigest) -> Option<bool> {
        self.loaded.read().get(&digest).map(|p| p.stateful)
    }

    fn load_cached(&self, digest: PluginDigest) -> Option<Prepared> {
        let component = self.cache.load(&self.engine, digest)?;
        match prepare(&self.linker, &component) {
            Ok(prepared) => Some(prepared),
            Err(error) => {
                tracing::warn!(%digest, %error, "cached plugin does not link; recompiling");
                None
            }
        }
    }

    /// Writes compiled code to the cache. The cache only saves time, so a failure is a
    /// warning: the plugin still runs, and the next start compiles it again.
    fn remember(&self, digest: PluginDigest, compiled: &Component) {
        if let Err(error) = self.cache.store(digest, compiled) {
            tracing::warn!(%digest, %error, "could not cache compiled plugin");
        }
    }

    fn prepared(&self, digest: PluginDigest) -> Option<Arc<Prepared>> {
        self.loaded.read().get(&digest).cloned()
    }
}

impl StateMachineHost for PluginRuntime {
    fn apply_entry(
        &self,
        plugin: PluginDigest,
        ctx: EntryContext,
        commands: &[&[u8]],
        kv: KvView,
    ) -> (KvView, Vec<CommandOutcome>) {
        match self.prepared(plugin) {
            Some(prepared) => {
                let started = std::time::Instant::now();
                let (kv, outcomes, fuel) =
                    run_entry(&prepared, &self.slots, &self.metrics, &ctx, commands, kv);
                self.metrics.record_apply(fuel, started.elapsed());
                (kv, outcomes)
            }
            None => {
                let missing = commands
                    .iter()
                    .map(|_| Err(FsmError::MissingPlugin(plugin)))
                    .collect();
                (kv, missing)
            }
        }
    }

    fn query(
        &self,
        plugin: PluginDigest,
        ctx: QueryContext,
        request: &[u8],
        kv: KvView,
    ) -> CommandOutcome {
        let prepared = self
            .prepared(plugin)
            .ok_or(FsmError::MissingPlugin(plugin))?;
        let started = std::time::Instant::now();
        let (answer, fuel) = run_query(&prepared, &self.slots, &self.metrics, &ctx, request, kv);
        self.metrics.record_query(fuel, started.elapsed());
        answer
    }

    fn query_batch(
        &self,
        plugin: PluginDigest,
        ctx: QueryContext,
        requests: &[&[u8]],
        reader: Arc<dyn KvReader>,
    ) -> Vec<CommandOutcome> {
        let Some(prepared) = self.prepared(plugin) else {
            return requests
                .iter()
                .map(|_| Err(FsmError::MissingPlugin(plugin)))
                .collect();
        };
        // One fresh instance per read (see `entry`): reads served together still
        // share the snapshot, never guest state.
        requests
            .iter()
            .map(|request| {
                let started = std::time::Instant::now();
                let kv = KvView::for_query(reader.clone(), ctx.group);
                let (answer, fuel) =
                    run_query(&prepared, &self.slots, &self.metrics, &ctx, request, kv);
                self.metrics.record_query(fuel, started.elapsed());
                answer
            })
            .collect()
    }
}
