//! What the `flotilla:fsm` world lets a plugin import, and the world itself for modules
//! that arrive without WIT metadata.
//!
//! The allow-list is the security boundary of deploy: anything a plugin imports that is
//! not one of these interfaces (WASI, a clock, randomness, another host's API) could make
//! replicas differ, so validation refuses it by name.

use wit_component::StringEncoding;
use wit_parser::Resolve;

use super::PluginError;

/// The WIT text of the contract, the same file `bindgen!` reads.
const FSM_WIT: &str = include_str!("../../../guest-sdk/wit/fsm.wit");

/// Interfaces a plugin component may import: the world's `kv` and `log`, and `types`,
/// which a component imports implicitly because the world `use`s its records.
pub(crate) const ALLOWED_INTERFACES: [&str; 3] = [
    "flotilla:fsm/kv@0.1.0",
    "flotilla:fsm/log@0.1.0",
    "flotilla:fsm/types@0.1.0",
];

/// Export names that mark the optional `stateful-fsm` world.
pub(crate) const STATEFUL_EXPORTS: [&str; 2] = ["snapshot-chunk", "restore-chunk"];

/// Prefix of the name-mangling scheme newer `wit-bindgen`s use for core module imports.
const STANDARD_MANGLING_PREFIX: &str = "cm32p2";

/// Whether a core module may import from `module`. Names under `flotilla:fsm/` pass here
/// and are checked exactly against the world by `wit-component` when it encodes the
/// component; `$root` and `[export]...` are wit-bindgen's own bookkeeping modules.
pub(crate) fn core_module_allowed(module: &str) -> bool {
    let name = module
        .strip_prefix(STANDARD_MANGLING_PREFIX)
        .map_or(module, |rest| rest.trim_start_matches('|'));
    name.is_empty()
        || name == "$root"
        || name.starts_with("[export]")
        || name.starts_with("flotilla:fsm/")
}

/// Whether a component may import `name`.
pub(crate) fn component_import_allowed(name: &str) -> bool {
    ALLOWED_INTERFACES.contains(&name)
}

/// The world a core module without WIT metadata is encoded against.
pub(crate) const DEFAULT_WORLD: &str = "fsm";

/// Appends `world` (of `fsm.wit`) as `component-type` metadata to a core module, so a
/// module built without `wit-bindgen` (hand-written, or another toolchain) can still be
/// encoded into a component against the world.
pub(crate) fn embed_world(module: &mut Vec<u8>, world: &str) -> Result<(), PluginError> {
    let engine_bug = |e: anyhow::Error| PluginError::Engine(format!("fsm.wit: {e:#}"));
    let mut resolve = Resolve::new();
    let package = resolve.push_str("fsm.wit", FSM_WIT).map_err(engine_bug)?;
    let world_id = resolve
        .select_world(&[package], Some(world))
        .map_err(engine_bug)?;
    wit_component::embed_component_metadata(module, &resolve, world_id, StringEncoding::UTF8)
        .map_err(engine_bug)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_worlds_interfaces_are_allowed() {
        assert!(core_module_allowed("flotilla:fsm/kv@0.1.0"));
        assert!(core_module_allowed("cm32p2|flotilla:fsm/log@0.1"));
        assert!(core_module_allowed("$root"));
        assert!(core_module_allowed("[export]$root"));
        assert!(!core_module_allowed("wasi_snapshot_preview1"));
        assert!(!core_module_allowed("env"));
        assert!(!core_module_allowed("__wbindgen_placeholder__"));
        assert!(component_import_allowed("flotilla:fsm/kv@0.1.0"));
        assert!(!component_import_allowed("wasi:clocks/wall-clock@0.2.0"));
    }

    #[test]
    fn the_world_embeds() {
        let mut module = b"\0asm\x01\0\0\0".to_vec();
        embed_world(&mut module, DEFAULT_WORLD).expect("embed");
        assert!(module.len() > 8);
    }
}
