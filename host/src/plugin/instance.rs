//! [`Instance`]: one live plugin instance in its own store, holding the group's
//! [`KvView`] and one slot of the pool.
//!
//! Every call starts with a full fuel budget. A call that traps (or runs out of fuel, or
//! hits the memory limit) leaves the instance in an unknown state: the caller must drop
//! it ([`CallError::Poisoned`]). A call that returns the guest's own error, or an output
//! over the limit, leaves it usable ([`CallError::Refused`]).

use std::sync::Arc;

use wasmtime::Store;

use super::bindings::Fsm;
use super::bindings::flotilla::fsm::types;
use super::prepared::Prepared;
use super::sandbox::{Sandbox, classify};
use super::slots::{InstanceSlots, SlotPermit};
use crate::limits;
use crate::raftstore::fsm::{EntryContext, FsmError, KvView, QueryContext};

/// Why a call produced no output.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The guest answered with an error, or with too much: the instance is still sound.
    Refused(FsmError),
    /// The guest trapped: drop the instance.
    Poisoned(FsmError),
}

/// An instance that could not start: the view goes back with the reason.
#[derive(Debug)]
pub(crate) struct NotStarted {
    pub kv: KvView,
    pub error: FsmError,
}

/// A live instance. Field order matters: the store is dropped before the permit, so the
/// pool slot is free again when the permit is.
pub(crate) struct Instance {
    store: Store<Sandbox>,
    fsm: Fsm,
    /// Fuel consumed so far: instantiation and every call.
    fuel_used: u64,
    _permit: SlotPermit,
}

impl Instance {
    /// Instantiates `prepared` over `sandbox`, waiting for a pool slot.
    pub fn start(
        prepared: &Prepared,
        slots: &Arc<InstanceSlots>,
        sandbox: Sandbox,
    ) -> Result<Self, Box<NotStarted>> {
        let permit = slots.acquire();
        let mut store = Store::new(prepared.fsm.engine(), sandbox);
        store.limiter(|sandbox| &mut sandbox.memory);
        refuel(&mut store);
        match prepared.fsm.instantiate(&mut store) {
            Ok(fsm) => {
                let fuel_used = fuel_consumed(&store);
                Ok(Self {
                    store,
                    fsm,
                    fuel_used,
                    _permit: permit,
                })
            }
            Err(error) => {
                // A trap while instantiating (a start function, a data segment out of
                // bounds) is the plugin's doing and deterministic; anything else is the
                // node failing to provide an instance.
                let deterministic = error.downcast_ref::<wasmtime::Trap>().is_some()
                    || error.downcast_ref::<FsmError>().is_some()
                    || store.data().memory.refused;
                let error = if deterministic {
                    classify(&error, store.data())
                } else {
                    FsmError::HostFault(format!("{:#}", error))
                };
                let kv = store.into_data().kv;
                Err(Box::new(NotStarted { kv, error }))
            }
        }
    }

    /// Runs `apply` for one command.
    pub fn apply(&mut self, ctx: &EntryContext, command: &[u8]) -> Result<Vec<u8>, CallError> {
        let ctx = types::EntryContext {
            group_id: ctx.group.0,
            index: ctx.index,
            term: ctx.term,
            timestamp_ms: ctx.timestamp_ms,
            random_seed: ctx.random_seed,
        };
        self.begin_call();
        let result = self.fsm.call_apply(&mut self.store, ctx, command);
        self.fuel_used += fuel_consumed(&self.store);
        self.end_call(result)
    }

    /// Runs `query` for one request.
    pub fn query(&mut self, ctx: &QueryContext, request: &[u8]) -> Result<Vec<u8>, CallError> {
        let ctx = types::QueryContext {
            group_id: ctx.group.0,
            applied_index: ctx.applied_index,
            applied_timestamp_ms: ctx.applied_timestamp_ms,
        };
        self.begin_call();
        let result = self.fsm.call_query(&mut self.store, ctx, request);
        self.fuel_used += fuel_consumed(&self.store);
        self.end_call(result)
    }

    /// The view, with the writes of the command being run.
    pub fn kv_mut(&mut self) -> &mut KvView {
        &mut self.store.data_mut().kv
    }

    /// Fuel this instance consumed so far (instantiation and calls).
    pub fn fuel_used(&self) -> u64 {
        self.fuel_used
    }

    /// Ends the instance and gives the view back.
    pub fn into_kv(self) -> KvView {
        self.store.into_data().kv
    }

    fn begin_call(&mut self) {
        self.store.data_mut().begin_call();
        refuel(&mut self.store);
    }

    fn end_call(
        &self,
        result: wasmtime::Result<Result<Vec<u8>, types::CommandError>>,
    ) -> Result<Vec<u8>, CallError> {
        let answer = match result {
            Ok(answer) => answer,
            Err(error) => {
                tracing::debug!(error = %format!("{error:?}"), "plugin call trapped");
                return Err(CallError::Poisoned(classify(&error, self.store.data())));
            }
        };
        let size_bytes = match &answer {
            Ok(output) => output.len(),
            Err(types::CommandError::Invalid(message) | types::CommandError::Rejected(message)) => {
                message.len()
            }
        };
        if size_bytes > limits::OUTPUT_SIZE_BYTES_MAX {
            return Err(CallError::Refused(FsmError::OutputTooLarge {
                size_bytes,
                limit_bytes: limits::OUTPUT_SIZE_BYTES_MAX,
            }));
        }
        answer.map_err(|error| {
            CallError::Refused(match error {
                types::CommandError::Invalid(message) => FsmError::Invalid(message),
                types::CommandError::Rejected(message) => FsmError::Rejected(message),
            })
        })
    }
}

/// Fuel used since the last [`refuel`]: the budget minus what is left (all of it when
/// the call ran out).
fn fuel_consumed(store: &Store<Sandbox>) -> u64 {
    let left = store.get_fuel().unwrap_or(limits::PLUGIN_FUEL_PER_CALL);
    limits::PLUGIN_FUEL_PER_CALL.saturating_sub(left)
}

/// Gives the store a full budget for the next call.
fn refuel(store: &mut Store<Sandbox>) {
    store
        .set_fuel(limits::PLUGIN_FUEL_PER_CALL)
        .expect("the engine is configured with consume_fuel");
}
