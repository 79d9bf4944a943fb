//! The replica consistency check: a "compute state digest" entry makes every replica
//! hash the group's state (plugin digest and every KV pair, host-reserved dedup records
//! included, earlier digests excluded) as of just before that entry, and keep the hash
//! in the group's state under a reserved key. Comparing the hashes that replicas
//! recorded at the same index detects a plugin (or a bug) that made replicas diverge.

use sha2::{Digest as _, Sha256};

use super::fsm::{FsmError, KvReader, WriteSet};
use crate::ids::{GroupId, PluginDigest};

const DIGEST_PREFIX: &[u8] = b"\xff\xffflotilla/digest/";
/// Pairs read per scan while hashing.
const PAGE: usize = 1000;
/// Digests a group keeps (older ones are removed when a new one is recorded).
pub const KEPT_MAX: usize = 16;

fn key(index: u64) -> Vec<u8> {
    [DIGEST_PREFIX, &index.to_be_bytes()].concat()
}

/// Hashes the group's committed state; returns the hash and the number of pairs.
pub fn compute(
    reader: &dyn KvReader,
    group: GroupId,
    plugin: PluginDigest,
) -> Result<([u8; 32], u64), FsmError> {
    let mut hash = Sha256::new();
    hash.update(plugin.0);
    let mut start: Vec<u8> = Vec::new();
    let mut pairs = 0u64;
    loop {
        let page = reader
            .scan(group, &start, None, PAGE)
            .map_err(FsmError::Storage)?;
        for (k, v) in &page {
            if k.starts_with(DIGEST_PREFIX) {
                continue;
            }
            hash.update((k.len() as u32).to_be_bytes());
            hash.update(k);
            hash.update((v.len() as u32).to_be_bytes());
            hash.update(v);
            pairs += 1;
        }
        match page.last() {
            Some((k, _)) if page.len() == PAGE => {
                start = k.clone();
                start.push(0);
            }
            _ => break,
        }
    }
    Ok((hash.finalize().into(), pairs))
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
        .scan(group, DIGEST_PREFIX, Some(&end), KEPT_MAX + 64)
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
