//! How leases are laid out in the group's KV.
//!
//! - `l\0<service>\0<instance>` → the [`Lease`] (postcard), so one service's
//!   instances are one contiguous range;
//! - `e\0<expires_at_ms, 8 bytes big-endian><service>\0<instance>` → empty, an index
//!   in expiry order so garbage collection reads only what has expired.
//!
//! Names never contain NUL, which keeps both layouts unambiguous.

use flotilla_sdk::{Rejection, kv};
use serde::{Deserialize, Serialize};

const LEASES: &[u8] = b"l\0";
const EXPIRY: &[u8] = b"e\0";
/// Leases collected per command at most, so one command's work stays bounded.
const GC_BATCH: usize = 128;

/// One registered instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The service name.
    pub service: String,
    /// The instance name.
    pub instance: String,
    /// Where to reach the instance.
    pub address: String,
    /// The lease length a heartbeat renews.
    pub ttl_ms: u64,
    /// The entry timestamp from which the instance counts as gone.
    pub expires_at_ms: u64,
}

fn service_prefix(service: &str) -> Vec<u8> {
    [LEASES, service.as_bytes(), b"\0"].concat()
}

fn lease_key(service: &str, instance: &str) -> Vec<u8> {
    [service_prefix(service).as_slice(), instance.as_bytes()].concat()
}

fn expiry_key(lease: &Lease) -> Vec<u8> {
    let at = lease.expires_at_ms.to_be_bytes();
    let name = [lease.service.as_bytes(), b"\0", lease.instance.as_bytes()].concat();
    [EXPIRY, &at, &name].concat()
}

/// The lease of `instance`, expired or not.
pub(crate) fn load(service: &str, instance: &str) -> Result<Option<Lease>, Rejection> {
    kv::get_value(&lease_key(service, instance))
}

/// Stores `lease` and its expiry index entry.
pub(crate) fn save(lease: &Lease) -> Result<(), Rejection> {
    kv::put_value(&lease_key(&lease.service, &lease.instance), lease)?;
    kv::put(&expiry_key(lease), &[]);
    Ok(())
}

/// Removes `lease` and its expiry index entry.
pub(crate) fn remove(lease: &Lease) {
    kv::delete(&lease_key(&lease.service, &lease.instance));
    kv::delete(&expiry_key(lease));
}

/// Removes up to [`GC_BATCH`] leases that expired at or before `now`.
pub(crate) fn collect_expired(now: u64) -> Result<(), Rejection> {
    let end = now
        .checked_add(1)
        .map(|t| [EXPIRY, &t.to_be_bytes()].concat());
    let end = end.or_else(|| kv::prefix_end(EXPIRY));
    let due: Vec<_> = kv::scan_all(EXPIRY, end.as_deref())
        .take(GC_BATCH)
        .collect();
    for (index_key, _) in due {
        let name = index_key.get(EXPIRY.len() + 8..).unwrap_or_default();
        let mut parts = name.splitn(2, |b| *b == 0);
        let service = String::from_utf8_lossy(parts.next().unwrap_or_default());
        let instance = String::from_utf8_lossy(parts.next().unwrap_or_default());
        kv::delete(&index_key);
        if let Some(lease) = load(&service, &instance)?
            && lease.expires_at_ms <= now
        {
            remove(&lease);
        }
    }
    Ok(())
}

/// The leases of `service` still alive at `now`, by instance name.
pub(crate) fn list(service: &str, now: u64) -> Result<Vec<Lease>, Rejection> {
    kv::scan_prefix(&service_prefix(service))
        .map(|(k, v)| kv::decode_value::<Lease>(&k, &v))
        .filter(|l| l.as_ref().map_or(true, |l| l.expires_at_ms > now))
        .collect()
}
