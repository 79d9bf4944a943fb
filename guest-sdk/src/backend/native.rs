//! The native twin of the host: a per-thread ordered map and a log buffer.
//!
//! It mimics the host's rules that matter to plugin logic: scans are ordered and
//! bounded, and writes during a query are refused (here: a panic naming the key).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ops::Bound;

use crate::log::Level;

#[derive(Default)]
pub(crate) struct State {
    pub(crate) kv: BTreeMap<Vec<u8>, Vec<u8>>,
    pub(crate) logs: Vec<(Level, String)>,
    pub(crate) read_only: bool,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

pub(crate) fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    STATE.with(|s| f(&mut s.borrow_mut()))
}

pub(crate) fn get(key: &[u8]) -> Option<Vec<u8>> {
    with(|s| s.kv.get(key).cloned())
}

pub(crate) fn put(key: &[u8], value: &[u8]) {
    with(|s| {
        assert!(!s.read_only, "kv write during a query: {key:?}");
        s.kv.insert(key.to_vec(), value.to_vec());
    });
}

pub(crate) fn delete(key: &[u8]) {
    with(|s| {
        assert!(!s.read_only, "kv delete during a query: {key:?}");
        s.kv.remove(key);
    });
}

pub(crate) fn scan(start: &[u8], end: Option<&[u8]>, limit: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
    let end = end.map_or(Bound::Unbounded, Bound::Excluded);
    if matches!(end, Bound::Excluded(e) if e <= start) {
        return Vec::new();
    }
    with(|s| {
        s.kv.range::<[u8], _>((Bound::Included(start), end))
            .take(limit.min(MAX_SCAN) as usize)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
}

/// A small cap, like the host's, so paging code is exercised by tests.
const MAX_SCAN: u32 = 64;

pub(crate) fn write_log(level: Level, message: &str) {
    with(|s| s.logs.push((level, message.to_owned())));
}
