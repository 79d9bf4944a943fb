//! The group's key-value state, held by the host.
//!
//! Raw functions move bytes; the `*_value` functions store values in postcard, the compact
//! binary codec. Keys are compared as bytes, so scans come back in byte order: prefer
//! separators that sort low (such as `0x00`) or fixed-width big-endian numbers in keys.
//!
//! During `apply`, writes are buffered by the host and committed with the applied index
//! only if the command succeeds; a [`Rejection`] or a trap discards them. During `query`,
//! writes are refused and fail the query.
//!
//! Host calls are not free: each one costs fuel from the call's budget (by call and by
//! bytes moved), the same budget the plugin's own instructions use, so a command's total
//! work is bounded. Keys are at most [`KEY_BYTES_MAX`], values [`VALUE_BYTES_MAX`], and
//! the group has a storage quota (keys and bytes) that refuses writes past it.

use std::collections::VecDeque;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Rejection;
use crate::backend;

/// Pairs fetched per host call by [`Scan`].
const PAGE: u32 = 256;

/// The longest key the host accepts in any call, in bytes. A longer one aborts the call
/// with an error that names it (a client sees `INVALID_ARGUMENT`); check keys built from
/// requests against it to answer with your own message instead.
pub const KEY_BYTES_MAX: usize = 16 * 1024;
/// The largest value the host accepts in [`put`], in bytes.
pub const VALUE_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Bytes of keys and values one [`scan`] call returns at most (always at least one pair,
/// whatever its size): a scan is a page, and [`scan_all`] walks the pages.
pub const SCAN_PAGE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// The value under `key`, if any.
#[must_use]
pub fn get(key: &[u8]) -> Option<Vec<u8>> {
    backend::get(key)
}

/// Sets `key` to `value`.
pub fn put(key: &[u8], value: &[u8]) {
    backend::put(key, value);
}

/// Removes `key` (a no-op when absent).
pub fn delete(key: &[u8]) {
    backend::delete(key);
}

/// One host call: up to `limit` pairs with keys in `[start, end)`, ascending. The host
/// caps `limit` (10,000 pairs) and the page's bytes ([`SCAN_PAGE_BYTES_MAX`]), and each
/// pair costs fuel, so fewer pairs than asked do not mean the range is exhausted; use
/// [`scan_all`] to walk a whole range.
#[must_use]
pub fn scan(start: &[u8], end: Option<&[u8]>, limit: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
    backend::scan(start, end, limit)
}

/// Every pair with a key in `[start, end)` (`None` = unbounded), fetched page by page.
#[must_use]
pub fn scan_all(start: &[u8], end: Option<&[u8]>) -> Scan {
    Scan {
        next: Some(start.to_vec()),
        end: end.map(<[u8]>::to_vec),
        page: VecDeque::new(),
    }
}

/// Every pair whose key starts with `prefix`.
#[must_use]
pub fn scan_prefix(prefix: &[u8]) -> Scan {
    scan_all(prefix, prefix_end(prefix).as_deref())
}

/// The smallest key greater than every key starting with `prefix` (`None` if there is
/// none, i.e. the prefix is empty or all `0xff`).
#[must_use]
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The value under `key`, decoded from postcard. A value that does not decode is a
/// [`Rejection`] naming the key.
pub fn get_value<T: DeserializeOwned>(key: &[u8]) -> Result<Option<T>, Rejection> {
    get(key).map(|bytes| decode_value(key, &bytes)).transpose()
}

/// Stores `value` under `key`, encoded in postcard.
pub fn put_value<T: Serialize + ?Sized>(key: &[u8], value: &T) -> Result<(), Rejection> {
    let bytes = postcard::to_allocvec(value).map_err(|e| {
        Rejection::new(format!(
            "cannot encode the value for key {}: {e}",
            show(key)
        ))
    })?;
    put(key, &bytes);
    Ok(())
}

/// Decodes a postcard value read from `key` (for pairs returned by a scan).
pub fn decode_value<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, Rejection> {
    postcard::from_bytes(bytes).map_err(|e| {
        Rejection::new(format!(
            "stored value under key {} is corrupt: {e}",
            show(key)
        ))
    })
}

fn show(key: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(key))
}

/// An ascending walk over a key range that asks the host for one page at a time.
#[derive(Debug)]
pub struct Scan {
    /// Where the next page starts; `None` once the range is exhausted.
    next: Option<Vec<u8>>,
    end: Option<Vec<u8>>,
    page: VecDeque<(Vec<u8>, Vec<u8>)>,
}

impl Iterator for Scan {
    type Item = (Vec<u8>, Vec<u8>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.page.is_empty() {
            let start = self.next.take()?;
            self.page = scan(&start, self.end.as_deref(), PAGE).into();
            if let Some((last, _)) = self.page.back() {
                // The successor of `last` in byte order: the next page starts after it.
                let mut after = last.clone();
                after.push(0);
                self.next = Some(after);
            }
        }
        self.page.pop_front()
    }
}
