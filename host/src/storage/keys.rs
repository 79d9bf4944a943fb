//! Key layouts. Every integer is big-endian so that byte order equals numeric order.
//!
//! | keyspace      | key                              | value                         |
//! |---------------|----------------------------------|-------------------------------|
//! | `raft_log`    | group u64 · index u64            | eraftpb `Entry` (protobuf)    |
//! | `raft_state`  | group u64 · tag u8               | hard state / conf state / truncated |
//! | `apply_state` | group u64 (· 2 for the conf state) | [`crate::storage::apply`] record / eraftpb `ConfState` |
//! | `kv`          | group u64 · user key             | user value                    |
//! | `plugins`     | sha256 digest (32 bytes)         | the plugin's uploaded bytes   |
//! | `meta`        | text path (`plugin/…`, `group/…`, `tombstone/…`) | JSON record / peer id |

use std::ops::Bound;

use crate::ids::GroupId;

/// Longest key the store holds: lsm-tree panics on a longer one (`keys can be 65535
/// bytes in length`), so every key built from outside input is checked against it.
pub const STORE_KEY_BYTES_MAX: usize = u16::MAX as usize;

pub const TAG_HARD_STATE: u8 = 1;
pub const TAG_CONF_STATE: u8 = 2;
pub const TAG_TRUNCATED: u8 = 3;
/// A snapshot whose data the apply side has not loaded yet: index · term.
pub const TAG_PENDING_SNAPSHOT: u8 = 4;

/// The `apply_state` key of a group's configuration (next to its apply state record).
pub fn conf_key(group: GroupId) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[..8].copy_from_slice(&group.0.to_be_bytes());
    k[8] = 2;
    k
}

/// The `meta` key remembering the highest removed peer of a group on this node.
pub fn tombstone_key(group: GroupId) -> String {
    format!("tombstone/{:020}", group.0)
}

pub fn group_prefix(group: GroupId) -> [u8; 8] {
    group.0.to_be_bytes()
}

pub fn log_key(group: GroupId, index: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&group.0.to_be_bytes());
    k[8..].copy_from_slice(&index.to_be_bytes());
    k
}

/// The index in a `raft_log` key.
pub fn log_key_index(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(8..16)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

pub fn state_key(group: GroupId, tag: u8) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[..8].copy_from_slice(&group.0.to_be_bytes());
    k[8] = tag;
    k
}

pub fn kv_key(group: GroupId, user_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + user_key.len());
    k.extend_from_slice(&group.0.to_be_bytes());
    k.extend_from_slice(user_key);
    k
}

/// `group`'s `kv` key for `user_key`, or `None` when it would be longer than the store
/// holds (no such key can exist, so a read of it finds nothing).
pub fn kv_key_checked(group: GroupId, user_key: &[u8]) -> Option<Vec<u8>> {
    (8 + user_key.len() <= STORE_KEY_BYTES_MAX).then(|| kv_key(group, user_key))
}

/// `bound` made storable without changing which stored keys it admits: every stored key
/// is at most [`STORE_KEY_BYTES_MAX`] bytes, and for such a key `k` and a longer `b`
/// with `c = b[..STORE_KEY_BYTES_MAX]`, `k >= b` exactly when `k > c`, and `k < b`
/// exactly when `k <= c`. So a lower bound becomes `Excluded(c)`, an upper one `Included(c)`.
pub fn storable_bound(bound: Bound<Vec<u8>>, lower: bool) -> Bound<Vec<u8>> {
    match bound {
        Bound::Included(mut k) | Bound::Excluded(mut k) if k.len() > STORE_KEY_BYTES_MAX => {
            k.truncate(STORE_KEY_BYTES_MAX);
            if lower {
                Bound::Excluded(k)
            } else {
                Bound::Included(k)
            }
        }
        other => other,
    }
}

/// The first key after every key of `group` in a keyspace whose keys start with the
/// group id (`None` for the last possible group).
pub fn group_end(group: GroupId) -> Option<[u8; 8]> {
    group.0.checked_add(1).map(u64::to_be_bytes)
}

pub fn group_meta_key(group: GroupId) -> String {
    format!("group/{:020}", group.0)
}

pub fn plugin_meta_key(name: &str, version: u32) -> String {
    format!("plugin/{name}/{version:010}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_numerically() {
        assert!(log_key(GroupId(1), 255) < log_key(GroupId(1), 256));
        assert!(log_key(GroupId(1), u64::MAX) < log_key(GroupId(2), 0));
        assert!(kv_key(GroupId(1), b"\xff\xff") < kv_key(GroupId(2), b""));
        assert_eq!(log_key_index(&log_key(GroupId(7), 42)), Some(42));
        assert!(group_meta_key(GroupId(9)) < group_meta_key(GroupId(10)));
        assert!(plugin_meta_key("kv", 9) < plugin_meta_key("kv", 10));
        assert_eq!(group_end(GroupId(u64::MAX)), None);
    }

    #[test]
    fn over_long_keys_are_refused_and_bounds_clamped_without_changing_what_they_admit() {
        let max = STORE_KEY_BYTES_MAX;
        assert!(kv_key_checked(GroupId(1), &vec![1; max - 8]).is_some());
        assert!(kv_key_checked(GroupId(1), &vec![1; max - 7]).is_none());
        let long = vec![7u8; max + 10];
        let cut = vec![7u8; max];
        assert_eq!(
            storable_bound(Bound::Included(long.clone()), true),
            Bound::Excluded(cut.clone())
        );
        assert_eq!(
            storable_bound(Bound::Excluded(long), false),
            Bound::Included(cut)
        );
        assert_eq!(
            storable_bound(Bound::Included(vec![1]), true),
            Bound::Included(vec![1])
        );
        // Brute force on a small alphabet: a stored key (at most `max` bytes) is >= a
        // longer bound exactly when it is > the bound's first `max` bytes.
        let (b, c) = (vec![5u8; max + 1], vec![5u8; max]);
        for k in [
            vec![5u8; max],
            vec![5u8; max - 1],
            vec![6u8],
            vec![4u8; max],
        ] {
            assert_eq!(k >= b, k > c, "{:?}", &k[..1]);
            assert_eq!(k < b, k <= c);
        }
    }
}
