//! A compiled plugin made runnable: its imports linked to the host's `kv` and `log`, its
//! exports checked against the `fsm` world (and, when present, the snapshot exports
//! against `stateful-fsm`). A [`Prepared`] instantiates in microseconds.

use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use super::PluginError;
use super::bindings::FsmPre;
use super::bindings::stateful::StatefulFsmPre;
use super::sandbox::Sandbox;
use super::world::STATEFUL_EXPORTS;

/// A plugin ready to instantiate.
pub(crate) struct Prepared {
    pub fsm: FsmPre<Sandbox>,
    /// Whether it also implements `stateful-fsm` (exports snapshot and restore).
    pub stateful: bool,
}

/// The linker every plugin is instantiated with: the world's imports and nothing else.
pub(crate) fn linker(engine: &Engine) -> Result<Linker<Sandbox>, PluginError> {
    let mut linker = Linker::new(engine);
    super::host_imports::link(&mut linker)?;
    Ok(linker)
}

/// Links `component` and checks it implements the world.
pub(crate) fn prepare(
    linker: &Linker<Sandbox>,
    component: &Component,
) -> Result<Prepared, PluginError> {
    let not_fsm = |e: wasmtime::Error| PluginError::NotFsmWorld(format!("{e:#}"));
    let pre = linker.instantiate_pre(component).map_err(not_fsm)?;
    let fsm = FsmPre::new(pre.clone()).map_err(not_fsm)?;
    let present: Vec<&str> = STATEFUL_EXPORTS
        .into_iter()
        .filter(|name| component.get_export_index(None, name).is_some())
        .collect();
    let stateful = match present.as_slice() {
        [] => false,
        [_, _] => {
            StatefulFsmPre::new(pre).map_err(not_fsm)?;
            true
        }
        [one] => {
            return Err(PluginError::NotFsmWorld(format!(
                "it exports `{one}` but not the other snapshot function; the \
                 stateful-fsm world needs both `{}` and `{}`",
                STATEFUL_EXPORTS[0], STATEFUL_EXPORTS[1]
            )));
        }
        _ => unreachable!("two names give at most two exports"),
    };
    Ok(Prepared { fsm, stateful })
}
