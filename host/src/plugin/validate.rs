//! Deploy-time validation: from uploaded bytes to a component that implements the
//! `flotilla:fsm` world and imports nothing else.
//!
//! The steps, each with its own error so the person deploying knows what to fix:
//! 1. size ([`PluginError::TooLarge`]) and well-formed Wasm ([`PluginError::NotWasm`]);
//! 2. a core module: every import must come from the world's interfaces (every offender
//!    is named, [`PluginError::ForbiddenImports`]); then `wit-component` encodes it into
//!    a component ([`PluginError::NotFsmWorld`] if it does not fit the world);
//! 3. fit the sandbox's fixed slots (`fit`), then compile with the node's
//!    deterministic engine ([`PluginError::Compile`]);
//! 4. a component's imports are checked the same way, by name;
//! 5. link and check the exports against the world ([`super::prepared::prepare`]).

use wasmparser::{Parser, Payload, Validator};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};
use wit_component::ComponentEncoder;

use super::PluginError;
use super::prepared::{Prepared, prepare};
use super::sandbox::Sandbox;
use super::world;
use crate::ids::PluginDigest;
use crate::limits;

/// The first bytes of every WebAssembly module and component.
const WASM_MAGIC: &[u8] = b"\0asm";

/// A plugin that passed validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatedPlugin {
    /// The sha256 of the bytes as uploaded (a core module's digest, not its component's).
    pub digest: PluginDigest,
    /// The plugin as a component: the upload itself, or the upload encoded.
    pub component: Vec<u8>,
    /// Whether it implements `stateful-fsm` (exports snapshot and restore).
    pub stateful: bool,
    /// Bytes uploaded.
    pub size_bytes: usize,
}

/// A validated plugin with its compiled code and linked form.
pub(crate) struct Checked {
    pub plugin: ValidatedPlugin,
    pub compiled: Component,
    pub prepared: Prepared,
}

/// Runs every deploy check on `bytes`.
pub(crate) fn check(
    engine: &Engine,
    linker: &Linker<Sandbox>,
    bytes: &[u8],
) -> Result<Checked, PluginError> {
    if bytes.len() > limits::PLUGIN_SIZE_BYTES_MAX {
        return Err(PluginError::TooLarge {
            size_bytes: bytes.len(),
            limit_bytes: limits::PLUGIN_SIZE_BYTES_MAX,
        });
    }
    check_wasm(bytes)?;
    super::fit::check_fits(bytes)?;
    let component = if Parser::is_component(bytes) {
        bytes.to_vec()
    } else {
        encode_module(bytes)?
    };
    let compiled = Component::new(engine, &component).map_err(|e| super::fit::compile_error(&e))?;
    check_component_imports(engine, &compiled)?;
    let prepared = prepare(linker, &compiled)?;
    Ok(Checked {
        plugin: ValidatedPlugin {
            digest: PluginDigest::of(bytes),
            component,
            stateful: prepared.stateful,
            size_bytes: bytes.len(),
        },
        compiled,
        prepared,
    })
}

/// Refuses bytes that are not well-formed WebAssembly, saying what is wrong.
fn check_wasm(bytes: &[u8]) -> Result<(), PluginError> {
    if !bytes.starts_with(WASM_MAGIC) {
        let head: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
        return Err(PluginError::NotWasm(format!(
            "it does not start with the WebAssembly magic bytes 00 61 73 6d but with [{}]",
            head.join(" ")
        )));
    }
    Validator::new()
        .validate_all(bytes)
        .map(drop)
        .map_err(|e| PluginError::NotWasm(e.to_string()))
}

/// Checks a core module's imports and encodes it into a component.
fn encode_module(bytes: &[u8]) -> Result<Vec<u8>, PluginError> {
    let shape = ModuleShape::read(bytes)?;
    if !shape.forbidden_imports.is_empty() {
        return Err(PluginError::ForbiddenImports(shape.forbidden_imports));
    }
    let mut module = bytes.to_vec();
    if !shape.has_world_metadata {
        world::embed_world(&mut module, world::DEFAULT_WORLD)?;
    }
    let not_fsm = |e: anyhow::Error| PluginError::NotFsmWorld(format!("{e:#}"));
    ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .map_err(not_fsm)?
        .encode()
        .map_err(not_fsm)
}

/// What validation needs to know about a core module.
struct ModuleShape {
    /// `module::name` of every import outside the world.
    forbidden_imports: Vec<String>,
    /// Whether it carries `component-type` custom sections (wit-bindgen adds them).
    has_world_metadata: bool,
}

impl ModuleShape {
    fn read(bytes: &[u8]) -> Result<Self, PluginError> {
        let not_wasm = |e: wasmparser::BinaryReaderError| PluginError::NotWasm(e.to_string());
        let mut shape = Self {
            forbidden_imports: Vec::new(),
            has_world_metadata: false,
        };
        for payload in Parser::new(0).parse_all(bytes) {
            match payload.map_err(not_wasm)? {
                Payload::ImportSection(imports) => {
                    for import in imports.into_imports() {
                        let import = import.map_err(not_wasm)?;
                        if !world::core_module_allowed(import.module) {
                            shape
                                .forbidden_imports
                                .push(format!("{}::{}", import.module, import.name));
                        }
                    }
                }
                Payload::CustomSection(section) if section.name().starts_with("component-type") => {
                    shape.has_world_metadata = true;
                }
                _ => {}
            }
        }
        Ok(shape)
    }
}

/// Refuses a component importing anything but the world's interfaces, naming each.
fn check_component_imports(engine: &Engine, component: &Component) -> Result<(), PluginError> {
    let ty = component.component_type();
    let forbidden: Vec<String> = ty
        .imports(engine)
        .map(|(name, _)| name)
        .filter(|name| !world::component_import_allowed(name))
        .map(str::to_owned)
        .collect();
    if forbidden.is_empty() {
        Ok(())
    } else {
        Err(PluginError::ForbiddenImports(forbidden))
    }
}
