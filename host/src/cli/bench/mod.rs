//! `flotilla bench`: concurrent closed-loop clients against Flotilla (`kv` groups) or
//! etcd (its KV gRPC API), writing (`put`) or reading linearizably (`get` of keys written
//! just before) for a fixed time; reports operations per second, p50/p99/p999 latency
//! and every error, as a table or as JSON (`--output json`).
//!
//! - `client.rs`: one client's connection and its put/get, for either system
//! - `flotilla.rs`, `etcd.rs`: setting each system up (groups, leaders, endpoints)
//! - `mux.rs`: many clients' requests on one `Batch` stream (`--api batch`)
//! - `kv_wire.rs`: the `kv` plugin's put and get in JSON or the binary codec (`--codec`)
//! - `load.rs`: the preload and the timed closed loop
//! - `report.rs`: the summary
//! - `timeline.rs`: the run in slices of time (`--interval`)

mod client;
mod cpu;
mod etcd;
mod flotilla;
mod kv_wire;
mod load;
mod mux;
mod report;
#[cfg(test)]
mod tests;
mod timeline;

use std::sync::Arc;
use std::time::Duration;

use super::ClientOpts;
use super::output::{OutputFormat, print_json};
pub use etcd::EtcdRoute;

/// Which system to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// Flotilla nodes (`--endpoint`), through the `kv` plugin.
    Flotilla,
    /// etcd v3 members (`--endpoints`), through its KV API.
    Etcd,
}

/// How Flotilla clients send their requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Api {
    /// One unary `Propose` or `Query` call per request (what etcd's clients do).
    Unary,
    /// Each request is an item of a `Batch` stream, one stream per connection shared by
    /// its clients (what TiKV's client does); each client still waits for its result
    /// before its next request.
    Batch,
}

/// How the bench encodes the `kv` plugin's commands and queries (Flotilla only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WireCodec {
    /// JSON, as people and scripts write them (`{"set":{"key":...,"value":...}}`).
    Json,
    /// The SDK's compact binary codec (a 0x00 byte, then postcard): to the plugin what
    /// protobuf is to etcd's KV API.
    Binary,
}

impl WireCodec {
    fn sdk(self) -> flotilla_sdk::Codec {
        match self {
            WireCodec::Json => flotilla_sdk::Codec::Json,
            WireCodec::Binary => flotilla_sdk::Codec::Binary,
        }
    }

    fn name(self) -> &'static str {
        match self {
            WireCodec::Json => "json",
            WireCodec::Binary => "binary",
        }
    }
}

/// What each client does in its loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Puts of new keys.
    Write,
    /// Linearizable gets (Flotilla: ReadIndex query; etcd: Range with
    /// serializable=false) of keys each client wrote before the clock started.
    Read,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Write => "write",
            Workload::Read => "read",
        }
    }
}

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
    /// Groups to spread the clients over (created fresh, running `kv`; Flotilla only).
    #[arg(long, default_value_t = 1)]
    pub groups: usize,
    /// gRPC connections per node (or etcd member) shared by the clients.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// The system to drive.
    #[arg(long, value_enum, default_value_t = Target::Flotilla)]
    pub target: Target,
    /// etcd client endpoints, HOST:PORT,... (with --target etcd).
    #[arg(long, value_parser = etcd::parse_endpoints_arg)]
    pub endpoints: Option<etcd::Endpoints>,
    /// Where etcd requests go: the leader (found with Maintenance.Status) or spread over
    /// the endpoints round-robin.
    #[arg(long, value_enum, default_value_t = EtcdRoute::Leader)]
    pub etcd_route: EtcdRoute,
    /// Writes, or linearizable reads.
    #[arg(long, value_enum, default_value_t = Workload::Write)]
    pub workload: Workload,
    /// Keys each client writes before a read run and then reads in turn.
    #[arg(long, default_value_t = 16)]
    pub read_keys: u64,
    /// How Flotilla clients send requests: unary calls, or items of shared `Batch`
    /// streams.
    #[arg(long, value_enum, default_value_t = Api::Unary)]
    pub api: Api,
    /// How Flotilla clients encode the kv plugin's commands and queries: JSON, or the
    /// SDK's compact binary codec.
    #[arg(long, value_enum, default_value_t = WireCodec::Json)]
    pub codec: WireCodec,
    /// Keep the groups the bench created (by default they are deleted afterwards).
    #[arg(long)]
    pub keep_groups: bool,
    /// Server processes whose CPU to report (PID,...; Linux): `--output json` then
    /// carries `cpu_ticks`, the user + system clock ticks they and the bench itself
    /// spent during the timed run only (not while creating groups or preloading keys),
    /// with the servers' ticks also split by thread name (`server_threads`).
    #[arg(long, value_delimiter = ',', value_name = "PID,...")]
    pub cpu_pids: Vec<u32>,
    /// Also report the run in slices of this length, e.g. 1s: throughput, p50, p99 and
    /// the slowest operation of each, to see when a tail happened.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub interval: Option<Duration>,
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
    anyhow::ensure!(
        a.read_keys > 0 && a.read_keys <= 100_000,
        "--read-keys must be 1..=100000"
    );
    if let Some(interval) = a.interval {
        timeline::check_interval(interval, a.duration).map_err(anyhow::Error::msg)?;
    }
    let values = Arc::new(load::Values::new(a.value_size));
    let (clients, groups, routing) = match a.target {
        Target::Flotilla => {
            anyhow::ensure!(
                a.endpoints.is_none(),
                "--endpoints is for --target etcd; Flotilla takes --endpoint"
            );
            let wire = kv_wire::KvWire::new(a.codec.sdk())
                .map_err(|e| anyhow::anyhow!("cannot encode the kv plugin's messages: {e}"))?;
            let s = flotilla::setup(
                &a.opts.endpoint,
                a.groups,
                a.clients,
                a.connections,
                a.api,
                &wire,
            )
            .await?;
            let routing = format!(
                "each group's leader node ({}/{} groups; the rest via {})",
                s.routed,
                s.groups.len(),
                a.opts.endpoint
            );
            (s.clients, s.groups, routing)
        }
        Target::Etcd => {
            anyhow::ensure!(
                a.groups == 1,
                "--groups is for Flotilla; etcd is one raft group"
            );
            anyhow::ensure!(
                a.api == Api::Unary,
                "--api batch is for Flotilla; etcd's KV API has unary calls only"
            );
            anyhow::ensure!(
                a.codec == WireCodec::Json,
                "--codec is for Flotilla's kv plugin; etcd's KV API speaks protobuf"
            );
            let endpoints = a.endpoints.clone().map(|e| e.0).unwrap_or_default();
            let s = etcd::setup(&endpoints, a.connections, a.clients, a.etcd_route).await?;
            let routing = match (a.etcd_route, &s.leader) {
                (EtcdRoute::Leader, Some(l)) => format!("the etcd leader, {l}"),
                (_, l) => format!(
                    "{} round-robin (leader: {})",
                    endpoints.join(","),
                    l.as_deref().unwrap_or("unknown")
                ),
            };
            (s.clients, Vec::new(), routing)
        }
    };
    let metrics_before = a.metrics.scrape().await?;
    let result = measure(&a, clients, &values).await;
    let (result, cpu_ticks) = match result {
        Ok((outcome, ticks)) => (Ok(outcome), ticks),
        Err(e) => (Err(e), serde_json::Value::Null),
    };
    let node_metrics = a.metrics.summary(metrics_before).await;
    if !groups.is_empty()
        && !a.keep_groups
        && let Err(e) = flotilla::cleanup(&a.opts.endpoint, &groups).await
    {
        eprintln!("warning: {e:#}");
    }
    let outcome = result?;
    let summary = report::Summary::new(
        report::Case {
            target: match a.target {
                Target::Flotilla => "flotilla",
                Target::Etcd => "etcd",
            },
            workload: a.workload.name(),
            // etcd runs only unary (checked above).
            api: match a.api {
                Api::Unary => "unary",
                Api::Batch => "batch",
            },
            codec: match a.target {
                Target::Flotilla => a.codec.name(),
                Target::Etcd => "protobuf",
            },
            clients: a.clients,
            groups: groups.len().max(1),
            value_size: a.value_size,
            routing,
        },
        outcome,
    );
    match a.opts.output {
        OutputFormat::Json => {
            let mut json = summary.json();
            json["node_metrics"] = node_metrics
                .as_ref()
                .map_or(serde_json::Value::Null, |m| m.to_json());
            json["cpu_ticks"] = cpu_ticks;
            print_json(&json)
        }
        OutputFormat::Table => {
            println!("{}", summary.table());
            if let Some(m) = &node_metrics {
                println!("{}", m.render());
            }
        }
    }
    Ok(())
}

/// Preloads keys for a read run, then runs the timed load; with `--cpu-pids`, also the
/// CPU ticks spent during the timed load alone (`null` without).
async fn measure(
    a: &BenchArgs,
    clients: Vec<client::Client>,
    values: &Arc<load::Values>,
) -> anyhow::Result<(load::Outcome, serde_json::Value)> {
    let clients = match a.workload {
        Workload::Write => clients,
        Workload::Read => load::preload(clients, a.read_keys, values).await?,
    };
    let cpu_before = if a.cpu_pids.is_empty() {
        None
    } else {
        Some(cpu::sample(&a.cpu_pids)?)
    };
    let outcome = load::run(
        clients,
        a.workload,
        a.duration,
        values,
        a.read_keys,
        a.interval,
    )
    .await?;
    let ticks = match cpu_before {
        Some(before) => cpu::spent(before, cpu::sample(&a.cpu_pids)?),
        None => serde_json::Value::Null,
    };
    Ok((outcome, ticks))
}
