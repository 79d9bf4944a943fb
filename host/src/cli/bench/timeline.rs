//! `bench --interval`: the run cut into equal slices of time, each with its own
//! throughput and latency, so that a tail (p99, p999) can be traced to when it happened,
//! e.g. to a storage flush in a node's log.
//!
//! Each client keeps one small record per completed operation (when it ended, how long
//! it took, both in whole units so slices have exact edges); the slices are built from
//! all of them after the run, one at a time. The records are bounded ([`SAMPLES_MAX`]
//! for the whole run, shared out between the clients); past a client's share its
//! operations still count in the run's summary but not in the slices, and the report
//! says how many were left out and from which slice on the slices are incomplete.

use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;

/// Operation records kept for the timeline over the whole run, all clients together
/// (8 bytes each: at most 128 MiB, as no client's records grow past its share).
pub const SAMPLES_MAX: usize = 16 * 1024 * 1024;
/// The shortest slice `--interval` accepts.
pub const INTERVAL_MIN: Duration = Duration::from_millis(100);
/// Most slices one run may be cut into.
pub const SLICES_MAX: u64 = 10_000;

/// How many slices of `interval` (whole milliseconds) cover `duration`.
fn slice_count(interval: Duration, duration: Duration) -> u128 {
    duration
        .as_millis()
        .div_ceil(interval.as_millis().max(1))
        .max(1)
}

/// Checks `--interval` against `--duration`: whole milliseconds, at least
/// [`INTERVAL_MIN`], at most the duration, and at most [`SLICES_MAX`] slices.
pub fn check_interval(interval: Duration, duration: Duration) -> Result<(), String> {
    let show = humantime::format_duration;
    if !interval.subsec_nanos().is_multiple_of(1_000_000) {
        return Err(format!(
            "--interval {} is not a whole number of milliseconds",
            show(interval)
        ));
    }
    if interval < INTERVAL_MIN {
        return Err(format!(
            "--interval {} is shorter than the minimum of {}",
            show(interval),
            show(INTERVAL_MIN)
        ));
    }
    if interval > duration {
        return Err(format!(
            "--interval {} is longer than --duration {}",
            show(interval),
            show(duration)
        ));
    }
    let slices = slice_count(interval, duration);
    if slices > u128::from(SLICES_MAX) {
        return Err(format!(
            "--interval {} cuts --duration {} into {slices} slices; at most {SLICES_MAX}",
            show(interval),
            show(duration)
        ));
    }
    Ok(())
}

/// One client's operation records, in the order they ended: milliseconds from the
/// start of the run to the end of the operation, and its latency in microseconds.
pub struct Recorder {
    start: Instant,
    samples: Vec<(u32, u32)>,
    cap: usize,
    dropped: u64,
    /// When the first operation past the cap ended (ms from the start).
    first_dropped_ms: Option<u32>,
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
            first_dropped_ms: None,
        }
    }

    /// Records an operation that ended at `done` after `latency`.
    pub fn record(&mut self, done: Instant, latency: Duration) {
        let at_ms = done.saturating_duration_since(self.start).as_millis();
        let at_ms = u32::try_from(at_ms).unwrap_or(u32::MAX);
        if self.samples.len() >= self.cap {
            self.dropped += 1;
            self.first_dropped_ms.get_or_insert(at_ms);
            return;
        }
        if self.samples.len() == self.samples.capacity() {
            // Grow as a Vec would, but never past the share.
            let more = self.samples.capacity().max(1024);
            self.samples
                .reserve_exact(more.min(self.cap - self.samples.len()));
        }
        let us = latency.as_micros().max(1);
        self.samples
            .push((at_ms, u32::try_from(us).unwrap_or(u32::MAX)));
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
    /// The slowest operation, exactly (the percentiles are within 1%).
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
    /// Where the first of those ended (seconds from the start): slices from the one
    /// holding it on miss operations.
    pub incomplete_from_s: Option<f64>,
}

impl Timeline {
    /// Cuts a run of `duration` into slices of `interval` (the last one may be shorter)
    /// and puts each recorded operation in the slice it ended in. The run took
    /// `elapsed`, a little longer than planned: the operations in flight at the deadline
    /// end after it, in the last slice, which then lasts until `elapsed`. The slices
    /// are built one after the other with one histogram, walking each client's records
    /// (which are in the order they ended).
    pub fn build(
        started_at: SystemTime,
        interval: Duration,
        duration: Duration,
        elapsed: Duration,
        recorders: Vec<Recorder>,
    ) -> Result<Self, hdrhistogram::CreationError> {
        let step_ms = interval.as_millis().max(1);
        let count = slice_count(interval, duration).min(u128::from(SLICES_MAX));
        let mut hist = Histogram::<u64>::new_with_bounds(1, u64::from(u32::MAX), 2)?;
        let mut cursors = vec![0usize; recorders.len()];
        let total_s = elapsed.max(duration).as_secs_f64();
        let mut slices = Vec::new();
        for i in 0..count {
            let last = i + 1 == count;
            let end_ms = (i + 1) * step_ms;
            let mut max_us = 0u32;
            for (r, at) in recorders.iter().zip(cursors.iter_mut()) {
                while let Some(&(t, us)) = r.samples.get(*at) {
                    if !last && u128::from(t) >= end_ms {
                        break;
                    }
                    hist.saturating_record(u64::from(us));
                    max_us = max_us.max(us);
                    *at += 1;
                }
            }
            let from_ms = i * step_ms;
            let from_s = from_ms as f64 / 1000.0;
            let len_s = if last {
                total_s - from_s
            } else {
                step_ms as f64 / 1000.0
            }
            .max(f64::MIN_POSITIVE);
            let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
            slices.push(Slice {
                from_s,
                ops: hist.len(),
                ops_per_s: hist.len() as f64 / len_s,
                p50_ms: ms(0.5),
                p99_ms: ms(0.99),
                max_ms: f64::from(max_us) / 1000.0,
            });
            hist.reset();
        }
        let dropped = recorders.iter().map(|r| r.dropped).sum();
        let incomplete_from_s = recorders
            .iter()
            .filter_map(|r| r.first_dropped_ms)
            .min()
            .map(|ms| (u128::from(ms) / step_ms).min(count - 1) as f64 * step_ms as f64 / 1000.0);
        Ok(Self {
            started_at,
            interval,
            slices,
            dropped,
            incomplete_from_s,
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
            "incomplete_from_s": self.incomplete_from_s,
        })
    }

    pub fn table(&self) -> String {
        let rows = self
            .slices
            .iter()
            .map(|s| {
                vec![
                    format!("{:.3}s", s.from_s),
                    format!("{:.0}", s.ops_per_s),
                    format!("{:.2}", s.p50_ms),
                    format!("{:.2}", s.p99_ms),
                    format!("{:.2}", s.max_ms),
                ]
            })
            .collect();
        let header = ["from", "ops/s", "p50 ms", "p99 ms", "max ms"];
        let mut t = crate::cli::output::table(&header, rows);
        if let Some(from) = self.incomplete_from_s {
            t.push_str(&format!(
                "\n{} operations are in no slice (past the timeline's {SAMPLES_MAX} records): \
                 the slices from {from:.3}s on are incomplete",
                self.dropped
            ));
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn operations_land_in_the_slice_they_ended_in() -> Result<(), hdrhistogram::CreationError> {
        let start = Instant::now();
        let mut a = Recorder::new(start, 2);
        let mut b = Recorder::new(start, 2);
        // Slice 0 (0-1 s): two fast operations. Slice 1: one ending right on its start
        // edge and one slow. Slice 2 (2-2.5 s, the short last one): one at 2.4 s and one
        // that ended after the deadline.
        a.record(start + ms(100), ms(2));
        b.record(start + ms(999), ms(4));
        b.record(start + ms(1000), ms(1));
        a.record(start + ms(1500), ms(300));
        b.record(start + ms(2400), ms(1));
        a.record(start + ms(2510), ms(3));
        let t = Timeline::build(
            SystemTime::UNIX_EPOCH,
            ms(1000),
            ms(2500),
            ms(2510),
            vec![a, b],
        )?;
        let ops: Vec<u64> = t.slices.iter().map(|s| s.ops).collect();
        assert_eq!(ops, vec![2, 2, 2]);
        let from: Vec<f64> = t.slices.iter().map(|s| s.from_s).collect();
        assert_eq!(from, vec![0.0, 1.0, 2.0]);
        assert_eq!(t.slices[1].max_ms, 300.0);
        assert_eq!(t.slices[0].max_ms, 4.0);
        // 2 significant digits: the percentiles within 1%.
        assert!((t.slices[0].p50_ms - 2.0).abs() < 0.05, "{:?}", t.slices[0]);
        assert!(
            (t.slices[1].p99_ms - 300.0).abs() < 3.0,
            "{:?}",
            t.slices[1]
        );
        // The last slice lasts until the run ended: 2 operations in 0.51 s.
        assert!((t.slices[2].ops_per_s - 2.0 / 0.51).abs() < 1e-9);
        assert_eq!((t.dropped, t.incomplete_from_s), (0, None));
        let json = t.json();
        assert_eq!(json["slices"][1]["ops"], 2);
        assert_eq!(json["interval_s"], 1.0);
        assert_eq!(json["started_at"], "1970-01-01T00:00:00.000Z");
        let table = t.table();
        assert!(
            table.contains("1.000s") && table.contains("300.00"),
            "{table}"
        );
        Ok(())
    }

    #[test]
    fn slices_edges_are_exact_for_short_intervals() -> Result<(), hdrhistogram::CreationError> {
        // 250 ms slices start at 0.25, 0.5, 0.75 s, printed as such.
        let start = Instant::now();
        let mut r = Recorder::new(start, 1);
        for at in [249, 250, 750, 999] {
            r.record(start + ms(at), ms(1));
        }
        let t = Timeline::build(SystemTime::UNIX_EPOCH, ms(250), ms(1000), ms(1000), vec![r])?;
        let ops: Vec<u64> = t.slices.iter().map(|s| s.ops).collect();
        assert_eq!(ops, vec![1, 1, 0, 2]);
        let from: Vec<f64> = t.slices.iter().map(|s| s.from_s).collect();
        assert_eq!(from, vec![0.0, 0.25, 0.5, 0.75]);
        assert!(t.table().contains("0.750s"), "{}", t.table());
        Ok(())
    }

    #[test]
    fn records_past_a_clients_share_are_counted_and_mark_the_slices_incomplete()
    -> Result<(), hdrhistogram::CreationError> {
        let start = Instant::now();
        let mut r = Recorder::new(start, SAMPLES_MAX / 3);
        assert_eq!(r.cap, 3);
        for _ in 0..3 {
            r.record(start + ms(100), Duration::from_micros(10));
        }
        for _ in 0..2 {
            r.record(start + ms(1500), Duration::from_micros(10));
        }
        assert!(r.samples.capacity() <= r.cap, "{}", r.samples.capacity());
        let t = Timeline::build(
            SystemTime::UNIX_EPOCH,
            ms(1000),
            ms(2000),
            ms(2000),
            vec![r],
        )?;
        let ops: Vec<u64> = t.slices.iter().map(|s| s.ops).collect();
        assert_eq!(ops, vec![3, 0]);
        assert_eq!((t.dropped, t.incomplete_from_s), (2, Some(1.0)));
        assert_eq!(t.json()["incomplete_from_s"], 1.0);
        let table = t.table();
        assert!(table.contains("2 operations are in no slice"), "{table}");
        assert!(
            table.contains("the slices from 1.000s on are incomplete"),
            "{table}"
        );
        Ok(())
    }

    #[test]
    fn a_recorder_never_holds_more_than_its_share() {
        let start = Instant::now();
        let mut r = Recorder::new(start, SAMPLES_MAX / 5000);
        let cap = r.cap;
        for _ in 0..cap + 10 {
            r.record(start, Duration::from_micros(1));
        }
        assert_eq!(r.samples.len(), cap);
        assert!(
            r.samples.capacity() <= cap,
            "{} > {cap}",
            r.samples.capacity()
        );
        assert_eq!(r.dropped, 10);
    }

    #[test]
    fn intervals_are_checked_against_the_duration() {
        let s = Duration::from_secs;
        assert!(check_interval(s(1), s(10)).is_ok());
        assert!(check_interval(s(10), s(10)).is_ok());
        let short = check_interval(ms(10), s(10));
        assert!(short.is_err_and(|e| e.contains("shorter than the minimum of 100ms")));
        let long = check_interval(s(11), s(10));
        assert!(long.is_err_and(|e| e.contains("longer than --duration 10s")));
        let many = check_interval(ms(100), s(1001));
        assert!(many.is_err_and(|e| e.contains("10010 slices")));
        let fraction = check_interval(Duration::from_micros(333_500), s(1));
        assert!(fraction.is_err_and(|e| e.contains("not a whole number of milliseconds")));
    }
}
