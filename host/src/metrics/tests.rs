//! The registry encodes every family; handles move what the text shows; the raft core
//! counts real proposals, fsyncs and applies; the HTTP endpoint serves the text.

use std::sync::Arc;
use std::time::Duration;

use super::scrape::{self, Samples, ScrapeError};
use super::*;
use crate::ids::{GroupId, NodeId, PeerId, PluginDigest};
use crate::raftstore::fsm::{
    CommandOutcome, EntryContext, FsmError, KvView, QueryContext, StateMachineHost,
};
use crate::raftstore::{PeerSpec, RaftError, RaftStore, StoreDeps, SystemClock};
use crate::storage::mem::MemStore;

fn node_metrics() -> NodeMetrics {
    let mut m = NodeMetrics::new();
    m.add_transport(Arc::default(), Arc::default());
    m
}

fn samples(m: &NodeMetrics) -> Samples {
    Samples::parse(&m.encode().expect("encodes"))
}

#[test]
fn encoding_holds_every_family() {
    let text = node_metrics().encode().expect("encodes");
    for family in [
        "# TYPE flotilla_proposals counter",
        "flotilla_proposals_total 0",
        "flotilla_proposals_failed_total{reason=\"not_leader\"} 0",
        "flotilla_store_rounds_total 0",
        "flotilla_raft_readies_total 0",
        "# TYPE flotilla_fsync_duration_seconds histogram",
        "flotilla_fsync_duration_seconds_bucket{le=\"+Inf\"} 0",
        "flotilla_fsync_entries_count 0",
        "flotilla_fsync_groups_count 0",
        "flotilla_raft_messages_sent_total 0",
        "flotilla_groups 0",
        "flotilla_groups_led 0",
        "flotilla_proposals_pending 0",
        "flotilla_groups_hibernating 0",
        "flotilla_entries_applied_total 0",
        "flotilla_commands_applied_total 0",
        "flotilla_apply_duration_seconds_count 0",
        "flotilla_plugin_fuel_consumed_total{call=\"apply\"} 0",
        "flotilla_plugin_fuel_consumed_total{call=\"query\"} 0",
        "flotilla_plugin_apply_duration_seconds_count 0",
        "flotilla_plugin_query_duration_seconds_count 0",
        "flotilla_consistency_checks_total 0",
        "flotilla_replica_divergences_total 0",
        "flotilla_batch_streams 0",
        "# TYPE flotilla_batch_items histogram",
        "flotilla_batch_items_count 0",
        "# TYPE flotilla_transport_batch_messages histogram",
        "flotilla_transport_batch_messages_bucket{le=\"+Inf\"} 0",
        "flotilla_transport_messages_dropped_total{reason=\"queue_full\"} 0",
        "flotilla_transport_messages_received_total 0",
        "flotilla_snapshots_sent_total 0",
        "flotilla_snapshots_received_total 0",
        "flotilla_snapshot_sent_bytes_total 0",
        "flotilla_snapshot_received_bytes_total 0",
        "# EOF",
    ] {
        assert!(text.contains(family), "{family:?} missing from:\n{text}");
    }
}

#[test]
fn handles_move_what_is_encoded() {
    let m = node_metrics();
    m.raft.observe_fsync(0.003, 2, 5);
    m.raft.observe_fsync(0.000_01, 1, 1);
    m.raft.proposals.inc_by(7);
    m.raft.proposals_failed.busy.inc();
    m.plugin
        .record_apply(1234, std::time::Duration::from_micros(50));
    m.ops.replica_divergences.inc();
    let s = samples(&m);
    let fsync = s
        .histogram("flotilla_fsync_duration_seconds")
        .expect("fsync histogram");
    assert_eq!(fsync.count, 2.0);
    assert!((fsync.sum - 0.003_01).abs() < 1e-9, "{fsync:?}");
    // One observation in the first bucket (20 µs), one at 3 ms.
    assert_eq!(fsync.buckets.first().map(|b| b.1), Some(1.0));
    let p99 = fsync.quantile(0.99).expect("observations");
    assert!(p99 > 0.002 && p99 <= 0.005_12, "{p99}");
    let entries = s.histogram("flotilla_fsync_entries").expect("entries");
    assert_eq!(entries.mean(), Some(3.0));
    assert_eq!(s.value("flotilla_proposals_total"), 7.0);
    assert_eq!(s.total("flotilla_proposals_failed_total"), 1.0);
    assert_eq!(
        s.value("flotilla_plugin_fuel_consumed_total{call=\"apply\"}"),
        1234.0
    );
    assert_eq!(s.value("flotilla_replica_divergences_total"), 1.0);
}

#[test]
fn transport_stats_are_read_at_scrape_time() {
    let sent = Arc::new(crate::transport::TransportStats::default());
    let received = Arc::new(crate::transport::TransportStats::default());
    let mut m = NodeMetrics::new();
    m.add_transport(sent.clone(), received.clone());
    sent.record_batch(1);
    sent.record_batch(5);
    sent.record_batch(1000);
    crate::transport::stats::bump(&sent.snapshot_bytes_sent, 4096);
    crate::transport::stats::bump(&received.snapshot_bytes_received, 512);
    let s = samples(&m);
    let batches = s
        .histogram("flotilla_transport_batch_messages")
        .expect("batch histogram");
    assert_eq!((batches.count, batches.sum), (3.0, 1006.0));
    assert_eq!(batches.buckets.first(), Some(&(1.0, 1.0)));
    assert_eq!(batches.buckets.last(), Some(&(f64::INFINITY, 3.0)));
    assert_eq!(s.value("flotilla_snapshot_sent_bytes_total"), 4096.0);
    assert_eq!(s.value("flotilla_snapshot_received_bytes_total"), 512.0);
}

#[test]
fn parsing_reads_labels_with_spaces_and_skips_comments() {
    let s = Samples::parse(
        "# HELP x a help\nx_total{a=\"b c\",d=\"}\"} 3 1700000000\ny 1.5e3\nbad\nz{le=\"+Inf\"} +Inf\n",
    );
    assert_eq!(s.value("x_total{a=\"b c\",d=\"}\"}"), 3.0);
    assert_eq!(s.value("y"), 1500.0);
    assert!(!s.has("bad"));
    assert_eq!(s.total("x_total"), 3.0);
    assert_eq!(s.total("x"), 0.0, "a prefix of a name is another name");
}

#[test]
fn urls_default_to_the_metrics_path() {
    let u = |s: &str| scrape::normalize_url(s).map(|u| u.to_string());
    assert_eq!(
        u("127.0.0.1:9420").ok().as_deref(),
        Some("http://127.0.0.1:9420/metrics")
    );
    assert_eq!(u("http://h:1/").ok().as_deref(), Some("http://h:1/metrics"));
    assert_eq!(u("http://h:1/m").ok().as_deref(), Some("http://h:1/m"));
    assert!(matches!(u("https://h:1/"), Err(ScrapeError::BadUrl { .. })));
}

#[tokio::test]
async fn the_endpoint_serves_the_registry_over_http() {
    let m = Arc::new(node_metrics());
    m.raft.proposals.inc_by(3);
    let listener = http::bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(http::serve(listener, m.clone()));
    let text = scrape::fetch(&addr.to_string()).await.expect("scrape");
    assert_eq!(Samples::parse(&text).value("flotilla_proposals_total"), 3.0);
    let missing = scrape::fetch(&format!("http://{addr}/nothing")).await;
    assert!(
        matches!(missing, Err(ScrapeError::Status { status: 404, .. })),
        "{missing:?}"
    );
    server.abort();
}

/// Accepts every command.
struct Accept;

impl StateMachineHost for Accept {
    fn apply_entry(
        &self,
        _: PluginDigest,
        _: EntryContext,
        commands: &[&[u8]],
        mut kv: KvView,
    ) -> (KvView, Vec<CommandOutcome>) {
        let mut out = Vec::new();
        for c in commands {
            let outcome = if *c == b"fail" {
                Err(FsmError::Rejected("fail".into()))
            } else {
                Ok(Vec::new())
            };
            out.push(kv.settle(outcome));
        }
        (kv, out)
    }

    fn query(&self, _: PluginDigest, _: QueryContext, _: &[u8], _: KvView) -> CommandOutcome {
        Ok(Vec::new())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_raft_core_counts_proposals_fsyncs_and_applies() {
    let m = node_metrics();
    let mem = Arc::new(MemStore::default());
    let (store, threads) = RaftStore::start(StoreDeps {
        log: mem.clone(),
        apply: mem.clone(),
        fsm: Arc::new(Accept),
        clock: Arc::new(SystemClock),
        fatal: Arc::new(|why: &str| panic!("fatal: {why}")),
        node: NodeId(1),
        transport: Arc::new(crate::raftstore::transport::NoTransport),
        metrics: m.raft.clone(),
    })
    .expect("threads start");
    store
        .start_peer(PeerSpec {
            group: GroupId(1),
            peer: PeerId(1),
            voters: vec![PeerId(1)],
            plugin: PluginDigest::of(b"accept"),
            campaign: false,
        })
        .await
        .expect("start");
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .propose(GroupId(1), b"x".to_vec(), String::new())
                .await
        }));
    }
    for t in tasks {
        t.await.expect("join").expect("applied");
    }
    let rejected = store
        .propose(GroupId(1), b"fail".to_vec(), String::new())
        .await;
    assert!(matches!(rejected, Err(RaftError::Fsm(_))), "{rejected:?}");
    let missing = store
        .propose(GroupId(9), b"x".to_vec(), String::new())
        .await;
    assert!(missing.is_err());

    // The apply loop answers before it adds its batch to the counters.
    let mut s = samples(&m);
    for _ in 0..50 {
        if s.value("flotilla_commands_applied_total") >= 21.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        s = samples(&m);
    }
    assert_eq!(s.value("flotilla_proposals_total"), 22.0);
    assert_eq!(
        s.value("flotilla_proposals_failed_total{reason=\"plugin\"}"),
        1.0
    );
    assert_eq!(
        s.value("flotilla_proposals_failed_total{reason=\"other\"}"),
        1.0
    );
    assert!(s.value("flotilla_commands_applied_total") >= 21.0, "{s:?}");
    let entries = s.value("flotilla_entries_applied_total");
    assert!(entries >= 1.0, "{s:?}");
    let fsync = s
        .histogram("flotilla_fsync_duration_seconds")
        .expect("fsync histogram");
    assert!(fsync.count >= 1.0, "{fsync:?}");
    let written = s
        .histogram("flotilla_fsync_entries")
        .expect("entries histogram");
    assert!(written.sum >= entries, "{written:?} < {entries} applied");
    assert!(s.value("flotilla_store_rounds_total") >= fsync.count);
    assert!(
        s.histogram("flotilla_apply_duration_seconds")
            .is_some_and(|h| h.count >= 1.0)
    );

    // The gauges are recounted once a second.
    let mut gauges = (0.0, 0.0);
    for _ in 0..40 {
        let s = samples(&m);
        gauges = (s.value("flotilla_groups"), s.value("flotilla_groups_led"));
        if gauges == (1.0, 1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(gauges, (1.0, 1.0));

    store.shutdown();
    tokio::task::spawn_blocking(move || threads.join())
        .await
        .expect("join");
}
