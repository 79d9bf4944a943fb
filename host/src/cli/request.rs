//! `flotilla propose` and `flotilla query`.

use super::ClientOpts;
use super::connect::{client, status_error};
use super::output::{OutputFormat, output_value, print_json};
use crate::proto::v1::{ProposeRequest, QueryRequest, ReadConsistency};

#[derive(Debug, clap::Args)]
pub struct ProposeArgs {
    #[arg(long)]
    pub group: u64,
    /// The command, e.g. '{"put":{"key":"a","value":"1"}}'.
    pub command: String,
    /// Makes a retried proposal apply once.
    #[arg(long, default_value = "")]
    pub request_id: String,
    #[command(flatten)]
    pub opts: ClientOpts,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Consistency {
    Linearizable,
    Lease,
    Stale,
}

#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    #[arg(long)]
    pub group: u64,
    /// The query, e.g. '{"get":{"key":"a"}}'.
    pub query: String,
    #[arg(long, value_enum, default_value_t = Consistency::Linearizable)]
    pub consistency: Consistency,
    #[command(flatten)]
    pub opts: ClientOpts,
}

pub async fn propose(a: ProposeArgs) -> anyhow::Result<()> {
    let mut c = client(&a.opts.endpoint).await?;
    let r = c
        .propose(ProposeRequest {
            group_id: a.group,
            command: a.command.into_bytes(),
            request_id: a.request_id,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    match a.opts.output {
        OutputFormat::Json => print_json(&serde_json::json!({
            "group_id": r.group_id, "index": r.index, "output": output_value(&r.output) })),
        OutputFormat::Table => println!("{}", output_value(&r.output)),
    }
    Ok(())
}

pub async fn query(a: QueryArgs) -> anyhow::Result<()> {
    let consistency = match a.consistency {
        Consistency::Linearizable => ReadConsistency::Linearizable,
        Consistency::Lease => ReadConsistency::Lease,
        Consistency::Stale => ReadConsistency::Stale,
    };
    let mut c = client(&a.opts.endpoint).await?;
    let r = c
        .query(QueryRequest {
            group_id: a.group,
            request: a.query.into_bytes(),
            consistency: consistency as i32,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let served = ReadConsistency::try_from(r.served)
        .map(|c| c.as_str_name().to_ascii_lowercase())
        .unwrap_or_default();
    match a.opts.output {
        OutputFormat::Json => print_json(&serde_json::json!({
            "output": output_value(&r.output), "served": served, "applied_index": r.applied_index })),
        OutputFormat::Table => println!("{}", output_value(&r.output)),
    }
    Ok(())
}
