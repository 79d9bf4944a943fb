//! Scans as lazy iterators: the pieces every [`KvReader`](super::fsm::KvReader) and
//! [`KvView`](super::fsm::KvView) build their scans from.
//!
//! A scan never materializes more than its caller takes: the store hands out pairs as
//! they are read, layers of buffered writes are merged over them one key at a time
//! ([`Overlay`]), and a page stops at a count and a byte budget ([`collect_page`]). The
//! in-memory twins walk their maps with a cursor ([`CursorScan`]) so that no lock is
//! held between two pairs.

use std::iter::Peekable;
use std::ops::Bound;

/// One pair of a scan, or why reading it failed.
pub type KvItem = Result<(Vec<u8>, Vec<u8>), String>;

/// An ascending run of pairs, read as the caller iterates.
pub type KvIter<'a> = Box<dyn Iterator<Item = KvItem> + 'a>;

/// Key-value pairs in ascending key order, as a page of a scan.
pub type KvPairs = Vec<(Vec<u8>, Vec<u8>)>;

/// How much one page of a scan may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanLimit {
    /// Pairs, at most.
    pub pairs: usize,
    /// Bytes of keys and values, at most, except that a page always holds at least one
    /// pair when the range has one (so paging makes progress whatever a pair's size).
    pub bytes: usize,
}

impl ScanLimit {
    /// At most `pairs` pairs, with no byte budget of its own (for host-side walks
    /// whose pairs are small by construction).
    pub fn pairs(pairs: usize) -> Self {
        Self {
            pairs,
            bytes: usize::MAX,
        }
    }
}

/// The size a pair counts for against a byte budget.
pub fn pair_bytes(key: &[u8], value: &[u8]) -> usize {
    key.len().saturating_add(value.len())
}

/// Takes pairs from `iter` until `limit` is reached; the pair that would go over the
/// byte budget is read and dropped, unless it is the first. Returns the page and its
/// bytes.
pub fn collect_page(
    iter: impl Iterator<Item = KvItem>,
    limit: ScanLimit,
) -> Result<(KvPairs, usize), String> {
    let mut page = Vec::new();
    let mut bytes = 0usize;
    if limit.pairs == 0 {
        return Ok((page, bytes));
    }
    for item in iter {
        let (key, value) = item?;
        let size = pair_bytes(&key, &value);
        if !page.is_empty() && bytes.saturating_add(size) > limit.bytes {
            break;
        }
        bytes = bytes.saturating_add(size);
        page.push((key, value));
        if page.len() >= limit.pairs {
            break;
        }
    }
    Ok((page, bytes))
}

/// Whether `[start, end)` holds no key at all.
pub fn is_empty_range(start: &[u8], end: Option<&[u8]>) -> bool {
    end.is_some_and(|e| e <= start)
}

/// Buffered writes over a lower run of pairs: where the upper layer has a key, its
/// value wins (`None`, a delete, hides the key); elsewhere the lower pair shows.
pub struct Overlay<'a, U: Iterator<Item = (Vec<u8>, Option<Vec<u8>>)>> {
    upper: Peekable<U>,
    lower: Peekable<KvIter<'a>>,
}

impl<'a, U: Iterator<Item = (Vec<u8>, Option<Vec<u8>>)>> Overlay<'a, U> {
    pub fn new(upper: U, lower: KvIter<'a>) -> Self {
        Self {
            upper: upper.peekable(),
            lower: lower.peekable(),
        }
    }
}

impl<U: Iterator<Item = (Vec<u8>, Option<Vec<u8>>)>> Iterator for Overlay<'_, U> {
    type Item = KvItem;

    fn next(&mut self) -> Option<KvItem> {
        loop {
            let lower_key = match self.lower.peek() {
                Some(Err(_)) => return self.lower.next(),
                Some(Ok((k, _))) => Some(k),
                None => None,
            };
            let take_upper = match (self.upper.peek(), lower_key) {
                (None, None) => return None,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((u, _)), Some(l)) => {
                    if u == l {
                        // The upper layer decides this key: drop the lower pair.
                        self.lower.next();
                        true
                    } else {
                        u < l
                    }
                }
            };
            if !take_upper {
                return self.lower.next();
            }
            if let Some((key, Some(value))) = self.upper.next() {
                return Some(Ok((key, value)));
            }
            // A delete hides the key; go on with the next one.
        }
    }
}

/// Walks an ordered map one key at a time: `step(after)` returns the first pair past
/// `after` (and before the scan's end), taking whatever lock the map needs for just
/// that lookup.
pub struct CursorScan<V, F: FnMut(&Bound<Vec<u8>>) -> Option<(Vec<u8>, V)>> {
    after: Bound<Vec<u8>>,
    step: F,
    done: bool,
}

impl<V, F: FnMut(&Bound<Vec<u8>>) -> Option<(Vec<u8>, V)>> CursorScan<V, F> {
    /// Starts at `start` (included).
    pub fn new(start: &[u8], step: F) -> Self {
        Self {
            after: Bound::Included(start.to_vec()),
            step,
            done: false,
        }
    }
}

impl<V, F: FnMut(&Bound<Vec<u8>>) -> Option<(Vec<u8>, V)>> Iterator for CursorScan<V, F> {
    type Item = (Vec<u8>, V);

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match (self.step)(&self.after) {
            Some((key, value)) => {
                self.after = Bound::Excluded(key.clone());
                Some((key, value))
            }
            None => {
                self.done = true;
                None
            }
        }
    }
}

/// The first pair of `map` past `after` and before `end`, cloned.
pub fn first_after<V: Clone>(
    map: &std::collections::BTreeMap<Vec<u8>, V>,
    after: &Bound<Vec<u8>>,
    end: Option<&[u8]>,
) -> Option<(Vec<u8>, V)> {
    map.range::<Vec<u8>, _>((after.as_ref(), Bound::Unbounded))
        .next()
        .filter(|(k, _)| end.is_none_or(|e| k.as_slice() < e))
        .map(|(k, v)| (k.clone(), v.clone()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn lower(pairs: &[(&str, &str)]) -> KvIter<'static> {
        let owned: Vec<KvItem> = pairs
            .iter()
            .map(|(k, v)| Ok((k.as_bytes().to_vec(), v.as_bytes().to_vec())))
            .collect();
        Box::new(owned.into_iter())
    }

    fn upper(pairs: &[(&str, Option<&str>)]) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        pairs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec())))
            .collect()
    }

    fn show(items: impl Iterator<Item = KvItem>) -> Vec<String> {
        items
            .map(|i| {
                let (k, v) = i.expect("no error");
                format!(
                    "{}={}",
                    String::from_utf8_lossy(&k),
                    String::from_utf8_lossy(&v)
                )
            })
            .collect()
    }

    #[test]
    fn the_upper_layer_wins_and_deletes_hide() {
        let merged = Overlay::new(
            upper(&[("a", None), ("b", Some("B")), ("e", Some("E"))]).into_iter(),
            lower(&[("a", "1"), ("c", "3"), ("e", "5"), ("f", "6")]),
        );
        assert_eq!(show(merged), ["b=B", "c=3", "e=E", "f=6"]);
    }

    #[test]
    fn a_read_error_comes_through() {
        let failing: KvIter<'static> = Box::new(vec![Err("disk".to_string())].into_iter());
        let mut merged = Overlay::new(upper(&[("a", Some("1"))]).into_iter(), failing);
        assert_eq!(merged.next(), Some(Err("disk".into())));
    }

    #[test]
    fn pages_stop_at_pairs_and_bytes_but_always_hold_one_pair() {
        let pairs = || lower(&[("a", "12345"), ("b", "1"), ("c", "1")]);
        let (page, bytes) = collect_page(
            pairs(),
            ScanLimit {
                pairs: 10,
                bytes: 3,
            },
        )
        .expect("page");
        assert_eq!((page.len(), bytes), (1, 6), "the first pair always fits");
        let (page, _) = collect_page(
            pairs(),
            ScanLimit {
                pairs: 2,
                bytes: 100,
            },
        )
        .expect("page");
        assert_eq!(page.len(), 2);
        let (page, bytes) = collect_page(
            pairs(),
            ScanLimit {
                pairs: 10,
                bytes: 8,
            },
        )
        .expect("page");
        assert_eq!((page.len(), bytes), (2, 8));
        let (page, _) = collect_page(pairs(), ScanLimit::pairs(0)).expect("page");
        assert!(page.is_empty());
    }

    #[test]
    fn a_cursor_walks_a_map_that_changes_between_steps() {
        let map = parking_lot::Mutex::new(BTreeMap::from([
            (b"a".to_vec(), 1),
            (b"c".to_vec(), 3),
            (b"e".to_vec(), 5),
        ]));
        let mut walk = CursorScan::new(b"b", |after| first_after(&map.lock(), after, Some(b"z")));
        assert_eq!(walk.next(), Some((b"c".to_vec(), 3)));
        map.lock().insert(b"d".to_vec(), 4);
        assert_eq!(walk.next(), Some((b"d".to_vec(), 4)));
        assert_eq!(walk.next(), Some((b"e".to_vec(), 5)));
        assert_eq!(walk.next(), None);
        assert!(is_empty_range(b"b", Some(b"b")));
        assert!(!is_empty_range(b"b", None));
    }
}
