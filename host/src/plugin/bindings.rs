//! Rust bindings for the `flotilla:fsm` WIT package (`guest-sdk/wit/fsm.wit`), generated
//! by wasmtime's `bindgen!`: [`Fsm`] / [`FsmPre`] for the stateless world and
//! [`stateful::StatefulFsmPre`] for the world with snapshot exports. Every import is
//! trappable, so a host import can abort the guest with an [`crate::raftstore::fsm::FsmError`].

wasmtime::component::bindgen!({
    path: "../guest-sdk/wit",
    world: "fsm",
    imports: { default: trappable },
});

/// The `stateful-fsm` world, sharing the interface types of the stateless one.
pub(crate) mod stateful {
    wasmtime::component::bindgen!({
        path: "../guest-sdk/wit",
        world: "stateful-fsm",
        imports: { default: trappable },
        with: {
            "flotilla:fsm/types": super::flotilla::fsm::types,
            "flotilla:fsm/kv": super::flotilla::fsm::kv,
            "flotilla:fsm/log": super::flotilla::fsm::log,
        },
    });
}
