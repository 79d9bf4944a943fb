//! [`PluginError`]: why a plugin could not be accepted, compiled or made runnable.
//! Errors of a *call* into a plugin are [`crate::raftstore::fsm::FsmError`] instead.
//!
//! The first five variants describe the uploaded bytes and are meant for the person who
//! deployed them (the API maps them to `INVALID_ARGUMENT`); the rest are the node's own.

use std::io;
use std::path::PathBuf;

use crate::ids::PluginDigest;

/// Why a plugin was refused, or could not be prepared on this node.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The upload is bigger than deploy accepts.
    #[error(
        "the plugin is {size_bytes} bytes, over the limit of {limit_bytes} bytes; \
         build it in release mode and strip debug info"
    )]
    TooLarge {
        size_bytes: usize,
        limit_bytes: usize,
    },
    /// The bytes are not WebAssembly at all, or malformed WebAssembly.
    #[error(
        "the upload is not a valid WebAssembly module or component ({0}); \
         upload the .wasm file built for wasm32-unknown-unknown"
    )]
    NotWasm(String),
    /// The plugin imports something outside the `flotilla:fsm` world. Each entry names
    /// one import, `module::name` for a core module, the import name for a component.
    #[error(
        "the plugin imports {} item(s) from outside the flotilla:fsm world: {}. \
         Only flotilla:fsm/kv and flotilla:fsm/log may be imported (no WASI, clock or \
         randomness: time and seeds arrive with each entry); build for \
         wasm32-unknown-unknown with the flotilla SDK",
        .0.len(),
        .0.join(", ")
    )]
    ForbiddenImports(Vec<String>),
    /// The plugin is WebAssembly with acceptable imports, but does not export the world's
    /// functions with the world's types.
    #[error(
        "the plugin does not implement the flotilla:fsm/fsm world: {0}; \
         export `apply` and `query` with the flotilla SDK's export macro"
    )]
    NotFsmWorld(String),
    /// The plugin implements the `stateful-fsm` world, which nodes cannot run yet:
    /// refused at deploy rather than run as if it kept no state.
    #[error(
        "the plugin implements the stateful-fsm world (it exports snapshot-chunk and \
         restore-chunk): this node cannot run plugins that keep their state in linear \
         memory yet, and would run it as if it kept none. Build it for the fsm world, \
         keeping state in the host KV (flotilla_sdk::kv)"
    )]
    StatefulNotSupported,
    /// The plugin is valid WebAssembly but cannot be compiled for this node's sandbox
    /// (a disabled proposal such as threads, or more memories or instances than a
    /// plugin may have).
    #[error("the plugin cannot run in the flotilla sandbox: {0}")]
    Compile(String),
    /// [`super::PluginRuntime::load`] was given bytes that do not hash to the digest.
    #[error("the bytes given for plugin {expected} hash to {actual}")]
    DigestMismatch {
        expected: PluginDigest,
        actual: PluginDigest,
    },
    /// The wasmtime engine or linker could not be set up (a bug or an unsupported host).
    #[error("the plugin engine could not be set up: {0}")]
    Engine(String),
    /// Reading or writing the compiled-code cache failed.
    #[error("plugin code cache {}: {source}", path.display())]
    Cache {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl PluginError {
    /// Whether the error is about the uploaded bytes (the caller should fix the plugin)
    /// rather than about this node.
    pub fn is_invalid_input(&self) -> bool {
        match self {
            Self::TooLarge { .. }
            | Self::NotWasm(_)
            | Self::ForbiddenImports(_)
            | Self::NotFsmWorld(_)
            | Self::Compile(_)
            | Self::StatefulNotSupported
            | Self::DigestMismatch { .. } => true,
            Self::Engine(_) | Self::Cache { .. } => false,
        }
    }
}
