//! Per-group quotas on stored keys and bytes.
//!
//! A group's quota and its usage (the plugin's keys, and the bytes of those keys and
//! their values) are one record in the group's own state under a host-reserved key, so
//! they replicate, snapshot and digest like any other state, and every replica decides
//! "over quota" identically at the same index. The apply loop loads the record once per
//! entry, the [`KvView`](super::fsm::KvView) keeps usage current command by command
//! (refusing a command whose writes would take usage past the quota; one that shrinks
//! usage always passes), and the loop writes the record back when it changed. A quota
//! changes only through a log entry ([`super::payload::Payload::SetQuota`]).
//!
//! A group whose state has no record yet (created before quotas existed) gets its usage
//! counted once, by a scan of its keys, at its next entry; the record is written then.

use super::dedup::RESERVED_PREFIX;
use super::fsm::{FsmError, KvReader, WriteSet};
use super::kv_iter::pair_bytes;
use crate::ids::GroupId;
use crate::limits;

/// The record's key, among the host's reserved keys.
pub const RECORD_KEY: &[u8] = b"\xff\xffflotilla/quota";
const RECORD_LEN: usize = 32;

/// How much a group may store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    /// Plugin keys, at most.
    pub keys_max: u64,
    /// Bytes of plugin keys and values, at most.
    pub bytes_max: u64,
}

impl Default for Quota {
    fn default() -> Self {
        Self {
            keys_max: limits::GROUP_QUOTA_KEYS_DEFAULT,
            bytes_max: limits::GROUP_QUOTA_BYTES_DEFAULT,
        }
    }
}

/// What a group stores now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Plugin keys.
    pub keys: u64,
    /// Bytes of plugin keys and values.
    pub bytes: u64,
}

/// A group's quota and usage, as the record holds them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Account {
    pub quota: Quota,
    pub usage: Usage,
}

impl Account {
    /// Usage after writes that add `keys` keys and `bytes` bytes (negative: remove),
    /// or the reason they may not: they grow a figure past its quota. Writes that do not
    /// grow a figure are always allowed, so a group over its quota (after the quota was
    /// lowered) can still delete.
    pub fn after(&self, keys: i64, bytes: i64) -> Result<Usage, FsmError> {
        let next = Usage {
            keys: self.usage.keys.saturating_add_signed(keys),
            bytes: self.usage.bytes.saturating_add_signed(bytes),
        };
        if keys > 0 && next.keys > self.quota.keys_max {
            return Err(FsmError::QuotaExceeded(format!(
                "the group would hold {} keys, over its quota of {} keys",
                next.keys, self.quota.keys_max
            )));
        }
        if bytes > 0 && next.bytes > self.quota.bytes_max {
            return Err(FsmError::QuotaExceeded(format!(
                "the group would hold {} bytes of keys and values, over its quota of {} bytes",
                next.bytes, self.quota.bytes_max
            )));
        }
        Ok(next)
    }
}

fn encode(a: &Account) -> Vec<u8> {
    [
        a.quota.keys_max,
        a.quota.bytes_max,
        a.usage.keys,
        a.usage.bytes,
    ]
    .iter()
    .flat_map(|n| n.to_be_bytes())
    .collect()
}

fn decode(b: &[u8]) -> Option<Account> {
    if b.len() != RECORD_LEN {
        return None;
    }
    let n = |i: usize| -> Option<u64> {
        Some(u64::from_be_bytes(
            b.get(i * 8..i * 8 + 8)?.try_into().ok()?,
        ))
    };
    Some(Account {
        quota: Quota {
            keys_max: n(0)?,
            bytes_max: n(1)?,
        },
        usage: Usage {
            keys: n(2)?,
            bytes: n(3)?,
        },
    })
}

/// The group's account, and whether it was just counted (no record yet: the caller
/// must write it with [`record`] even if nothing changes).
pub fn load(reader: &dyn KvReader, group: GroupId) -> Result<(Account, bool), FsmError> {
    match reader.get(group, RECORD_KEY).map_err(FsmError::Storage)? {
        Some(bytes) => decode(&bytes)
            .map(|a| (a, false))
            .ok_or_else(|| FsmError::Storage(format!("corrupt quota record of group {group}"))),
        None => Ok((
            Account {
                quota: Quota::default(),
                usage: count(reader, group)?,
            },
            true,
        )),
    }
}

/// Counts the group's plugin keys and their bytes (every key below the reserved prefix).
pub fn count(reader: &dyn KvReader, group: GroupId) -> Result<Usage, FsmError> {
    let mut usage = Usage::default();
    for item in reader.scan(group, b"", Some(RESERVED_PREFIX)) {
        let (k, v) = item.map_err(FsmError::Storage)?;
        usage.keys += 1;
        usage.bytes += pair_bytes(&k, &v) as u64;
    }
    Ok(usage)
}

/// Writes `account` into the entry's host writes.
pub fn record(writes: &mut WriteSet, account: &Account) {
    writes.insert(RECORD_KEY.to_vec(), Some(encode(account)));
}

/// What a read of the group's state says about its account (for `group status`): the
/// record, or the default quota with freshly counted usage when there is none yet.
pub fn read(reader: &dyn KvReader, group: GroupId) -> Result<Account, FsmError> {
    load(reader, group).map(|(a, _)| a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raftstore::mem_kv::MemKv;

    #[test]
    fn records_round_trip_and_garbage_is_corruption() {
        let a = Account {
            quota: Quota {
                keys_max: 5,
                bytes_max: 1 << 40,
            },
            usage: Usage { keys: 3, bytes: 77 },
        };
        assert_eq!(decode(&encode(&a)), Some(a));
        let kv = MemKv::default();
        kv.insert(RECORD_KEY, b"short");
        assert!(matches!(load(&kv, GroupId(1)), Err(FsmError::Storage(_))));
    }

    #[test]
    fn a_missing_record_is_counted_from_the_keys_below_the_reserved_prefix() {
        let kv = MemKv::default();
        kv.insert(b"a", b"12345");
        kv.insert(b"bb", b"");
        kv.insert(b"\xff\xffflotilla/req/x", b"host record, not counted");
        let (account, fresh) = load(&kv, GroupId(1)).expect("load");
        assert!(fresh);
        assert_eq!(account.usage, Usage { keys: 2, bytes: 8 });
        assert_eq!(account.quota, Quota::default());
        let mut w = WriteSet::new();
        record(&mut w, &account);
        for (k, v) in w {
            kv.insert(&k, &v.expect("a put"));
        }
        assert_eq!(load(&kv, GroupId(1)).expect("load"), (account, false));
    }

    #[test]
    fn growth_past_a_quota_is_refused_and_shrinking_always_passes() {
        let a = Account {
            quota: Quota {
                keys_max: 2,
                bytes_max: 10,
            },
            usage: Usage { keys: 2, bytes: 12 },
        };
        assert!(matches!(a.after(1, 0), Err(FsmError::QuotaExceeded(_))));
        assert!(matches!(a.after(0, 1), Err(FsmError::QuotaExceeded(_))));
        assert_eq!(
            a.after(-1, -5).expect("shrinks"),
            Usage { keys: 1, bytes: 7 }
        );
        // Over the byte quota already, a write that does not grow bytes passes.
        assert_eq!(a.after(0, 0).expect("same"), a.usage);
        assert_eq!(a.after(-3, -20).expect("saturates"), Usage::default());
    }
}
