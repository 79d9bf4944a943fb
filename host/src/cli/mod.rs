//! The `flotilla` command line: `server` and `dev` run a node; every other subcommand is
//! a gRPC client of one (`--endpoint`, default `127.0.0.1:7420` or `$FLOTILLA_ENDPOINT`).
//! Listings print tables, or JSON with `--output json`. `anyhow` lives here, at the edge.

mod bench;
mod bench_metrics;
mod cluster;
mod connect;
mod group;
mod group_many;
mod output;
mod plugin;
mod request;
mod run_server;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use output::OutputFormat;

pub const DEFAULT_ENDPOINT: &str = "127.0.0.1:7420";

#[derive(Debug, Parser)]
#[command(
    name = "flotilla",
    version,
    about = "Multi-raft replicated state machines with WebAssembly plugins"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Options every client subcommand takes.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientOpts {
    /// The node to talk to, HOST:PORT.
    #[arg(long, global = true, env = "FLOTILLA_ENDPOINT", default_value = DEFAULT_ENDPOINT)]
    pub endpoint: String,
    /// How to print results.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node.
    Server(run_server::ServerArgs),
    /// Run a local node with the example plugins deployed and one group per plugin.
    Dev(run_server::DevArgs),
    /// Deploy and list plugins.
    #[command(subcommand)]
    Plugin(plugin::PluginCmd),
    /// Create, list, inspect, upgrade and delete groups.
    #[command(subcommand)]
    Group(group::GroupCmd),
    /// Send a command to a group's state machine (JSON by default).
    Propose(request::ProposeArgs),
    /// Query a group's state machine.
    Query(request::QueryArgs),
    /// Measure write throughput and latency against a node.
    Bench(bench::BenchArgs),
    /// Cluster-wide views.
    #[command(subcommand)]
    Cluster(cluster::ClusterCmd),
    /// Node operations (drain).
    #[command(subcommand)]
    Node(cluster::NodeCmd),
    /// Stream leader changes of the groups a node hosts.
    WatchLeaders(cluster::WatchArgs),
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Server(a) => run_server::server(a).await,
        Command::Dev(a) => run_server::dev(a).await,
        Command::Plugin(c) => plugin::run(c).await,
        Command::Group(c) => group::run(c).await,
        Command::Propose(a) => request::propose(a).await,
        Command::Query(a) => request::query(a).await,
        Command::Bench(a) => bench::run(a).await,
        Command::Cluster(c) => cluster::run_cluster(c).await,
        Command::Node(c) => cluster::run_node(c).await,
        Command::WatchLeaders(a) => cluster::watch(a).await,
    }
}

/// Where `flotilla server` and `flotilla dev` keep data unless told otherwise.
pub fn default_data_dir() -> PathBuf {
    PathBuf::from("flotilla-data")
}
