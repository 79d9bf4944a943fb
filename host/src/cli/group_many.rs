//! `flotilla group create --count N`: many groups at once (for scale tests such as
//! ten thousand idle groups), a bounded number of requests in flight, with progress.

use futures::StreamExt as _;
use indicatif::{ProgressBar, ProgressStyle};

use super::ClientOpts;
use super::connect::{admin, status_error};
use super::output::{OutputFormat, print_json};
use crate::proto::v1::CreateGroupRequest;

/// Requests in flight at once.
const IN_FLIGHT: usize = 16;

pub async fn create_many(
    opts: &ClientOpts,
    template: CreateGroupRequest,
    count: u32,
) -> anyhow::Result<()> {
    let client = admin(&opts.endpoint).await?;
    let bar = match opts.output {
        OutputFormat::Table => ProgressBar::new(u64::from(count)),
        OutputFormat::Json => ProgressBar::hidden(),
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} groups, {per_sec}, eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = std::time::Instant::now();
    let mut results = futures::stream::iter(0..count)
        .map(|_| {
            let mut c = client.clone();
            let request = template.clone();
            async move { c.create_group(request).await }
        })
        .buffer_unordered(IN_FLIGHT);
    let mut ids = Vec::with_capacity(count as usize);
    while let Some(r) = results.next().await {
        let g = r
            .map_err(status_error)?
            .into_inner()
            .group
            .unwrap_or_default();
        ids.push(g.group_id);
        bar.inc(1);
    }
    bar.finish_and_clear();
    ids.sort_unstable();
    let secs = started.elapsed().as_secs_f64();
    match opts.output {
        OutputFormat::Json => print_json(&serde_json::json!({
            "created": ids.len(), "group_ids": ids, "seconds": secs,
        })),
        OutputFormat::Table => println!(
            "created {} groups running {} in {secs:.1}s (ids {}..={})",
            ids.len(),
            template.plugin,
            ids.first().copied().unwrap_or(0),
            ids.last().copied().unwrap_or(0)
        ),
    }
    Ok(())
}
