//! How one entry's commands (and one query) run: the policy of instance reuse.
//!
//! An entry's commands run in order in one fresh instance, so the outcome of a command
//! depends only on the plugin, the committed state and the entry, never on what ran
//! before on this replica. A command that succeeds keeps its writes
//! ([`KvView::commit_command`]); one that fails loses them ([`KvView::discard_command`]).
//! When a command traps, its instance is dropped and the next command of the entry starts
//! a fresh one. A batch of reads of one group is served the same way: in order, in one
//! instance over one read-only view, a fresh one after a trap.

use std::sync::Arc;

use super::instance::{CallError, Instance, NotStarted};
use super::prepared::Prepared;
use super::sandbox::{LogContext, Sandbox};
use super::slots::InstanceSlots;
use crate::raftstore::fsm::{CommandOutcome, EntryContext, KvView, QueryContext};

/// Where an entry stands between two commands: no instance (at the start, or after a
/// trap), or a live one to reuse.
enum Session {
    Idle(KvView),
    Live(Instance),
}

/// Applies `commands` in order; returns the view, one outcome per command and the fuel
/// the entry's instances consumed.
pub(crate) fn run_entry(
    prepared: &Prepared,
    slots: &Arc<InstanceSlots>,
    ctx: &EntryContext,
    commands: &[&[u8]],
    kv: KvView,
) -> (KvView, Vec<CommandOutcome>, u64) {
    let log = LogContext {
        group: ctx.group,
        index: ctx.index,
    };
    let mut outcomes = Vec::with_capacity(commands.len());
    let mut fuel = 0u64;
    let mut session = Session::Idle(kv);
    for command in commands {
        let mut instance = match session {
            Session::Live(instance) => instance,
            Session::Idle(kv) => match Instance::start(prepared, slots, Sandbox::new(kv, log)) {
                Ok(instance) => instance,
                Err(not_started) => {
                    let NotStarted { mut kv, error } = *not_started;
                    kv.discard_command();
                    outcomes.push(Err(error));
                    session = Session::Idle(kv);
                    continue;
                }
            },
        };
        session = match instance.apply(ctx, command) {
            Ok(output) => {
                instance.kv_mut().commit_command();
                outcomes.push(Ok(output));
                Session::Live(instance)
            }
            Err(CallError::Refused(error)) => {
                instance.kv_mut().discard_command();
                outcomes.push(Err(error));
                Session::Live(instance)
            }
            Err(CallError::Poisoned(error)) => {
                fuel += instance.fuel_used();
                let mut kv = instance.into_kv();
                kv.discard_command();
                outcomes.push(Err(error));
                Session::Idle(kv)
            }
        };
    }
    let kv = match session {
        Session::Idle(kv) => kv,
        Session::Live(instance) => {
            fuel += instance.fuel_used();
            instance.into_kv()
        }
    };
    (kv, outcomes, fuel)
}

/// Answers one read in a fresh instance over a read-only `kv`; returns the answer and
/// the fuel the instance consumed.
pub(crate) fn run_query(
    prepared: &Prepared,
    slots: &Arc<InstanceSlots>,
    ctx: &QueryContext,
    request: &[u8],
    kv: KvView,
) -> (CommandOutcome, u64) {
    let log = LogContext {
        group: ctx.group,
        index: ctx.applied_index,
    };
    let mut instance = match Instance::start(prepared, slots, Sandbox::new(kv, log)) {
        Ok(instance) => instance,
        Err(failed) => return (Err(failed.error), 0),
    };
    let answer = instance
        .query(ctx, request)
        .map_err(|(CallError::Refused(error) | CallError::Poisoned(error))| error);
    (answer, instance.fuel_used())
}

/// Answers `requests` in order in one instance over the read-only `kv` (a fresh one
/// after a trap); returns one answer per request and the fuel the instances consumed.
pub(crate) fn run_queries(
    prepared: &Prepared,
    slots: &Arc<InstanceSlots>,
    ctx: &QueryContext,
    requests: &[&[u8]],
    kv: KvView,
) -> (Vec<CommandOutcome>, u64) {
    let log = LogContext {
        group: ctx.group,
        index: ctx.applied_index,
    };
    let mut answers = Vec::with_capacity(requests.len());
    let mut fuel = 0u64;
    let mut session = Session::Idle(kv);
    for request in requests {
        let mut instance = match session {
            Session::Live(instance) => instance,
            Session::Idle(kv) => match Instance::start(prepared, slots, Sandbox::new(kv, log)) {
                Ok(instance) => instance,
                Err(not_started) => {
                    let NotStarted { kv, error } = *not_started;
                    answers.push(Err(error));
                    session = Session::Idle(kv);
                    continue;
                }
            },
        };
        session = match instance.query(ctx, request) {
            Ok(output) => {
                answers.push(Ok(output));
                Session::Live(instance)
            }
            Err(CallError::Refused(error)) => {
                answers.push(Err(error));
                Session::Live(instance)
            }
            Err(CallError::Poisoned(error)) => {
                fuel += instance.fuel_used();
                answers.push(Err(error));
                Session::Idle(instance.into_kv())
            }
        };
    }
    if let Session::Live(instance) = session {
        fuel += instance.fuel_used();
    }
    (answers, fuel)
}
