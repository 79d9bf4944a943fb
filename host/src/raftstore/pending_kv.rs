//! The apply loop's view of a group while it applies several committed entries before
//! one storage commit: the writes of the entries applied so far in this batch, layered
//! over the committed state. Each entry's plugin call, request-id lookups and digest
//! see exactly what they would see if every earlier entry had been committed alone.

use std::sync::Arc;

use parking_lot::RwLock;

use super::fsm::{KvIter, KvReader, WriteSet};
use super::kv_iter::{CursorScan, Overlay, first_after};
use crate::ids::GroupId;

/// Writes of applied but not yet committed entries of `group`, over `base`.
pub struct PendingKv {
    base: Arc<dyn KvReader>,
    group: GroupId,
    writes: Arc<RwLock<WriteSet>>,
}

impl PendingKv {
    pub fn new(base: Arc<dyn KvReader>, group: GroupId, writes: Arc<RwLock<WriteSet>>) -> Self {
        Self {
            base,
            group,
            writes,
        }
    }
}

impl KvReader for PendingKv {
    fn get(&self, group: GroupId, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        if group == self.group
            && let Some(v) = self.writes.read().get(key)
        {
            return Ok(v.clone());
        }
        self.base.get(group, key)
    }

    fn value_size(&self, group: GroupId, key: &[u8]) -> Result<Option<usize>, String> {
        if group == self.group
            && let Some(v) = self.writes.read().get(key)
        {
            return Ok(v.as_ref().map(Vec::len));
        }
        self.base.value_size(group, key)
    }

    fn scan<'a>(&'a self, group: GroupId, start: &[u8], end: Option<&[u8]>) -> KvIter<'a> {
        let committed = self.base.scan(group, start, end);
        if group != self.group {
            return committed;
        }
        // The pending layer is walked with a cursor: the lock is held for one lookup at
        // a time, never across the caller's iteration.
        let end = end.map(<[u8]>::to_vec);
        let pending = CursorScan::new(start, move |after| {
            first_after(&self.writes.read(), after, end.as_deref())
        });
        Box::new(Overlay::new(pending, committed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raftstore::mem_kv::MemKv;

    #[test]
    fn pending_writes_hide_and_extend_the_committed_state_of_their_group_only() {
        let base = MemKv::default();
        for k in ["a", "b", "c", "d"] {
            base.insert(k.as_bytes(), b"old");
        }
        let writes: Arc<RwLock<WriteSet>> = Arc::default();
        {
            let mut w = writes.write();
            w.insert(b"b".to_vec(), None);
            w.insert(b"c".to_vec(), Some(b"new".to_vec()));
            w.insert(b"e".to_vec(), Some(b"added".to_vec()));
        }
        let kv = PendingKv::new(Arc::new(base), GroupId(1), writes);
        let g = GroupId(1);
        assert_eq!(kv.get(g, b"a"), Ok(Some(b"old".to_vec())));
        assert_eq!(kv.get(g, b"b"), Ok(None));
        assert_eq!(kv.get(g, b"c"), Ok(Some(b"new".to_vec())));
        assert_eq!(kv.get(g, b"e"), Ok(Some(b"added".to_vec())));
        let keys = |pairs: crate::raftstore::fsm::KvIter<'_>| -> Vec<String> {
            pairs
                .map(|p| {
                    let (k, v) = p.expect("no error");
                    format!(
                        "{}={}",
                        String::from_utf8_lossy(&k),
                        String::from_utf8_lossy(&v)
                    )
                })
                .collect()
        };
        assert_eq!(
            keys(kv.scan(g, b"", None)),
            ["a=old", "c=new", "d=old", "e=added"]
        );
        assert_eq!(
            keys(Box::new(kv.scan(g, b"a", Some(b"d")).take(2))),
            ["a=old", "c=new"]
        );
        // Another group sees only the committed state (MemKv ignores groups: all old).
        assert_eq!(kv.get(GroupId(2), b"b"), Ok(Some(b"old".to_vec())));
    }
}
