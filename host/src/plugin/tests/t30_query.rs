//! Queries: read-only, fresh instance, logs tagged with group and applied index.

use std::io::Write;
use std::sync::{Arc, Mutex};

use super::fixture::{
    GROUP, MapReader, apply_view, entry, guest, query_ctx, query_view, runtime_with,
};
use crate::raftstore::fsm::{FsmError, StateMachineHost};

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

#[test]
fn guest_logs_carry_group_and_index() {
    let (runtime, digest, _dir) = runtime_with(&guest());
    let reader = Arc::new(MapReader::default());
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let (_, outcomes) = runtime.apply_entry(digest, entry(42), &[b"h"], apply_view(&reader));
        assert_eq!(outcomes, [Ok(Vec::new())]);
        let answer = runtime.query(digest, query_ctx(41), b"h", query_view(&reader));
        assert_eq!(answer, Ok(Vec::new()));
    });
    let text = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf8");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("flotilla::guest"))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    let group = format!("group={}", GROUP.0);
    assert!(
        lines[0].contains(&group) && lines[0].contains("index=42"),
        "{text}"
    );
    assert!(
        lines[1].contains(&group) && lines[1].contains("index=41"),
        "{text}"
    );
    assert!(
        lines.iter().all(|l| l.contains("hello from the guest")),
        "{text}"
    );
}
