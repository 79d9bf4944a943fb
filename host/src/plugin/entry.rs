//! How one entry's commands (and each query) run: the policy of instance reuse, the
//! entry's shared budget, and containment of host panics.
//!
//! An entry's commands run in order in one fresh instance, so the outcome of a command
//! depends only on the plugin, the committed state and the entry, never on what ran
//! before on this replica. A command that succeeds keeps its writes
//! ([`KvView::commit_command`]); one that fails loses them ([`KvView::discard_command`]).
//! When a command traps, its instance is dropped and the next command of the entry starts
//! a fresh one.
//!
//! The commands of an entry share [`limits::ENTRY_FUEL_MAX`]: once they have used it,
//! the rest do not run ([`FsmError::NotRun`], retryable), so one entry holds the apply
//! thread for a bounded time however many commands the leader packed into it.
//!
//! A panic in host code during a call (a bug the bounds checks missed) is caught here:
//! the command is rejected ([`FsmError::HostPanic`]) exactly as on every other replica,
//! its instance dropped, the node keeps running, and the panic is logged and counted.
//!
//! Every query runs in its own fresh instance: no guest static carries from one read to
//! the next, so a read's answer never depends on which other reads were served with it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use super::instance::{CallError, Instance, NotStarted};
use super::prepared::Prepared;
use super::sandbox::{LogContext, Sandbox};
use super::slots::InstanceSlots;
use crate::limits;
use crate::metrics::PluginMetrics;
use crate::raftstore::fsm::{CommandOutcome, EntryContext, FsmError, KvView, QueryContext};

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
    metrics: &PluginMetrics,
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
        let used = fuel + live_fuel(&session);
        if used >= limits::ENTRY_FUEL_MAX {
            outcomes.push(Err(entry_budget_spent(used)));
            continue;
        }
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
        let result = catch_unwind(AssertUnwindSafe(|| instance.apply(ctx, command)));
        session = match result {
            Ok(Ok(output)) => {
                outcomes.push(instance.kv_mut().commit_command().map(|()| output));
                Session::Live(instance)
            }
            Ok(Err(CallError::Refused(error))) => {
                instance.kv_mut().discard_command();
                outcomes.push(Err(error));
                Session::Live(instance)
            }
            Ok(Err(CallError::Poisoned(error))) => {
                fuel += instance.fuel_used();
                let mut kv = instance.into_kv();
                kv.discard_command();
                outcomes.push(Err(error));
                Session::Idle(kv)
            }
            Err(panic) => {
                let error = host_panic(metrics, &log, "apply", &*panic);
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

fn live_fuel(session: &Session) -> u64 {
    match session {
        Session::Live(instance) => instance.fuel_used(),
        Session::Idle(_) => 0,
    }
}

fn entry_budget_spent(used: u64) -> FsmError {
    FsmError::NotRun(format!(
        "the commands before it in its raft entry used {used} of the entry's {} fuel",
        limits::ENTRY_FUEL_MAX
    ))
}

/// Answers one read in a fresh instance over a read-only `kv`; returns the answer and
/// the fuel the instance consumed.
pub(crate) fn run_query(
    prepared: &Prepared,
    slots: &Arc<InstanceSlots>,
    metrics: &PluginMetrics,
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
    let answer = match catch_unwind(AssertUnwindSafe(|| instance.query(ctx, request))) {
        Ok(answer) => {
            answer.map_err(|(CallError::Refused(error) | CallError::Poisoned(error))| error)
        }
        Err(panic) => Err(host_panic(metrics, &log, "query", &*panic)),
    };
    (answer, instance.fuel_used())
}

/// Turns a caught panic into the call's outcome, loudly.
fn host_panic(
    metrics: &PluginMetrics,
    log: &LogContext,
    call: &str,
    panic: &(dyn std::any::Any + Send),
) -> FsmError {
    let why = crate::raftstore::panic_message(panic);
    metrics.host_panics.inc();
    tracing::error!(
        group = log.group.0,
        index = log.index,
        call,
        "host code panicked while running the plugin: {why}; the call is rejected \
         (on every replica, for an apply) and the node goes on"
    );
    FsmError::HostPanic(why.to_owned())
}
