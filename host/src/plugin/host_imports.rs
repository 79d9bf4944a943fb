//! The functions a plugin imports: `flotilla:fsm/kv` over the store's [`KvView`] and
//! `flotilla:fsm/log` into `tracing`, linked by hand (not through the generated
//! `add_to_linker`) because each one needs the store itself: it pays for its work from
//! the call's fuel ([`super::meter`]) before doing it.
//!
//! A KV error (a rule or limit broken, or a storage read that failed) aborts the guest:
//! the import returns the [`crate::raftstore::fsm::FsmError`] as a wasmtime error, the
//! call traps, and [`super::sandbox::classify`] finds the same error again. Every bound
//! is checked by the view before anything reaches the store, so no argument can make
//! host code panic.
//!
//! [`KvView`]: crate::raftstore::fsm::KvView

use wasmtime::StoreContextMut;
use wasmtime::component::Linker;

use super::PluginError;
use super::bindings::flotilla::fsm::{log, types};
use super::meter::{self, FUEL_PER_CALL, FUEL_PER_SCAN_PAIR, FUEL_PER_STORE_READ, charge};
use super::sandbox::Sandbox;
use crate::limits;
use crate::raftstore::fsm::ScanLimit;

/// The prefix the guest SDK's panic hook puts before a panic message.
const PANIC_PREFIX: &str = "panic: ";
/// The instance names of the world's imports (`package:namespace/interface@version`).
const KV_INTERFACE: &str = "flotilla:fsm/kv@0.1.0";
const LOG_INTERFACE: &str = "flotilla:fsm/log@0.1.0";

pub(crate) type Store<'a> = StoreContextMut<'a, Sandbox>;

/// Adds the world's imports to `linker`, and nothing else.
pub(crate) fn link(linker: &mut Linker<Sandbox>) -> Result<(), PluginError> {
    let engine = |e: wasmtime::Error| PluginError::Engine(format!("linking the fsm world: {e:#}"));
    let mut kv = linker.instance(KV_INTERFACE).map_err(engine)?;
    kv.func_wrap("get", |store, (key,): (Vec<u8>,)| {
        get(store, key).map(|v| (v,))
    })
    .map_err(engine)?;
    kv.func_wrap("put", |store, (key, value): (Vec<u8>, Vec<u8>)| {
        put(store, key, value)
    })
    .map_err(engine)?;
    kv.func_wrap("delete", |store, (key,): (Vec<u8>,)| delete(store, key))
        .map_err(engine)?;
    kv.func_wrap(
        "scan",
        |store, (start, end, limit): (Vec<u8>, Option<Vec<u8>>, u32)| {
            scan(store, start, end, limit).map(|pairs| (pairs,))
        },
    )
    .map_err(engine)?;
    let mut log = linker.instance(LOG_INTERFACE).map_err(engine)?;
    log.func_wrap("log", |store, (level, message): (log::Level, String)| {
        write_log(store, level, message)
    })
    .map_err(engine)?;
    Ok(())
}

pub(crate) fn get(mut store: Store<'_>, key: Vec<u8>) -> wasmtime::Result<Option<Vec<u8>>> {
    charge(
        &mut store,
        FUEL_PER_CALL + FUEL_PER_STORE_READ + meter::key_lookup(key.len()),
    )?;
    let value = store.data().kv.get(&key)?;
    if let Some(v) = &value {
        charge(&mut store, meter::bytes_out(v.len()))?;
    }
    Ok(value)
}

/// A write pays for a store read as well: the quota's lookup of what the key held,
/// when the command's writes are kept.
pub(crate) fn put(mut store: Store<'_>, key: Vec<u8>, value: Vec<u8>) -> wasmtime::Result<()> {
    charge(
        &mut store,
        FUEL_PER_CALL
            + FUEL_PER_STORE_READ
            + meter::key_lookup(key.len())
            + meter::bytes_in(value.len()),
    )?;
    Ok(store.data_mut().kv.put(&key, &value)?)
}

pub(crate) fn delete(mut store: Store<'_>, key: Vec<u8>) -> wasmtime::Result<()> {
    charge(
        &mut store,
        FUEL_PER_CALL + FUEL_PER_STORE_READ + meter::key_lookup(key.len()),
    )?;
    Ok(store.data_mut().kv.delete(&key)?)
}

/// One page of a scan: at most `limit` pairs (capped), at most
/// [`limits::KV_SCAN_BYTES_MAX`] bytes, and no more than the fuel left can pay for.
pub(crate) fn scan(
    mut store: Store<'_>,
    start: Vec<u8>,
    end: Option<Vec<u8>>,
    limit: u32,
) -> wasmtime::Result<Vec<types::KvPair>> {
    let end_len = end.as_ref().map_or(0, Vec::len);
    charge(
        &mut store,
        FUEL_PER_CALL + FUEL_PER_STORE_READ + meter::key_lookup(start.len() + end_len),
    )?;
    let left = meter::left(&store)?;
    if limit > 0 && left < FUEL_PER_SCAN_PAIR {
        // Not even one pair can be paid for: running out, not an empty range (which a
        // guest would take for the end of its scan).
        store.set_fuel(0)?;
        return Err(wasmtime::Trap::OutOfFuel.into());
    }
    let affordable = ScanLimit {
        pairs: usize::try_from(left / FUEL_PER_SCAN_PAIR).unwrap_or(usize::MAX),
        bytes: usize::try_from(meter::bytes_out_for(left)).unwrap_or(usize::MAX),
    };
    let limit = ScanLimit {
        pairs: (limit as usize).min(affordable.pairs),
        bytes: limits::KV_SCAN_BYTES_MAX.min(affordable.bytes),
    };
    let page = store.data().kv.scan(&start, end.as_deref(), limit)?;
    // Every item the merge read is paid for, returned or not (a range of buffered
    // deletes costs to walk as much as one of pairs).
    charge(
        &mut store,
        (page.visited as u64)
            .saturating_mul(FUEL_PER_SCAN_PAIR)
            .saturating_add(meter::bytes_out(page.bytes)),
    )?;
    Ok(page
        .pairs
        .into_iter()
        .map(|(key, value)| types::KvPair { key, value })
        .collect())
}

pub(crate) fn write_log(
    mut store: Store<'_>,
    level: log::Level,
    message: String,
) -> wasmtime::Result<()> {
    charge(&mut store, FUEL_PER_CALL + meter::bytes_in(message.len()))?;
    let sandbox = store.data_mut();
    let line = cut(&message, limits::GUEST_LOG_LINE_BYTES_MAX);
    if level == log::Level::Error
        && let Some(panic) = line.strip_prefix(PANIC_PREFIX)
    {
        sandbox.last_panic = Some(panic.to_owned());
    }
    sandbox.log_lines = sandbox.log_lines.saturating_add(1);
    let (group, index) = (sandbox.log.group.0, sandbox.log.index);
    if sandbox.log_lines > limits::GUEST_LOG_LINES_PER_CALL_MAX {
        if sandbox.log_lines == limits::GUEST_LOG_LINES_PER_CALL_MAX + 1 {
            tracing::warn!(
                target: "flotilla::guest",
                group,
                index,
                "more than {} log lines in one call; the rest of this call's are dropped",
                limits::GUEST_LOG_LINES_PER_CALL_MAX
            );
        }
        return Ok(());
    }
    match level {
        log::Level::Trace => {
            tracing::trace!(target: "flotilla::guest", group, index, "{line}");
        }
        log::Level::Debug => {
            tracing::debug!(target: "flotilla::guest", group, index, "{line}");
        }
        log::Level::Info => {
            tracing::info!(target: "flotilla::guest", group, index, "{line}");
        }
        log::Level::Warn => {
            tracing::warn!(target: "flotilla::guest", group, index, "{line}");
        }
        log::Level::Error => {
            tracing::error!(target: "flotilla::guest", group, index, "{line}");
        }
    }
    Ok(())
}

/// The longest prefix of `text` of at most `bytes_max` bytes that ends on a character
/// boundary.
fn cut(text: &str, bytes_max: usize) -> &str {
    let mut end = bytes_max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::cut;

    #[test]
    fn lines_are_cut_on_character_boundaries() {
        assert_eq!(cut("hello", 10), "hello");
        assert_eq!(cut("hello", 3), "hel");
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("", 0), "");
    }
}
