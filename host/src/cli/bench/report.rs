//! The bench's result: one JSON object for scripts, a small table for people.

use std::collections::BTreeMap;

use super::load::Outcome;
use super::timeline::Timeline;
use crate::cli::output::table;

/// What the run was, for the report.
pub struct Case {
    pub target: &'static str,
    pub workload: &'static str,
    /// "unary", or "batch" for requests multiplexed on `Batch` streams.
    pub api: &'static str,
    /// How requests were encoded: "json" or "binary" (Flotilla's kv plugin), "protobuf"
    /// (etcd).
    pub codec: &'static str,
    pub clients: usize,
    pub groups: usize,
    pub value_size: usize,
    /// Where the requests went, e.g. "leaders (64/64 groups)" or "leader 127.0.0.1:2379".
    pub routing: String,
}

pub struct Summary {
    pub case: Case,
    pub duration_s: f64,
    pub ops: u64,
    pub ops_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub errors: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
    pub sample_error: Option<String>,
    pub timeline: Option<Timeline>,
}

impl Summary {
    pub fn new(case: Case, o: Outcome) -> Self {
        let secs = o.elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
        let ms = |q: f64| o.latency_us.value_at_quantile(q) as f64 / 1000.0;
        let ops = o.latency_us.len();
        Summary {
            case,
            duration_s: secs,
            ops,
            ops_per_s: ops as f64 / secs,
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            errors: o.errors.values().sum(),
            errors_by_kind: o.errors,
            sample_error: o.sample_error,
            timeline: o.timeline,
        }
    }

    pub fn json(&self) -> serde_json::Value {
        let c = &self.case;
        serde_json::json!({
            "target": c.target, "workload": c.workload, "api": c.api, "codec": c.codec,
            "clients": c.clients,
            "groups": c.groups, "value_size": c.value_size, "routing": c.routing,
            "duration_s": self.duration_s, "ops": self.ops, "ops_per_s": self.ops_per_s,
            "p50_ms": self.p50_ms, "p99_ms": self.p99_ms, "p999_ms": self.p999_ms,
            "errors": self.errors, "errors_by_kind": self.errors_by_kind,
            "sample_error": self.sample_error,
            "timeline": self.timeline.as_ref().map_or(serde_json::Value::Null, Timeline::json),
        })
    }

    pub fn table(&self) -> String {
        let c = &self.case;
        let unit = if c.workload == "write" {
            "writes/s"
        } else {
            "reads/s"
        };
        let mut s = table(
            &[
                "target", "workload", "api", "codec", "clients", "groups", "value", "duration",
                unit, "p50 ms", "p99 ms", "p999 ms", "errors",
            ],
            vec![vec![
                c.target.to_string(),
                c.workload.to_string(),
                c.api.to_string(),
                c.codec.to_string(),
                c.clients.to_string(),
                c.groups.to_string(),
                format!("{} B", c.value_size),
                format!("{:.1}s", self.duration_s),
                format!("{:.0}", self.ops_per_s),
                format!("{:.2}", self.p50_ms),
                format!("{:.2}", self.p99_ms),
                format!("{:.2}", self.p999_ms),
                self.errors.to_string(),
            ]],
        );
        s.push_str(&format!("\nrouting: {}", c.routing));
        if let Some(t) = &self.timeline {
            s.push_str(&format!(
                "\nevery {} from {}:\n{}",
                humantime::format_duration(t.interval),
                humantime::format_rfc3339_millis(t.started_at),
                t.table()
            ));
        }
        if self.errors > 0 {
            let kinds: Vec<String> = self
                .errors_by_kind
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            s.push_str(&format!("\nerrors: {}", kinds.join(", ")));
            if let Some(e) = &self.sample_error {
                s.push_str(&format!("\nfor example: {e}"));
            }
        }
        s
    }
}
