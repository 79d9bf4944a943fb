//! Idempotent proposals: a command that carries a client request id is applied at most
//! once per group. The outcome of each such command is recorded in the group's own KV
//! state under a reserved prefix (so it replicates, snapshots and digests like any other
//! state), and a retry with the same id gets the recorded outcome without running the
//! plugin again. Records expire deterministically by entry timestamp after
//! [`DEDUP_WINDOW_MS`]; a time-ordered index makes expiry a bounded scan per entry.
//! Plugins cannot see or touch keys under [`RESERVED_PREFIX`] (see `KvView`).

use super::fsm::{CommandOutcome, FsmError, KvReader, WriteSet};
use crate::ids::GroupId;

/// Keys starting with these bytes belong to the host, not to the plugin.
pub const RESERVED_PREFIX: &[u8] = b"\xff\xff";
const RECORD_PREFIX: &[u8] = b"\xff\xffflotilla/req/";
const EXPIRY_PREFIX: &[u8] = b"\xff\xffflotilla/exp/";
/// How long a request id is remembered, by the leader-assigned entry timestamp.
pub const DEDUP_WINDOW_MS: u64 = 10 * 60 * 1000;
/// Expired records removed per applied entry, at most (expiry keeps up over entries).
const EXPIRE_PER_ENTRY_MAX: usize = 256;

fn record_key(request_id: &str) -> Vec<u8> {
    [RECORD_PREFIX, request_id.as_bytes()].concat()
}

fn expiry_key(ts: u64, request_id: &str) -> Vec<u8> {
    [EXPIRY_PREFIX, &ts.to_be_bytes(), request_id.as_bytes()].concat()
}

fn encode(outcome: &CommandOutcome) -> Vec<u8> {
    match outcome {
        Ok(out) => [&[0u8][..], out].concat(),
        Err(FsmError::Invalid(m) | FsmError::KvLimit(m)) => [&[1u8][..], m.as_bytes()].concat(),
        Err(e) => [&[2u8][..], e.to_string().as_bytes()].concat(),
    }
}

fn decode(bytes: &[u8]) -> CommandOutcome {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    match bytes.split_first() {
        Some((0, out)) => Ok(out.to_vec()),
        Some((1, m)) => Err(FsmError::Invalid(text(m))),
        Some((_, m)) => Err(FsmError::Rejected(format!(
            "(recorded outcome of an earlier attempt) {}",
            text(m)
        ))),
        None => Err(FsmError::Rejected("empty recorded outcome".into())),
    }
}

/// The recorded outcome of `request_id` in `group`, if it applied before.
pub fn lookup(
    reader: &dyn KvReader,
    pending: &WriteSet,
    group: GroupId,
    request_id: &str,
) -> Result<Option<CommandOutcome>, FsmError> {
    let key = record_key(request_id);
    if let Some(v) = pending.get(&key) {
        return Ok(v.as_deref().map(|b| decode(&b[8.min(b.len())..])));
    }
    let v = reader.get(group, &key).map_err(FsmError::Storage)?;
    Ok(v.map(|b| decode(&b[8.min(b.len())..])))
}

/// Records `outcome` for `request_id` at entry time `ts`.
pub fn record(writes: &mut WriteSet, ts: u64, request_id: &str, outcome: &CommandOutcome) {
    let value = [&ts.to_be_bytes()[..], &encode(outcome)].concat();
    writes.insert(record_key(request_id), Some(value));
    writes.insert(expiry_key(ts, request_id), Some(Vec::new()));
}

/// Entry time between two expiry passes of a group whose entries record nothing.
pub const EXPIRY_EVERY_MS: u64 = 1_000;

/// Whether an entry runs an expiry pass: one that records outcomes always does (so
/// expiry keeps pace with recording, at most [`EXPIRE_PER_ENTRY_MAX`] each), others
/// only when their entry time crosses into a new [`EXPIRY_EVERY_MS`] period. Both
/// depend only on the log, so every replica expires at the same indexes and their
/// states stay identical; the scan of the reserved prefix was the largest single cost
/// of applying an entry without request ids.
pub fn expiry_due(records: bool, previous_ms: u64, now_ms: u64) -> bool {
    records || previous_ms / EXPIRY_EVERY_MS != now_ms / EXPIRY_EVERY_MS
}

/// Removes records older than the window at entry time `now_ms` (bounded per call).
pub fn expire(
    reader: &dyn KvReader,
    writes: &mut WriteSet,
    group: GroupId,
    now_ms: u64,
) -> Result<(), FsmError> {
    let cutoff = now_ms.saturating_sub(DEDUP_WINDOW_MS);
    let end = [EXPIRY_PREFIX, &cutoff.to_be_bytes()].concat();
    for item in reader
        .scan(group, EXPIRY_PREFIX, Some(&end))
        .take(EXPIRE_PER_ENTRY_MAX)
    {
        let (k, _) = item.map_err(FsmError::Storage)?;
        let Some(id) = k.get(EXPIRY_PREFIX.len() + 8..) else {
            continue;
        };
        let id = String::from_utf8_lossy(id).into_owned();
        writes.insert(record_key(&id), None);
        writes.insert(k, None);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raftstore::mem_kv::MemKv;

    #[test]
    fn expiry_runs_for_recording_entries_and_once_per_period_otherwise() {
        assert!(expiry_due(true, 5_000, 5_001));
        assert!(!expiry_due(false, 5_000, 5_999));
        assert!(expiry_due(false, 5_999, 6_000));
        assert!(expiry_due(false, 0, 1_700_000_000_000));
    }

    #[test]
    fn outcomes_round_trip_and_expire() {
        let kv = MemKv::default();
        let g = GroupId(1);
        let mut w = WriteSet::new();
        record(&mut w, 1_000, "r1", &Ok(b"out".to_vec()));
        record(&mut w, 1_000, "r2", &Err(FsmError::Invalid("bad".into())));
        assert_eq!(
            lookup(&kv, &w, g, "r1").ok().flatten(),
            Some(Ok(b"out".to_vec()))
        );
        assert_eq!(
            lookup(&kv, &w, g, "r2").ok().flatten(),
            Some(Err(FsmError::Invalid("bad".into())))
        );
        for (k, v) in &w {
            if let Some(v) = v {
                kv.insert(k, v);
            }
        }
        let mut later = WriteSet::new();
        expire(&kv, &mut later, g, 1_000 + DEDUP_WINDOW_MS - 1).expect("expire");
        assert!(later.is_empty(), "expired too early");
        expire(&kv, &mut later, g, 1_001 + DEDUP_WINDOW_MS).expect("expire");
        assert_eq!(later.get(&record_key("r1")), Some(&None));
        assert_eq!(later.get(&record_key("r2")), Some(&None));
        assert_eq!(lookup(&kv, &WriteSet::new(), g, "r3").ok().flatten(), None);
    }
}
