//! Host work priced in fuel. A plugin's call has one budget
//! ([`limits::PLUGIN_FUEL_PER_CALL`]) for its own instructions and for the work it makes
//! the host do: every host import takes its price from the store's fuel before (and,
//! for what it returns, after) doing the work, and traps with `OutOfFuel` when the
//! budget cannot pay. So a command that calls `kv.put` a million times runs out of fuel
//! as surely as one that loops a million times, and both take about as long.
//!
//! Prices are in fuel units, roughly one guest Wasm instruction each. They depend only
//! on the call and the bytes it moves (never on timing or on this replica's caches), so
//! every replica charges the same and reaches the same outcome. They were set so that a
//! unit of fuel spent in host calls costs about the wall time of a unit spent in guest
//! code (`cargo test --release -p flotilla --lib plugin::tests::t90 -- --ignored
//! --nocapture`, `host_work_against_guest_work`; figures in `bench/results/`).

use wasmtime::StoreContextMut;
use wasmtime::Trap;

use super::sandbox::Sandbox;

/// Any host call: crossing the component boundary both ways and lifting its arguments.
pub(crate) const FUEL_PER_CALL: u64 = 1_500;
/// A lookup that reaches the store: a `get`, the first step of a `scan`, and each
/// `put` or `delete` (whose old value the quota looks up when the command's writes are
/// kept): a fjall point read or seek.
pub(crate) const FUEL_PER_STORE_READ: u64 = 3_000;
/// Each pair a `scan` returns: the store iterator's step, the merge with buffered
/// writes, and lowering two lists into the guest.
pub(crate) const FUEL_PER_SCAN_PAIR: u64 = 4_500;
/// Each byte handed to the host that no lookup reads: values to buffer, log lines.
pub(crate) const FUEL_PER_BYTE_IN: u64 = 1;
/// Each byte handed back to the guest: values read, scanned keys and values (read from
/// the store, copied, then copied again into the guest's memory).
pub(crate) const FUEL_PER_BYTE_OUT: u64 = 4;

/// Bytes out `fuel` pays for.
pub(crate) fn bytes_out_for(fuel: u64) -> u64 {
    fuel / FUEL_PER_BYTE_OUT
}

/// The price of handing `bytes` bytes to the host.
pub(crate) fn bytes_in(bytes: usize) -> u64 {
    (bytes as u64).saturating_mul(FUEL_PER_BYTE_IN)
}

/// The price of a key of `bytes` bytes that a store lookup hashes and compares (a
/// `get`, a `scan` bound, a written key whose old value the quota looks up): as dear
/// as bytes handed back, which is what a miss on a 16 KiB key measured.
pub(crate) fn key_lookup(bytes: usize) -> u64 {
    bytes_out(bytes)
}

/// The price of handing `bytes` bytes back to the guest.
pub(crate) fn bytes_out(bytes: usize) -> u64 {
    (bytes as u64).saturating_mul(FUEL_PER_BYTE_OUT)
}

/// Takes `fuel` from the store's budget, or empties it and traps with `OutOfFuel` when
/// the budget cannot pay (the same outcome as a guest running out mid-loop).
pub(crate) fn charge(store: &mut StoreContextMut<'_, Sandbox>, fuel: u64) -> wasmtime::Result<()> {
    let left = store.get_fuel()?;
    match left.checked_sub(fuel) {
        Some(rest) => store.set_fuel(rest),
        None => {
            store.set_fuel(0)?;
            Err(Trap::OutOfFuel.into())
        }
    }
}

/// Fuel left in the store's budget.
pub(crate) fn left(store: &StoreContextMut<'_, Sandbox>) -> wasmtime::Result<u64> {
    store.get_fuel()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_grow_with_bytes_and_do_not_overflow() {
        assert_eq!(bytes_in(0), 0);
        assert_eq!(bytes_in(10), 10 * FUEL_PER_BYTE_IN);
        assert_eq!(bytes_out(10), 10 * FUEL_PER_BYTE_OUT);
        assert_eq!(bytes_out(usize::MAX), u64::MAX, "saturates");
        assert_eq!(bytes_out_for(bytes_out(4096)), 4096);
    }
}
