//! The misbehaviours themselves, written so the optimiser cannot remove them.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use flotilla_sdk::kv;

/// A counter that lives as long as the instance: reads must never see another read's.
static CALLS: AtomicU64 = AtomicU64::new(0);

/// Traps immediately (`unreachable` on Wasm, `abort` natively).
pub(crate) fn trap() -> ! {
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    std::process::abort();
}

/// Never returns; every iteration goes through `black_box`, so it costs fuel.
pub(crate) fn loop_forever() -> ! {
    let mut n: u64 = 0;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Keeps 1 MiB chunks (each written, so really committed) until allocation fails.
pub(crate) fn alloc_forever() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(black_box(vec![0xa5; 1 << 20]));
        black_box(&hoard);
    }
}

/// Recurses `depth` times with a 256-byte frame that stays live across the call, so it
/// is neither a tail call nor a loop; returns `depth`.
#[inline(never)]
pub(crate) fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth.to_le_bytes()[0]; 256]);
    if depth == 0 {
        return 0;
    }
    let below = recurse(black_box(depth - 1));
    black_box(&frame);
    below + 1
}

/// A bounded busy loop of `iterations` steps; returns the number of steps taken.
pub(crate) fn spin(iterations: u64) -> u64 {
    let mut count = 0;
    for _ in 0..iterations {
        count = black_box(count + 1);
    }
    count
}

/// Walks every key in pages of 10,000 pairs (the host may return fewer), keeping only
/// the count; returns the number of pairs seen.
pub(crate) fn scan_all() -> u64 {
    let mut start = Vec::new();
    let mut seen = 0u64;
    loop {
        let page = kv::scan(&start, None, 10_000);
        let Some((last, _)) = page.last() else {
            return seen;
        };
        seen += page.len() as u64;
        start = last.clone();
        start.push(0);
        black_box(&page);
    }
}

/// Bumps the instance's counter and returns its new value (1 in a fresh instance).
pub(crate) fn count_static() -> u64 {
    CALLS.fetch_add(1, Ordering::Relaxed) + 1
}
