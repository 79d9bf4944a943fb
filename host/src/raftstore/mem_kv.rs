//! [`MemKv`]: one group's committed KV state in memory — the [`KvReader`] that unit
//! tests, benchmarks and simulations put under a [`KvView`].

use std::collections::BTreeMap;

use parking_lot::Mutex;

use super::fsm::{KvIter, KvReader, KvView};
use super::kv_iter::{CursorScan, first_after};
use crate::ids::GroupId;

/// Committed state of a single group (the group id passed to reads is ignored).
#[derive(Debug, Default)]
pub struct MemKv(pub Mutex<BTreeMap<Vec<u8>, Vec<u8>>>);

impl KvReader for MemKv {
    fn get(&self, _: GroupId, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        Ok(self.0.lock().get(key).cloned())
    }

    fn scan<'a>(&'a self, _: GroupId, start: &[u8], end: Option<&[u8]>) -> KvIter<'a> {
        let end = end.map(<[u8]>::to_vec);
        Box::new(
            CursorScan::new(start, move |after| {
                first_after(&self.0.lock(), after, end.as_deref())
            })
            .map(Ok),
        )
    }
}

impl MemKv {
    /// Commits an entry's writes, as the apply loop would.
    pub fn commit(&self, view: KvView) {
        let mut map = self.0.lock();
        for (key, value) in view.into_writes() {
            match value {
                Some(value) => map.insert(key, value),
                None => map.remove(&key),
            };
        }
    }

    /// Sets `key` directly (test setup).
    pub fn insert(&self, key: &[u8], value: &[u8]) {
        self.0.lock().insert(key.to_vec(), value.to_vec());
    }

    /// The value of a UTF-8 key as text.
    pub fn value(&self, key: &str) -> Option<String> {
        self.0
            .lock()
            .get(key.as_bytes())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    pub fn len(&self) -> usize {
        self.0.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.lock().is_empty()
    }
}
