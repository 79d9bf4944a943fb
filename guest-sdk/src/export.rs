//! The glue between a [`StateMachine`] and the component exports `apply` and `query`.
//!
//! [`crate::export!`] expands, in the plugin crate and only on `wasm32`, to a small type
//! implementing the generated `Guest` trait by calling [`apply`] and [`query`] below,
//! plus the generated export macro, which emits the core exports and the
//! `component-type` custom section. On other targets it only checks the trait bound, so
//! plugin crates also build (and unit-test) natively.
//!
//! Each call first installs, once per instance, a panic hook that reports the panic
//! through the host log at error level as `panic: <message> (at <file>:<line>:<col>)`.
//! With `panic = abort` (the default on `wasm32-unknown-unknown`) the panic then traps.

use std::sync::Once;

use crate::bindings::flotilla::fsm::types::{CommandError, EntryContext, QueryContext};
use crate::context::{self, ApplyContext};
use crate::machine::{StateMachine, dispatch_apply, dispatch_query};

pub use crate::bindings::Guest;
pub use crate::bindings::flotilla::fsm::types::{
    CommandError as WitCommandError, EntryContext as WitEntryContext,
    QueryContext as WitQueryContext,
};

/// The prefix of the error-level log line a guest panic produces.
pub const PANIC_PREFIX: &str = "panic: ";

/// The `apply` export: converts the WIT types and dispatches to `M`.
pub fn apply<M: StateMachine>(
    ctx: EntryContext,
    command: Vec<u8>,
) -> Result<Vec<u8>, CommandError> {
    install_panic_hook();
    let ctx = ApplyContext {
        group_id: ctx.group_id,
        index: ctx.index,
        term: ctx.term,
        timestamp_ms: ctx.timestamp_ms,
        random_seed: ctx.random_seed,
    };
    dispatch_apply::<M>(&ctx, &command).map_err(to_wit)
}

/// The `query` export: converts the WIT types and dispatches to `M`.
pub fn query<M: StateMachine>(
    ctx: QueryContext,
    request: Vec<u8>,
) -> Result<Vec<u8>, CommandError> {
    install_panic_hook();
    let ctx = context::QueryContext {
        group_id: ctx.group_id,
        applied_index: ctx.applied_index,
        applied_timestamp_ms: ctx.applied_timestamp_ms,
    };
    dispatch_query::<M>(&ctx, &request).map_err(to_wit)
}

/// Compiles only if `M` is a [`StateMachine`]; lets `export!` check its argument natively.
pub const fn assert_state_machine<M: StateMachine>() {}

fn to_wit(err: context::CommandError) -> CommandError {
    match err {
        context::CommandError::Invalid(m) => CommandError::Invalid(m),
        context::CommandError::Rejected(m) => CommandError::Rejected(m),
    }
}

fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| std::panic::set_hook(Box::new(report_panic)));
}

fn report_panic(info: &std::panic::PanicHookInfo<'_>) {
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(non-string panic payload)");
    let line = match info.location() {
        Some(at) => format!(
            "{PANIC_PREFIX}{message} (at {}:{}:{})",
            at.file(),
            at.line(),
            at.column()
        ),
        None => format!("{PANIC_PREFIX}{message}"),
    };
    crate::log::error(&line);
}

/// Exports a [`StateMachine`] as the plugin's `apply` and `query`.
///
/// Invoke it once, at the root of the plugin crate (`crate-type = ["cdylib", "rlib"]`):
///
/// ```ignore
/// struct Counter;
/// impl flotilla_sdk::StateMachine for Counter { /* ... */ }
/// flotilla_sdk::export!(Counter);
/// ```
#[macro_export]
macro_rules! export {
    ($machine:ty) => {
        const _: () = $crate::__private::assert_state_machine::<$machine>();

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct FlotillaGuest;

            impl $crate::__private::Guest for FlotillaGuest {
                fn apply(
                    ctx: $crate::__private::WitEntryContext,
                    command: ::std::vec::Vec<u8>,
                ) -> ::core::result::Result<::std::vec::Vec<u8>, $crate::__private::WitCommandError>
                {
                    $crate::__private::apply::<$machine>(ctx, command)
                }

                fn query(
                    ctx: $crate::__private::WitQueryContext,
                    request: ::std::vec::Vec<u8>,
                ) -> ::core::result::Result<::std::vec::Vec<u8>, $crate::__private::WitCommandError>
                {
                    $crate::__private::query::<$machine>(ctx, request)
                }
            }

    $crate::__export_fsm_impl!(FlotillaGuest with_types_in $crate::bindings);
        };
    };
}
