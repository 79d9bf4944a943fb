//! Queries: read-only, fresh instance, logs tagged with group and applied index.

use std::io::Write;
use std::sync::{Arc, Mutex};

use super::fixture::{
    GROUP, MapReader, apply_view, entry, guest, query_ctx, query_view, runtime_with,
};
use crate::limits;
use crate::raftstore::fsm::{FsmError, KvReader, StateMachineHost};

#[test]
fn a_query_reads_committed_state() {
    let (runtime, digest, _dir) = runtime_with(&guest());
    let reader = Arc::new(MapReader::default());
    let (view, _) = runtime.apply_entry(digest, entry(1), &[b"wk"], apply_view(&reader));
    reader.commit(view);
    let answer = runtime.query(digest, query_ctx(1), b"gk", query_view(&reader));
    assert_eq!(answer, Ok(b"k".to_vec()));
    let missing = runtime.query(digest, query_ctx(1), b"gz", query_view(&reader));
    assert_eq!(missing, Err(FsmError::Rejected("missing".into())));
}

#[test]
fn a_batch_of_queries_answers_each_as_alone_and_a_trap_spoils_none_of_the_others() {
    let (runtime, digest, _dir) = runtime_with(&guest());
    let reader = Arc::new(MapReader::default());
    let (view, _) = runtime.apply_entry(digest, entry(1), &[b"wk", b"wq"], apply_view(&reader));
    reader.commit(view);
    // A miss, a write (misuse), a trap, memory exhaustion and a refusal between reads.
    let requests: [&[u8]; 9] = [b"gk", b"gz", b"wn", b"gq", b"x", b"gk", b"m", b"r", b"gq"];
    let shared: Arc<dyn KvReader> = reader.clone();
    let batch = runtime.query_batch(digest, query_ctx(1), &requests, shared);
    let alone: Vec<_> = requests
        .iter()
        .map(|r| runtime.query(digest, query_ctx(1), r, query_view(&reader)))
        .collect();
    assert_eq!(batch, alone);
    assert_eq!(batch[5], Ok(b"k".to_vec()));
    assert_eq!(batch[8], Ok(b"q".to_vec()));
    assert_eq!(batch[4], Err(FsmError::Panicked("boom".into())));
    assert_eq!(reader.value("n"), None);
}

#[test]
fn a_query_that_writes_is_kv_misuse() {
    let (runtime, digest, _dir) = runtime_with(&guest());
    let reader = Arc::new(MapReader::default());
    let answer = runtime.query(digest, query_ctx(1), b"wk", query_view(&reader));
    assert!(matches!(answer, Err(FsmError::KvMisuse(_))), "{answer:?}");
    assert_eq!(reader.value("k"), None);
}

/// Collects what the fmt subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `body` with a subscriber that records every event; returns the guest's lines.
fn guest_lines(body: impl FnOnce()) -> Vec<String> {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, body);
    let text = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf8");
    text.lines()
        .filter(|l| l.contains("flotilla::guest"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn guest_logs_carry_group_and_index() {
    let (runtime, digest, _dir) = runtime_with(&guest());
    let reader = Arc::new(MapReader::default());
    let lines = guest_lines(|| {
        let (_, outcomes) = runtime.apply_entry(digest, entry(42), &[b"h"], apply_view(&reader));
        assert_eq!(outcomes, [Ok(Vec::new())]);
        let answer = runtime.query(digest, query_ctx(41), b"h", query_view(&reader));
        assert_eq!(answer, Ok(Vec::new()));
    });
    assert_eq!(lines.len(), 2, "{lines:?}");
    let group = format!("group={}", GROUP.0);
    assert!(
        lines[0].contains(&group) && lines[0].contains("index=42"),
        "{lines:?}"
    );
    assert!(
        lines[1].contains(&group) && lines[1].contains("index=41"),
        "{lines:?}"
    );
    assert!(
        lines.iter().all(|l| l.contains("hello from the guest")),
        "{lines:?}"
    );
}

#[test]
fn a_chatty_guest_is_cut_off_per_call() {
    let (runtime, digest, _dir) = runtime_with(&guest());
    let reader = Arc::new(MapReader::default());
    let lines = guest_lines(|| {
        let (_, outcomes) =
            runtime.apply_entry(digest, entry(1), &[b"v", b"v"], apply_view(&reader));
        assert_eq!(outcomes, [Ok(Vec::new()), Ok(Vec::new())]);
    });
    let per_call = limits::GUEST_LOG_LINES_PER_CALL_MAX as usize + 1;
    assert_eq!(lines.len(), 2 * per_call, "{lines:?}");
    let dropped: Vec<_> = lines.iter().filter(|l| l.contains("are dropped")).collect();
    assert_eq!(dropped.len(), 2, "{lines:?}");
}
