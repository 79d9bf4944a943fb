//! `bench --interval`: the run cut into equal slices of time, each with its own
//! throughput and latency, so that a tail (p99, p999) can be traced to when it happened,
//! e.g. to a storage flush in a node's log.
//!
//! Each client keeps one small record per completed operation (when it finished, how
//! long it took); the slices are built from all of them after the run. The records are
//! bounded ([`SAMPLES_MAX`] for the whole run, shared out between the clients); past a
//! client's share its operations still count in the run's summary but not in the slices,
//! and the report says how many were left out.

use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;

/// Operation records kept for the timeline over the whole run, all clients together
/// (8 bytes each: at most 128 MiB).
pub const SAMPLES_MAX: usize = 16 * 1024 * 1024;
/// The shortest slice `--interval` accepts.
pub const INTERVAL_MIN: Duration = Duration::from_millis(100);
/// Most slices one run may be cut into.
pub const SLICES_MAX: u64 = 10_000;

/// Checks `--interval` against `--duration`: at least [`INTERVAL_MIN`], at most the
/// duration, and at most [`SLICES_MAX`] slices.
pub fn check_interval(interval: Duration, duration: Duration) -> Result<(), String> {
    if interval < INTERVAL_MIN {
        return Err(format!(
            "--interval {} is shorter than the minimum of {}",
            humantime::format_duration(interval),
            humantime::format_duration(INTERVAL_MIN)
        ));
    }
    if interval > duration {
        return Err(format!(
            "--interval {} is longer than --duration {}",
            humantime::format_duration(interval),
            humantime::format_duration(duration)
        ));
    }
    let slices = duration.as_nanos().div_ceil(interval.as_nanos());
    if slices > u128::from(SLICES_MAX) {
        return Err(format!(
            "--interval {} cuts --duration {} into {slices} slices; at most {SLICES_MAX}",
            humantime::format_duration(interval),
            humantime::format_duration(duration)
        ));
    }
    Ok(())
}

/// One client's operation records: milliseconds from the start of the run to the end of
/// the operation, and its latency in microseconds.
pub struct Recorder {
    start: Instant,
    samples: Vec<(u32, u32)>,
    cap: usize,
    dropped: u64,
}

impl Recorder {
    /// A recorder for one of `clients` clients, keeping up to its share of
    /// [`SAMPLES_MAX`].
    pub fn new(start: Instant, clients: usize) -> Self {
        Self {
            start,
            samples: Vec::new(),
            cap: SAMPLES_MAX / clients.max(1),
            dropped: 0,
        }
    }

    /// Records an operation that ended at `done` after `latency`.
    pub fn record(&mut self, done: Instant, latency: Duration) {
        if self.samples.len() >= self.cap {
            self.dropped += 1;
            return;
        }
        let at_ms = done.saturating_duration_since(self.start).as_millis();
        let us = latency.as_micros().max(1);
        self.samples.push((
            u32::try_from(at_ms).unwrap_or(u32::MAX),
            u32::try_from(us).unwrap_or(u32::MAX),
        ));
    }
}

/// One slice of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Slice {
    /// Seconds from the start of the run to the start of the slice.
    pub from_s: f64,
    pub ops: u64,
    pub ops_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The run's slices, and how many operations they leave out.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    /// The wall-clock time the run started, to match slices with node logs.
    pub started_at: SystemTime,
    pub interval: Duration,
    pub slices: Vec<Slice>,
    /// Operations past their client's share of [`SAMPLES_MAX`], in no slice.
    pub dropped: u64,
}

impl Timeline {
    /// Cuts a run of `duration` into slices of `interval` (the last one may be shorter)
    /// and puts each recorded operation in the slice it ended in. The run took
    /// `elapsed`, a little longer than planned: the operations in flight at the deadline
    /// end after it, in the last slice, which then lasts until `elapsed`.
    pub fn build(
        started_at: SystemTime,
        interval: Duration,
        duration: Duration,
        elapsed: Duration,
        recorders: Vec<Recorder>,
    ) -> Result<Self, hdrhistogram::CreationError> {
        let step_ms = interval.as_millis().max(1);
        let count = duration.as_millis().div_ceil(step_ms).max(1);
        let count = usize::try_from(count.min(u128::from(SLICES_MAX))).unwrap_or(1);
        let mut hists = (0..count)
            .map(|_| Histogram::<u64>::new_with_bounds(1, u64::from(u32::MAX), 2))
            .collect::<Result<Vec<_>, _>>()?;
        let mut dropped = 0;
        for r in recorders {
            dropped += r.dropped;
            for (at_ms, us) in r.samples {
                let i = usize::try_from(u128::from(at_ms) / step_ms).unwrap_or(usize::MAX);
                hists[i.min(count - 1)].saturating_record(u64::from(us));
            }
        }
        let step_s = interval.as_secs_f64();
        let total_s = elapsed.max(duration).as_secs_f64();
        let slices = hists
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let from_s = i as f64 * step_s;
                let len_s = if i + 1 == count {
                    total_s - from_s
                } else {
                    step_s
                }
                .max(f64::MIN_POSITIVE);
                let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
                Slice {
                    from_s,
                    ops: h.len(),
                    ops_per_s: h.len() as f64 / len_s,
                    p50_ms: ms(0.5),
                    p99_ms: ms(0.99),
                    max_ms: h.max() as f64 / 1000.0,
                }
            })
            .collect();
        Ok(Self {
            started_at,
            interval,
            slices,
            dropped,
        })
    }

    pub fn json(&self) -> serde_json::Value {
        let slices: Vec<serde_json::Value> = self
            .slices
            .iter()
            .map(|s| {
                serde_json::json!({
                    "from_s": s.from_s, "ops": s.ops, "ops_per_s": s.ops_per_s,
                    "p50_ms": s.p50_ms, "p99_ms": s.p99_ms, "max_ms": s.max_ms,
                })
            })
            .collect();
        serde_json::json!({
            "started_at": humantime::format_rfc3339_millis(self.started_at).to_string(),
            "interval_s": self.interval.as_secs_f64(),
            "slices": slices,
            "ops_left_out": self.dropped,
        })
    }

    pub fn table(&self) -> String {
        let rows = self
            .slices
            .iter()
            .map(|s| {
                vec![
                    format!("{:.1}s", s.from_s),
                    format!("{:.0}", s.ops_per_s),
                    format!("{:.2}", s.p50_ms),
                    format!("{:.2}", s.p99_ms),
                    format!("{:.2}", s.max_ms),
                ]
            })
            .collect();
        let mut t =
            crate::cli::output::table(&["from", "ops/s", "p50 ms", "p99 ms", "max ms"], rows);
        if self.dropped > 0 {
            t.push_str(&format!(
                "\n{} operations are in no slice (past the timeline's {SAMPLES_MAX} records)",
                self.dropped
            ));
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_land_in_the_slice_they_ended_in() -> Result<(), hdrhistogram::CreationError> {
        let start = Instant::now();
        let mut a = Recorder::new(start, 2);
        let mut b = Recorder::new(start, 2);
        // Slice 0 (0-1 s): two fast operations. Slice 1: one slow. Slice 2 (2-2.5 s, the
        // short last one): one at 2.4 s.
        a.record(start + Duration::from_millis(100), Duration::from_millis(2));
        b.record(start + Duration::from_millis(999), Duration::from_millis(4));
        a.record(
            start + Duration::from_millis(1500),
            Duration::from_millis(300),
        );
        b.record(
            start + Duration::from_millis(2400),
            Duration::from_millis(1),
        );
        let t = Timeline::build(
            SystemTime::UNIX_EPOCH,
            Duration::from_secs(1),
            Duration::from_millis(2500),
            Duration::from_millis(2500),
            vec![a, b],
        )?;
        let ops: Vec<u64> = t.slices.iter().map(|s| s.ops).collect();
        assert_eq!(ops, vec![2, 1, 1]);
        assert_eq!(t.slices[1].from_s, 1.0);
        // 2 significant digits: within 1%.
        assert!(
            (t.slices[1].max_ms - 300.0).abs() < 3.0,
            "{:?}",
            t.slices[1]
        );
        assert!((t.slices[0].max_ms - 4.0).abs() < 0.05, "{:?}", t.slices[0]);
        assert!(t.slices[0].p50_ms < 2.05, "{:?}", t.slices[0]);
        // The last slice is half a second long: one operation in it is 2 per second.
        assert!((t.slices[2].ops_per_s - 2.0).abs() < 1e-9);
        assert_eq!(t.dropped, 0);
        let json = t.json();
        assert_eq!(json["slices"][1]["ops"], 1);
        assert_eq!(json["interval_s"], 1.0);
        assert_eq!(json["started_at"], "1970-01-01T00:00:00.000Z");
        assert!(t.table().contains("301.06"), "{}", t.table());
        Ok(())
    }

    #[test]
    fn records_past_a_clients_share_are_counted_as_left_out()
    -> Result<(), hdrhistogram::CreationError> {
        let start = Instant::now();
        let mut r = Recorder::new(start, SAMPLES_MAX / 3);
        assert_eq!(r.cap, 3);
        for _ in 0..5 {
            r.record(start, Duration::from_micros(10));
        }
        let second = Duration::from_secs(1);
        let t = Timeline::build(SystemTime::UNIX_EPOCH, second, second, second, vec![r])?;
        assert_eq!(t.slices[0].ops, 3);
        assert_eq!(t.dropped, 2);
        assert!(t.table().contains("2 operations are in no slice"));
        Ok(())
    }

    #[test]
    fn intervals_are_checked_against_the_duration() {
        let s = Duration::from_secs;
        assert!(check_interval(s(1), s(10)).is_ok());
        assert!(check_interval(s(10), s(10)).is_ok());
        let short = check_interval(Duration::from_millis(10), s(10));
        assert!(short.is_err_and(|e| e.contains("shorter than the minimum of 100ms")));
        let long = check_interval(s(11), s(10));
        assert!(long.is_err_and(|e| e.contains("longer than --duration 10s")));
        let many = check_interval(Duration::from_millis(100), s(1001));
        assert!(many.is_err_and(|e| e.contains("10010 slices")));
    }
}
