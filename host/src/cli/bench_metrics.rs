//! `flotilla bench --metrics URL[,URL...]`: scrapes the nodes' Prometheus endpoints
//! before and after the run and summarizes what the nodes did meanwhile — proposals,
//! applies, fsyncs and writes per fsync, fsync latency, raft messages per transport
//! batch, plugin fuel per command. Counters of several nodes add up; percentiles come
//! from histogram buckets and are approximate.

use std::time::Instant;

use anyhow::Context as _;
use serde_json::json;

use crate::metrics::scrape::{self, Samples};

/// The bench's `--metrics` option.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct MetricsArgs {
    /// Nodes' metrics endpoints (HOST:PORT or http://HOST:PORT/metrics), comma-separated:
    /// scraped before and after the run to summarize proposals, fsyncs, batch sizes and
    /// plugin fuel.
    #[arg(long = "metrics", value_name = "URL", value_delimiter = ',')]
    pub urls: Vec<String>,
}

/// The nodes' samples when the run started.
#[derive(Debug)]
pub struct Baseline {
    samples: Samples,
    at: Instant,
}

impl MetricsArgs {
    /// Scrapes every endpoint once; `None` without `--metrics`. Fails if one does not
    /// answer (before the run starts, so no run is wasted).
    pub async fn scrape(&self) -> anyhow::Result<Option<Baseline>> {
        if self.urls.is_empty() {
            return Ok(None);
        }
        let samples = scrape_all(&self.urls).await?;
        Ok(Some(Baseline {
            samples,
            at: Instant::now(),
        }))
    }

    /// Scrapes again and summarizes the change since `before`. A failed scrape only
    /// warns: the bench's own results still count.
    pub async fn summary(&self, before: Option<Baseline>) -> Option<Summary> {
        let before = before?;
        match scrape_all(&self.urls).await {
            Ok(after) => Some(Summary::between(
                &before.samples,
                &after,
                before.at.elapsed().as_secs_f64(),
                self.urls.len(),
            )),
            Err(e) => {
                eprintln!("warning: no node metrics summary: {e:#}");
                None
            }
        }
    }
}

async fn scrape_all(urls: &[String]) -> anyhow::Result<Samples> {
    let mut total = Samples::default();
    for url in urls {
        let text = scrape::fetch(url)
            .await
            .with_context(|| format!("scraping --metrics {url}"))?;
        total.add(&Samples::parse(&text));
    }
    Ok(total)
}

/// What the nodes did during the run, summed over the scraped nodes.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub nodes: usize,
    pub seconds: f64,
    pub proposals: f64,
    pub proposals_failed: f64,
    /// By every replica: a 3-replica group applies each command three times.
    pub commands_applied: f64,
    pub entries_applied: f64,
    pub fsyncs: f64,
    pub writes_per_fsync: Option<f64>,
    pub groups_per_fsync: Option<f64>,
    pub fsync_p50_ms: Option<f64>,
    pub fsync_p99_ms: Option<f64>,
    pub raft_messages_sent: f64,
    pub messages_per_rpc: Option<f64>,
    pub fuel_per_command: Option<f64>,
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

impl Summary {
    pub fn between(before: &Samples, after: &Samples, seconds: f64, nodes: usize) -> Self {
        let d = after.since(before);
        let fsync = d.histogram("flotilla_fsync_duration_seconds");
        let entries = d.histogram("flotilla_fsync_entries");
        let groups = d.histogram("flotilla_fsync_groups");
        let batches = d.histogram("flotilla_transport_batch_messages");
        let commands_applied = d.value("flotilla_commands_applied_total");
        let ms = |q: f64| {
            fsync
                .as_ref()
                .and_then(|h| h.quantile(q))
                .map(|s| s * 1000.0)
        };
        Self {
            nodes,
            seconds,
            proposals: d.value("flotilla_proposals_total"),
            proposals_failed: d.total("flotilla_proposals_failed_total"),
            commands_applied,
            entries_applied: d.value("flotilla_entries_applied_total"),
            fsyncs: fsync.as_ref().map_or(0.0, |h| h.count),
            writes_per_fsync: entries.as_ref().and_then(|h| h.mean()),
            groups_per_fsync: groups.as_ref().and_then(|h| h.mean()),
            fsync_p50_ms: ms(0.5),
            fsync_p99_ms: ms(0.99),
            raft_messages_sent: d.value("flotilla_raft_messages_sent_total"),
            messages_per_rpc: batches.as_ref().and_then(|h| h.mean()),
            fuel_per_command: ratio(
                d.value("flotilla_plugin_fuel_consumed_total{call=\"apply\"}"),
                commands_applied,
            ),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "nodes": self.nodes,
            "seconds": self.seconds,
            "proposals": self.proposals,
            "proposals_failed": self.proposals_failed,
            "commands_applied": self.commands_applied,
            "entries_applied": self.entries_applied,
            "fsyncs": self.fsyncs,
            "fsyncs_per_s": ratio(self.fsyncs, self.seconds),
            "writes_per_fsync": self.writes_per_fsync,
            "groups_per_fsync": self.groups_per_fsync,
            "fsync_p50_ms_approx": self.fsync_p50_ms,
            "fsync_p99_ms_approx": self.fsync_p99_ms,
            "raft_messages_sent": self.raft_messages_sent,
            "messages_per_rpc": self.messages_per_rpc,
            "fuel_per_command": self.fuel_per_command,
        })
    }

    /// A few lines for people.
    pub fn render(&self) -> String {
        let opt = |v: Option<f64>, digits: usize| {
            v.map_or_else(|| "-".to_string(), |v| format!("{v:.digits$}"))
        };
        format!(
            "node metrics over the run ({} node(s), {:.1}s; percentiles approximate, from histogram buckets):\n  \
             proposals        {:.0} ({:.0} failed)\n  \
             applied          {:.0} commands in {:.0} entries (every replica counts)\n  \
             fsyncs           {:.0} ({}/s), {} writes and {} groups per fsync, p50 {} ms, p99 {} ms\n  \
             raft messages    {:.0} sent, {} per transport batch (RPC)\n  \
             plugin fuel      {} per command",
            self.nodes,
            self.seconds,
            self.proposals,
            self.proposals_failed,
            self.commands_applied,
            self.entries_applied,
            self.fsyncs,
            opt(ratio(self.fsyncs, self.seconds), 0),
            opt(self.writes_per_fsync, 1),
            opt(self.groups_per_fsync, 1),
            opt(self.fsync_p50_ms, 2),
            opt(self.fsync_p99_ms, 2),
            self.raft_messages_sent,
            opt(self.messages_per_rpc, 1),
            opt(self.fuel_per_command, 0),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "\
flotilla_proposals_total 10
flotilla_proposals_failed_total{reason=\"busy\"} 1
flotilla_commands_applied_total 30
flotilla_entries_applied_total 6
flotilla_plugin_fuel_consumed_total{call=\"apply\"} 3000
flotilla_fsync_duration_seconds_sum 0.01
flotilla_fsync_duration_seconds_count 10
flotilla_fsync_duration_seconds_bucket{le=\"0.001\"} 10
flotilla_fsync_duration_seconds_bucket{le=\"0.002\"} 10
flotilla_fsync_duration_seconds_bucket{le=\"+Inf\"} 10
flotilla_fsync_entries_sum 20
flotilla_fsync_entries_count 10
# EOF
";

    const AFTER: &str = "\
flotilla_proposals_total 110
flotilla_proposals_failed_total{reason=\"busy\"} 3
flotilla_proposals_failed_total{reason=\"not_leader\"} 1
flotilla_commands_applied_total 330
flotilla_entries_applied_total 36
flotilla_plugin_fuel_consumed_total{call=\"apply\"} 33000
flotilla_fsync_duration_seconds_sum 0.05
flotilla_fsync_duration_seconds_count 30
flotilla_fsync_duration_seconds_bucket{le=\"0.001\"} 20
flotilla_fsync_duration_seconds_bucket{le=\"0.002\"} 30
flotilla_fsync_duration_seconds_bucket{le=\"+Inf\"} 30
flotilla_fsync_entries_sum 80
flotilla_fsync_entries_count 30
flotilla_transport_batch_messages_sum 40
flotilla_transport_batch_messages_count 20
";

    #[test]
    fn summary_is_the_change_between_scrapes() {
        let s = Summary::between(&Samples::parse(BEFORE), &Samples::parse(AFTER), 2.0, 1);
        assert_eq!(s.proposals, 100.0);
        assert_eq!(s.proposals_failed, 3.0);
        assert_eq!(s.commands_applied, 300.0);
        assert_eq!(s.fsyncs, 20.0);
        assert_eq!(s.writes_per_fsync, Some(3.0));
        assert_eq!(s.messages_per_rpc, Some(2.0));
        assert_eq!(s.fuel_per_command, Some(100.0));
        // 10 of the 20 new fsyncs took <= 1 ms, 10 took 1-2 ms: the median is at 1 ms.
        let p50 = s.fsync_p50_ms.unwrap_or_default();
        assert!((p50 - 1.0).abs() < 1e-9, "{p50}");
        let p99 = s.fsync_p99_ms.unwrap_or_default();
        assert!(p99 > 1.9 && p99 <= 2.0, "{p99}");
        let text = s.render();
        assert!(text.contains("20 (10/s)"), "{text}");
        assert_eq!(s.to_json()["writes_per_fsync"], 3.0);
    }
}
