//! A real node with `--metrics-listen`: its `/metrics` page, fetched over plain HTTP,
//! counts the proposals, applies, fsyncs, plugin fuel and queries it served and the
//! runtime's workers (`--worker-threads`), and `flotilla bench --metrics` summarizes a
//! run from it.

use std::time::Duration;

use flotilla::proto::v1::ReadConsistency;
use flotilla_tests::{NodeProcess, free_port, propose, query};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const BIN: &str = env!("CARGO_BIN_EXE_flotilla");

/// `GET path` with HTTP/1.0 (the server answers with a plain body and closes): returns
/// the status line, the headers and the body.
async fn http_get(addr: &str, path: &str) -> anyhow::Result<(String, String, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw)).await??;
    let raw = String::from_utf8(raw)?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no header end in {raw:?}"))?;
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    Ok((status.to_string(), headers.to_lowercase(), body.to_string()))
}

/// The value of the sample line `series value`.
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn must(body: &str, series: &str) -> anyhow::Result<f64> {
    sample(body, series).ok_or_else(|| anyhow::anyhow!("no {series} in:\n{body}"))
}

async fn node_with_metrics() -> anyhow::Result<(NodeProcess, String)> {
    node_with_metrics_and(&[]).await
}

/// A node serving metrics, started with `extra` server flags too.
async fn node_with_metrics_and(extra: &[&str]) -> anyhow::Result<(NodeProcess, String)> {
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut args = vec!["--metrics-listen".to_string(), metrics.clone()];
    args.extend(extra.iter().map(ToString::to_string));
    let mut node = NodeProcess::unstarted(BIN, format!("127.0.0.1:{}", free_port()), args)?;
    node.restart().await?;
    Ok((node, metrics))
}

/// `--worker-threads N` sizes the node's runtime (a count no machine defaults to here),
/// and the node serves writes on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_threads_flag_sizes_the_node_runtime() -> anyhow::Result<()> {
    // Without the flag a node would run one worker per core: 7 must differ from that.
    let cores = std::thread::available_parallelism()?.get();
    let workers = if cores == 7 { 5 } else { 7 };
    let flag = workers.to_string();
    let (node, metrics) = node_with_metrics_and(&["--worker-threads", &flag]).await?;
    let (_, _, body) = http_get(&metrics, "/metrics").await?;
    assert_eq!(
        must(&body, "flotilla_runtime_workers")?,
        workers as f64,
        "{body}"
    );
    node.deploy("kv", flotilla::examples::KV).await?;
    let group = node.create_group("kv").await?;
    let mut c = node.client().await?;
    propose(&mut c, group, &json!({"set": {"key": "k", "value": "v"}})).await?;
    let got = query(
        &mut c,
        group,
        &json!({"get": {"key": "k"}}),
        ReadConsistency::Linearizable,
    )
    .await?;
    assert_eq!(got, json!({"value": "v"}));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_count_what_the_node_did() -> anyhow::Result<()> {
    let (node, metrics) = node_with_metrics().await?;
    node.deploy("kv", flotilla::examples::KV).await?;
    let group = node.create_group("kv").await?;
    let mut c = node.client().await?;
    // Settle: the group has a leader and has applied something before the baseline.
    propose(
        &mut c,
        group,
        &json!({"put": {"key": "warm", "value": "up"}}),
    )
    .await?;

    let (status, headers, before) = http_get(&metrics, "/metrics").await?;
    assert!(status.contains(" 200 "), "{status}");
    assert!(
        headers.contains("content-type: application/openmetrics-text"),
        "{headers}"
    );
    assert!(before.trim_end().ends_with("# EOF"), "{before}");

    const PROPOSALS: usize = 7;
    for i in 0..PROPOSALS {
        propose(
            &mut c,
            group,
            &json!({"put": {"key": format!("k{i}"), "value": "v"}}),
        )
        .await?;
    }
    let got = query(
        &mut c,
        group,
        &json!({"get": {"key": "k0"}}),
        ReadConsistency::Linearizable,
    )
    .await?;
    assert_eq!(got, json!({"value": "v"}));

    // The apply loop answers a proposal before it adds its batch to the counters: the
    // page catches up within moments (metrics are eventually consistent).
    let mut after = String::new();
    for _ in 0..50 {
        after = http_get(&metrics, "/metrics").await?.2;
        let applied = |body: &str| sample(body, "flotilla_commands_applied_total");
        if applied(&after).unwrap_or(0.0) - applied(&before).unwrap_or(0.0) >= PROPOSALS as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let delta = |series: &str| -> anyhow::Result<f64> {
        Ok(must(&after, series)? - must(&before, series)?)
    };
    let n = PROPOSALS as f64;
    assert!(delta("flotilla_proposals_total")? >= n, "{after}");
    assert!(delta("flotilla_commands_applied_total")? >= n, "{after}");
    assert!(delta("flotilla_entries_applied_total")? >= 1.0, "{after}");
    assert!(
        delta("flotilla_fsync_duration_seconds_count")? >= 1.0,
        "{after}"
    );
    assert!(must(&after, "flotilla_fsync_duration_seconds_count")? > 0.0);
    assert!(delta("flotilla_fsync_entries_sum")? >= 1.0, "{after}");
    assert!(delta("flotilla_store_rounds_total")? >= 1.0, "{after}");
    assert!(
        delta("flotilla_plugin_fuel_consumed_total{call=\"apply\"}")? > 0.0,
        "{after}"
    );
    assert!(
        delta("flotilla_plugin_fuel_consumed_total{call=\"query\"}")? > 0.0,
        "{after}"
    );
    assert!(delta("flotilla_plugin_apply_duration_seconds_count")? >= 1.0);
    assert!(delta("flotilla_plugin_query_duration_seconds_count")? >= 1.0);
    assert_eq!(
        must(&after, "flotilla_proposals_failed_total{reason=\"plugin\"}")?,
        0.0
    );

    // Gauges are recounted every second: the meta group and the kv group, both led here.
    let mut last = String::new();
    for _ in 0..50 {
        let (_, _, body) = http_get(&metrics, "/metrics").await?;
        if sample(&body, "flotilla_groups") == Some(2.0)
            && sample(&body, "flotilla_groups_led") == Some(2.0)
        {
            last.clear();
            break;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(last.is_empty(), "gauges never showed 2 groups led:\n{last}");

    let (status, _, _) = http_get(&metrics, "/nothing").await?;
    assert!(status.contains(" 404 "), "{status}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bench_summarizes_the_node_metrics() -> anyhow::Result<()> {
    let (node, metrics) = node_with_metrics().await?;
    let pid = node
        .pid()
        .ok_or_else(|| anyhow::anyhow!("node not running"))?;
    let summary = node.bench_json(&[
        "--clients",
        "4",
        "--duration",
        "1s",
        "--metrics",
        &metrics,
        "--cpu-pids",
        &pid.to_string(),
        "--interval",
        "500ms",
    ])?;
    let writes = summary["ops"].as_f64().unwrap_or(0.0);
    // The timed second in two slices that hold every write between them.
    let slices = summary["timeline"]["slices"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(slices.len(), 2, "{summary}");
    let in_slices: f64 = slices.iter().filter_map(|s| s["ops"].as_f64()).sum();
    assert_eq!(in_slices, writes, "{summary}");
    assert!(
        slices
            .iter()
            .all(|s| s["max_ms"].as_f64().unwrap_or(0.0) > 0.0),
        "{summary}"
    );
    let m = &summary["node_metrics"];
    assert!(writes > 0.0, "{summary}");
    // The node and the bench both worked during the timed second.
    let ticks = &summary["cpu_ticks"];
    assert!(ticks["servers"].as_u64().unwrap_or(0) > 0, "{summary}");
    assert!(ticks["generator"].as_u64().unwrap_or(0) > 0, "{summary}");
    // ... and their split by thread name names the node's threads.
    let by_thread = ticks["server_threads"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert!(by_thread.contains_key("flotilla-store"), "{summary}");
    let split: u64 = by_thread.values().filter_map(|t| t.as_u64()).sum();
    assert!(split > 0, "{summary}");
    assert!(
        m["proposals"].as_f64().unwrap_or(0.0) >= writes,
        "{summary}"
    );
    assert!(m["fsyncs"].as_f64().unwrap_or(0.0) > 0.0, "{summary}");
    assert!(
        m["writes_per_fsync"].as_f64().unwrap_or(0.0) > 0.0,
        "{summary}"
    );
    assert!(
        m["fuel_per_command"].as_f64().unwrap_or(0.0) > 0.0,
        "{summary}"
    );

    // Asking for metrics from a port where nothing listens fails before the run.
    let stderr = node.cli_refused(&[
        "bench",
        "--duration",
        "1s",
        "--metrics",
        &format!("127.0.0.1:{}", free_port()),
    ])?;
    assert!(stderr.contains("--metrics"), "{stderr}");
    // So does a slice shorter than the bench can time.
    let stderr = node.cli_refused(&["bench", "--duration", "1s", "--interval", "10ms"])?;
    assert!(
        stderr.contains("--interval 10ms is shorter than the minimum of 100ms"),
        "{stderr}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batch_streams_and_their_items_are_counted() -> anyhow::Result<()> {
    let (node, metrics) = node_with_metrics().await?;
    let summary = node.bench_json(&[
        "--api",
        "batch",
        "--clients",
        "8",
        "--connections",
        "2",
        "--duration",
        "1s",
    ])?;
    let writes = summary["ops"].as_f64().unwrap_or(0.0);
    assert!(writes > 0.0, "{summary}");
    assert!(summary["cpu_ticks"].is_null(), "no --cpu-pids: {summary}");
    assert!(summary["timeline"].is_null(), "no --interval: {summary}");
    // The bench's two streams are closed once it exits.
    let mut last = String::new();
    for _ in 0..50 {
        let (_, _, body) = http_get(&metrics, "/metrics").await?;
        if sample(&body, "flotilla_batch_streams") == Some(0.0) {
            let items = must(&body, "flotilla_batch_items_sum")?;
            let messages = must(&body, "flotilla_batch_items_count")?;
            // Every acknowledged write was one item; items travel several per message
            // under 8 clients on 2 streams (at least one message per stream).
            assert!(items >= writes, "{items} items for {writes} writes");
            assert!(messages >= 2.0 && messages <= items, "{messages} messages");
            last.clear();
            break;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(last.is_empty(), "the streams never closed:\n{last}");
    Ok(())
}
