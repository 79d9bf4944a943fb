//! `flotilla bench`: concurrent clients proposing `kv` puts against a node for a fixed
//! time; reports acknowledged writes per second and p50/p99/p999 latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};

use super::ClientOpts;
use super::connect::{channel, status_error};
use super::output::{OutputFormat, print_json};
use super::plugin::deploy_bytes;
use crate::examples;
use crate::proto::v1::admin_client::AdminClient;
use crate::proto::v1::client_client::ClientClient;
use crate::proto::v1::{CreateGroupRequest, ProposeRequest};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Concurrent clients, each with one request in flight.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Bytes per value.
    #[arg(long, default_value_t = 16)]
    pub value_size: usize,
    /// How long to run, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Groups to spread the clients over (created fresh, running `kv`).
    #[arg(long, default_value_t = 1)]
    pub groups: usize,
    /// gRPC connections shared by the clients.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    #[command(flatten)]
    pub metrics: super::bench_metrics::MetricsArgs,
    #[command(flatten)]
    pub opts: ClientOpts,
}

pub async fn run(a: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.clients > 0 && a.clients <= 4096,
        "--clients must be 1..=4096"
    );
    anyhow::ensure!(
        a.groups > 0 && a.groups <= 10_000,
        "--groups must be 1..=10000"
    );
    anyhow::ensure!(
        a.value_size <= crate::limits::COMMAND_SIZE_BYTES_MAX / 2,
        "--value-size is too large"
    );
    let (info, _) = deploy_bytes(&a.opts.endpoint, "kv", examples::KV.to_vec(), false).await?;
    let plugin = format!("kv@{}", info.version);
    let ch = channel(&a.opts.endpoint).await?;
    let mut admin = AdminClient::new(ch);
    let mut groups = Vec::with_capacity(a.groups);
    for _ in 0..a.groups {
        let g = admin
            .create_group(CreateGroupRequest {
                plugin: plugin.clone(),
                replicas: 0,
            })
            .await
            .map_err(status_error)?
            .into_inner()
            .group
            .context("no group in the answer")?;
        groups.push(g.group_id);
    }
    // Like a smart client, send each group's writes to its leader's node (found from
    // `cluster status`); groups whose leader is unknown go to --endpoint (forwarded).
    let leaders = leader_addrs(&a.opts.endpoint, &groups).await;
    let mut pools: std::collections::HashMap<String, Vec<tonic::transport::Channel>> =
        std::collections::HashMap::new();
    for addr in leaders
        .values()
        .cloned()
        .chain(std::iter::once(a.opts.endpoint.clone()))
    {
        if pools.contains_key(&addr) {
            continue;
        }
        let mut channels = Vec::new();
        for _ in 0..a.connections.max(1) {
            channels.push(channel(&addr).await?);
        }
        pools.insert(addr, channels);
    }
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let metrics_before = a.metrics.scrape().await?;
    let start = Instant::now();
    let deadline = start + a.duration;
    let value = "v".repeat(a.value_size);
    let mut tasks = Vec::new();
    for i in 0..a.clients {
        let group = groups[i % groups.len()];
        let addr = leaders.get(&group).unwrap_or(&a.opts.endpoint);
        let channels = pools.get(addr).context("no connection pool")?;
        let mut c = ClientClient::new(channels[i % channels.len()].clone());
        let (done, errors, value) = (done.clone(), errors.clone(), value.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut n = 0u64;
            while Instant::now() < deadline {
                let cmd = format!(r#"{{"put":{{"key":"c{i}-{n}","value":"{value}"}}}}"#);
                let t = Instant::now();
                let r = c
                    .propose(ProposeRequest {
                        group_id: group,
                        command: cmd.into_bytes(),
                        request_id: String::new(),
                    })
                    .await;
                match r {
                    Ok(_) => {
                        hist.record(t.elapsed().as_micros().max(1) as u64)?;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                n += 1;
            }
            anyhow::Ok(hist)
        }));
    }
    let bar = ProgressBar::new(a.duration.as_secs().max(1));
    if let Ok(s) = ProgressStyle::with_template("bench [{bar:30}] {pos}/{len}s {msg}") {
        bar.set_style(s.progress_chars("=> "));
    }
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let secs = start.elapsed().as_secs_f64();
        bar.set_position(start.elapsed().as_secs());
        bar.set_message(format!(
            "{:.0} writes/s",
            done.load(Ordering::Relaxed) as f64 / secs
        ));
    }
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for t in tasks {
        total.add(t.await??)?;
    }
    bar.finish_and_clear();
    let elapsed = start.elapsed().as_secs_f64();
    let node_metrics = a.metrics.summary(metrics_before).await;
    let ok = total.len();
    let ms = |q: f64| total.value_at_quantile(q) as f64 / 1000.0;
    let summary = serde_json::json!({
        "clients": a.clients, "groups": a.groups, "value_size": a.value_size,
        "duration_s": elapsed, "writes": ok, "errors": errors.load(Ordering::Relaxed),
        "writes_per_s": ok as f64 / elapsed,
        "p50_ms": ms(0.5), "p99_ms": ms(0.99), "p999_ms": ms(0.999),
        "node_metrics": node_metrics.as_ref().map(|m| m.to_json()),
    });
    match a.opts.output {
        OutputFormat::Json => print_json(&summary),
        OutputFormat::Table => println!(
            "{} clients, {} group(s), {}-byte values, {:.1}s: {:.0} writes/s acknowledged ({} errors); latency p50 {:.2} ms, p99 {:.2} ms, p999 {:.2} ms",
            a.clients,
            a.groups,
            a.value_size,
            elapsed,
            ok as f64 / elapsed,
            errors.load(Ordering::Relaxed),
            ms(0.5),
            ms(0.99),
            ms(0.999)
        ),
    }
    if let (OutputFormat::Table, Some(m)) = (a.opts.output, &node_metrics) {
        println!("{}", m.render());
    }
    Ok(())
}

/// Group → the address of the node that leads it, once leaders are elected (best effort).
async fn leader_addrs(endpoint: &str, groups: &[u64]) -> std::collections::HashMap<u64, String> {
    let mut out = std::collections::HashMap::new();
    let Ok(ch) = channel(endpoint).await else {
        return out;
    };
    let mut c = crate::proto::v1::cluster_client::ClusterClient::new(ch);
    for _ in 0..50 {
        if let Ok(st) = c
            .cluster_status(crate::proto::v1::ClusterStatusRequest {})
            .await
        {
            let st = st.into_inner();
            out.clear();
            for g in &st.groups {
                if let Some(n) = st.nodes.iter().find(|n| n.node_id == g.leader_node_id) {
                    out.insert(g.group_id, n.addr.clone());
                }
            }
            if groups.iter().all(|g| out.contains_key(g)) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    out
}
