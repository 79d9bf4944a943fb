//! The plugin host's metrics: fuel the guests burned and time spent in them.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::duration_buckets;

type CallLabel = [(&'static str, &'static str); 1];

/// Handles [`crate::plugin::PluginRuntime`] updates once per entry or query.
/// `Default` gives working handles registered nowhere.
#[derive(Clone, Debug)]
pub struct PluginMetrics {
    fuel: Family<CallLabel, Counter>,
    /// Fuel consumed by `apply` calls (instantiation included).
    pub fuel_apply: Counter,
    /// Fuel consumed by `query` calls (instantiation included).
    pub fuel_query: Counter,
    /// Time to run one entry's commands in Wasm.
    pub apply_duration: Histogram,
    /// Time to run one query in Wasm.
    pub query_duration: Histogram,
    /// Panics of host code caught while running a plugin call (each one rejected the
    /// call instead of stopping the node; each one is a bug to report).
    pub host_panics: Counter,
}

impl Default for PluginMetrics {
    fn default() -> Self {
        let fuel = Family::<CallLabel, Counter>::default();
        Self {
            fuel_apply: fuel.get_or_create_owned(&[("call", "apply")]),
            fuel_query: fuel.get_or_create_owned(&[("call", "query")]),
            fuel,
            apply_duration: Histogram::new(duration_buckets()),
            query_duration: Histogram::new(duration_buckets()),
            host_panics: Counter::default(),
        }
    }
}

impl PluginMetrics {
    pub(super) fn register(&self, r: &mut Registry) {
        r.register(
            "plugin_fuel_consumed",
            "Wasm fuel the plugins consumed (budget set before each call minus what was left)",
            self.fuel.clone(),
        );
        r.register_with_unit(
            "plugin_apply_duration",
            "Time to run one entry's commands in the plugin",
            Unit::Seconds,
            self.apply_duration.clone(),
        );
        r.register(
            "plugin_host_panics",
            "Panics of host code caught while running a plugin call; the call was rejected \
             and the node kept running (each one is a bug)",
            self.host_panics.clone(),
        );
        r.register_with_unit(
            "plugin_query_duration",
            "Time to run one query in the plugin",
            Unit::Seconds,
            self.query_duration.clone(),
        );
    }

    /// Counts one entry run in Wasm.
    pub fn record_apply(&self, fuel: u64, took: Duration) {
        self.fuel_apply.inc_by(fuel);
        self.apply_duration.observe(took.as_secs_f64());
    }

    /// Counts one query run in Wasm.
    pub fn record_query(&self, fuel: u64, took: Duration) {
        self.fuel_query.inc_by(fuel);
        self.query_duration.observe(took.as_secs_f64());
    }
}
