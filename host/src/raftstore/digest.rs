//! The replica consistency check: a "compute state digest" entry makes every replica
//! hash the group's state (plugin digest and every KV pair, host-reserved dedup records
//! included, earlier digests excluded) as of just before that entry, and keep the hash
//! in the group's state under a reserved key. Comparing the hashes that replicas
//! recorded at the same index detects a plugin (or a bug) that made replicas diverge.

use sha2::{Digest as _, Sha256};

use super::fsm::{FsmError, KvReader, WriteSet};
use crate::ids::{GroupId, PluginDigest};

const DIGEST_PREFIX: &[u8] = b"\xff\xffflotilla/digest/";
/// Digests a group keeps (older ones are removed when a new one is recorded).
pub const KEPT_MAX: usize = 16;

fn key(index: u64) -> Vec<u8> {
    [DIGEST_PREFIX, &index.to_be_bytes()].concat()
}

/// Hashes the group's committed state; returns the hash and the number of pairs. The
/// pairs are read one at a time, so memory stays at one pair whatever the group holds.
pub fn compute(
    reader: &dyn KvReader,
    group: GroupId,
    plugin: PluginDigest,
) -> Result<([u8; 32], u64), FsmError> {
    let mut hash = Sha256::new();
    hash.update(plugin.0);
    let mut pairs = 0u64;
    for item in reader.scan(group, b"", None) {
        let (k, v) = item.map_err(FsmError::Storage)?;
        if k.starts_with(DIGEST_PREFIX) {
            continue;
        }
        hash_pair(&mut hash, &k, &v);
        pairs += 1;
    }
    Ok((hash.finalize().into(), pairs))
}

/// Adds one pair to a state hash: lengths first, so that no two states hash alike by
/// moving bytes between a key and its value.
pub fn hash_pair(hash: &mut Sha256, key: &[u8], value: &[u8]) {
    hash.update((key.len() as u32).to_be_bytes());
    hash.update(key);
    hash.update((value.len() as u32).to_be_bytes());
    hash.update(value);
}

/// Records `hash` at `index`, dropping the oldest digests beyond [`KEPT_MAX`].
pub fn record(
    reader: &dyn KvReader,
    writes: &mut WriteSet,
    group: GroupId,
    index: u64,
    hash: [u8; 32],
) -> Result<(), FsmError> {
    let end = [DIGEST_PREFIX, &[0xff; 9][..]].concat();
    let old = reader
        .scan(group, DIGEST_PREFIX, Some(&end))
        .take(KEPT_MAX + 64)
        .collect::<Result<Vec<_>, _>>()
        .map_err(FsmError::Storage)?;
    let excess = (old.len() + 1).saturating_sub(KEPT_MAX);
    for (k, _) in old.into_iter().take(excess) {
        writes.insert(k, None);
    }
    writes.insert(key(index), Some(hash.to_vec()));
    Ok(())
}

/// The digest a replica recorded at `index`, if it has one.
pub fn recorded(
    reader: &dyn KvReader,
    group: GroupId,
    index: u64,
) -> Result<Option<[u8; 32]>, String> {
    Ok(reader
        .get(group, &key(index))?
        .and_then(|v| <[u8; 32]>::try_from(v.as_slice()).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raftstore::mem_kv::MemKv;

    #[test]
    fn digests_see_state_and_ignore_older_digests() {
        let kv = MemKv::default();
        let g = GroupId(1);
        let p = PluginDigest::of(b"p");
        let (empty, n) = compute(&kv, g, p).expect("hash");
        assert_eq!(n, 0);
        kv.insert(b"a", b"1");
        let (one, n) = compute(&kv, g, p).expect("hash");
        assert_eq!(n, 1);
        assert_ne!(empty, one);
        let mut w = WriteSet::new();
        record(&kv, &mut w, g, 7, one).expect("record");
        for (k, v) in &w {
            if let Some(v) = v {
                kv.insert(k, v);
            }
        }
        assert_eq!(
            compute(&kv, g, p).expect("hash").0,
            one,
            "a digest changed the digest"
        );
        assert_eq!(recorded(&kv, g, 7).expect("read"), Some(one));
        assert_ne!(
            compute(&kv, g, PluginDigest::of(b"q")).expect("hash").0,
            one
        );
    }
}
