//! The closed-loop load: every client keeps one request in flight until the deadline,
//! recording each success's latency and counting each failure by its kind.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};

use super::Workload;
use super::client::{Client, OpError};
use super::timeline::{Recorder, Timeline};
use crate::splitmix::SplitMix;

/// Latencies are recorded in microseconds, up to a minute.
const LATENCY_US_MAX: u64 = 60_000_000;

/// Where the bench's values come from: a fixed pseudo-random run of letters and digits,
/// of which each put writes a `size`-byte window picked by its client and number. Values
/// of one repeated letter, or one value written by every put, compress to almost
/// nothing in any store that compresses blocks of them (fjall compresses its deeper
/// tables and blob files; etcd compresses nothing), which flatters such a store; real
/// values of this size mostly do not compress and mostly differ.
pub struct Values {
    pool: String,
    size: usize,
}

/// How many distinct windows the pool holds (its length beyond one value): two values
/// side by side in a table block overlap with odds of about `2 * size / VALUE_WINDOWS`.
const VALUE_WINDOWS: usize = 1 << 20;

impl Values {
    pub fn new(size: usize) -> Self {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut rng = SplitMix::new(0x5eed_f107_111a_0005);
        let pool = (0..size + VALUE_WINDOWS)
            .map(|_| char::from(ALPHABET[(rng.next_u64() % ALPHABET.len() as u64) as usize]))
            .collect();
        Self { pool, size }
    }

    /// The value client `i` writes in its `n`th put: the same in every run.
    pub fn get(&self, i: usize, n: u64) -> &str {
        let pick = SplitMix::new((i as u64).rotate_left(40) ^ n).next_u64();
        let at = (pick % VALUE_WINDOWS as u64) as usize;
        // The pool is ASCII, so every byte offset is a char boundary.
        &self.pool[at..at + self.size]
    }
}

/// The key client `i` writes in its `n`th put.
pub fn write_key(i: usize, n: u64) -> String {
    format!("c{i}-{n}")
}

/// The `k`th of the keys client `i` wrote before a read run.
pub fn read_key(i: usize, k: u64) -> String {
    format!("c{i}-r{k}")
}

/// What a run measured.
pub struct Outcome {
    pub latency_us: Histogram<u64>,
    /// Failed operations by kind (gRPC code, or `missing_key`).
    pub errors: BTreeMap<String, u64>,
    /// One failure's full text, to show what went wrong.
    pub sample_error: Option<String>,
    pub elapsed: Duration,
    /// The run in slices, with `--interval`.
    pub timeline: Option<Timeline>,
}

/// Writes each client's `keys` read keys (each put tried up to 5 times), concurrently,
/// and gives the clients back.
pub async fn preload(
    clients: Vec<Client>,
    keys: u64,
    values: &Arc<Values>,
) -> anyhow::Result<Vec<Client>> {
    let mut tasks = Vec::with_capacity(clients.len());
    for (i, mut c) in clients.into_iter().enumerate() {
        let values = values.clone();
        tasks.push(tokio::spawn(async move {
            for k in 0..keys {
                let key = read_key(i, k);
                let mut attempt = 0;
                loop {
                    match c.put(&key, values.get(i, k)).await {
                        Ok(()) => break,
                        Err(e) if attempt >= 4 => {
                            anyhow::bail!("preloading {key:?} for the read run failed: {e:?}")
                        }
                        Err(_) => {
                            attempt += 1;
                            tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                        }
                    }
                }
            }
            Ok(c)
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.context("a preload task panicked")??);
    }
    Ok(out)
}

/// Runs `workload` on every client for `duration`; `read_keys` is how many keys each
/// client preloaded (reads cycle through them). With an `interval`, the outcome also
/// holds the run cut into slices of that length.
pub async fn run(
    clients: Vec<Client>,
    workload: Workload,
    duration: Duration,
    values: &Arc<Values>,
    read_keys: u64,
    interval: Option<Duration>,
) -> anyhow::Result<Outcome> {
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let started_at = std::time::SystemTime::now();
    let deadline = start + duration;
    let client_count = clients.len();
    let mut tasks = Vec::with_capacity(clients.len());
    for (i, mut c) in clients.into_iter().enumerate() {
        let (done, values) = (done.clone(), values.clone());
        let mut recorder = interval.map(|_| Recorder::new(start, client_count));
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, LATENCY_US_MAX, 3)?;
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            let mut sample = None;
            let mut n = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                let r = match workload {
                    Workload::Write => c.put(&write_key(i, n), values.get(i, n)).await,
                    Workload::Read => c.get(&read_key(i, n % read_keys.max(1))).await,
                };
                match r {
                    Ok(()) => {
                        let now = Instant::now();
                        let latency = now.duration_since(t);
                        hist.saturating_record(latency.as_micros().max(1) as u64);
                        if let Some(r) = recorder.as_mut() {
                            r.record(now, latency);
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        *errors.entry(e.label()).or_default() += 1;
                        sample.get_or_insert_with(|| describe(&e));
                        // Do not spin on a server that fails fast.
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
                n += 1;
            }
            anyhow::Ok((hist, errors, sample, recorder))
        }));
    }
    let bar = ProgressBar::new(duration.as_secs().max(1));
    if let Ok(s) = ProgressStyle::with_template("bench [{bar:30}] {pos}/{len}s {msg}") {
        bar.set_style(s.progress_chars("=> "));
    }
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        bar.set_position(start.elapsed().as_secs());
        bar.set_message(format!(
            "{:.0} ops/s",
            done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
        ));
    }
    let mut latency_us = Histogram::<u64>::new_with_bounds(1, LATENCY_US_MAX, 3)?;
    let mut errors = BTreeMap::new();
    let mut sample_error = None;
    let mut recorders = Vec::with_capacity(client_count);
    for t in tasks {
        let (h, e, s, r) = t.await.context("a bench client panicked")??;
        latency_us.add(h)?;
        recorders.extend(r);
        for (k, v) in e {
            *errors.entry(k).or_default() += v;
        }
        sample_error = sample_error.or(s);
    }
    bar.finish_and_clear();
    let elapsed = start.elapsed();
    let timeline = match interval {
        Some(step) => Some(Timeline::build(
            started_at, step, duration, elapsed, recorders,
        )?),
        None => None,
    };
    Ok(Outcome {
        latency_us,
        errors,
        sample_error,
        elapsed,
        timeline,
    })
}

fn describe(e: &OpError) -> String {
    match e {
        OpError::Status(s) => format!("{:?}: {}", s.code(), s.message()),
        OpError::Missing => "a read did not find a key written before the run".to_string(),
    }
}
