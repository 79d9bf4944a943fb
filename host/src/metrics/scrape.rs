//! Reading metrics back: fetch a node's `/metrics` over HTTP (hyper's client) and parse
//! the text exposition into samples, for `flotilla bench --metrics` and for tests.
//! Samples of several nodes add up, and two scrapes subtract into what happened between.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Uri, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How long one scrape may take.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest metrics page read.
pub const SCRAPE_BYTES_MAX: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("{url:?} is not an http://HOST:PORT[/PATH] URL")]
    BadUrl { url: String },
    #[error("cannot reach {url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url} did not answer within {SCRAPE_TIMEOUT:?}")]
    Timeout { url: String },
}

/// `HOST:PORT`, `http://HOST:PORT` or a full URL; a URL without a path means
/// `/metrics`.
pub fn normalize_url(url: &str) -> Result<Uri, ScrapeError> {
    let bad = || ScrapeError::BadUrl {
        url: url.to_string(),
    };
    let full = if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    };
    let uri: Uri = full.parse().map_err(|_| bad())?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return Err(bad());
    }
    if !matches!(uri.path(), "" | "/") {
        return Ok(uri);
    }
    let authority = uri.authority().ok_or_else(bad)?.clone();
    Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query("/metrics")
        .build()
        .map_err(|_| bad())
}

/// GETs `url` (see [`normalize_url`]) and returns the page.
pub async fn fetch(url: &str) -> Result<String, ScrapeError> {
    let uri = normalize_url(url)?;
    let shown = uri.to_string();
    tokio::time::timeout(SCRAPE_TIMEOUT, get(&uri, &shown))
        .await
        .map_err(|_| ScrapeError::Timeout { url: shown.clone() })?
}

async fn get(uri: &Uri, shown: &str) -> Result<String, ScrapeError> {
    let fail = |reason: String| ScrapeError::Fetch {
        url: shown.to_string(),
        reason,
    };
    let (host, port) = (
        uri.host().unwrap_or("127.0.0.1"),
        uri.port_u16().unwrap_or(80),
    );
    let stream = TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|e| fail(e.to_string()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| fail(e.to_string()))?;
    let conn = tokio::spawn(conn);
    let path = uri.path_and_query().map_or("/metrics", |p| p.as_str());
    let authority = uri.authority().map_or(host, |a| a.as_str());
    let req = Request::get(path)
        .header(header::HOST, authority)
        .body(Body::empty())
        .map_err(|e| fail(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let status = resp.status();
    let body = axum::body::to_bytes(Body::new(resp.into_body()), SCRAPE_BYTES_MAX)
        .await
        .map_err(|e| fail(e.to_string()));
    conn.abort();
    if !status.is_success() {
        return Err(ScrapeError::Status {
            url: shown.to_string(),
            status: status.as_u16(),
        });
    }
    String::from_utf8(body?.to_vec()).map_err(|e| fail(e.to_string()))
}

/// The samples of a text exposition, by series (`name` or `name{labels}`, as written).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Samples {
    series: BTreeMap<String, f64>,
}

/// A histogram read from samples: cumulative counts by upper bound, ascending
/// (the last bound is `+Inf`).
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSample {
    pub buckets: Vec<(f64, f64)>,
    pub sum: f64,
    pub count: f64,
}

impl Samples {
    /// Parses the Prometheus / OpenMetrics text format; comment and malformed lines are
    /// skipped.
    pub fn parse(text: &str) -> Self {
        let mut series = BTreeMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some(end) = series_end(line) else {
                continue;
            };
            let (name, rest) = line.split_at(end);
            let Some(value) = rest.split_whitespace().next() else {
                continue;
            };
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => match v.parse::<f64>() {
                    Ok(v) => v,
                    Err(_) => continue,
                },
            };
            series.insert(name.to_string(), value);
        }
        Self { series }
    }

    /// The value of one series, e.g. `flotilla_proposals_total` or
    /// `flotilla_plugin_fuel_consumed_total{call="apply"}`; 0 if absent.
    pub fn value(&self, series: &str) -> f64 {
        self.series.get(series).copied().unwrap_or(0.0)
    }

    /// Whether the series is present.
    pub fn has(&self, series: &str) -> bool {
        self.series.contains_key(series)
    }

    /// The sum over every series of `name` (all its label sets).
    pub fn total(&self, name: &str) -> f64 {
        self.series
            .iter()
            .filter(|(k, _)| {
                k.strip_prefix(name)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('{'))
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// The histogram `name` (without `_bucket`, `_sum`, `_count`), if present.
    pub fn histogram(&self, name: &str) -> Option<HistogramSample> {
        let count_key = format!("{name}_count");
        let count = *self.series.get(&count_key)?;
        let bucket_prefix = format!("{name}_bucket{{");
        let mut buckets: Vec<(f64, f64)> = self
            .series
            .range(bucket_prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&bucket_prefix))
            .filter_map(|(k, v)| Some((le_of(k)?, *v)))
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Some(HistogramSample {
            buckets,
            sum: self.value(&format!("{name}_sum")),
            count,
        })
    }

    /// Adds `other`'s samples to these (several nodes' counters into one).
    pub fn add(&mut self, other: &Samples) {
        for (k, v) in &other.series {
            *self.series.entry(k.clone()).or_insert(0.0) += v;
        }
    }

    /// What changed from `before` to `self` (counters and histograms; a gauge's delta
    /// means little).
    pub fn since(&self, before: &Samples) -> Samples {
        let series = self
            .series
            .iter()
            .map(|(k, v)| (k.clone(), v - before.value(k)))
            .collect();
        Samples { series }
    }
}

impl HistogramSample {
    /// The `q` quantile, interpolated linearly inside its bucket as Prometheus's
    /// `histogram_quantile` does: approximate, within the bucket's bounds. `None` with
    /// no observations; the highest finite bound if it falls in the `+Inf` bucket.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count <= 0.0 || self.buckets.is_empty() {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * self.count;
        let (mut lower, mut below) = (0.0, 0.0);
        for &(bound, cumulative) in &self.buckets {
            if cumulative >= rank && cumulative > below {
                if bound.is_infinite() {
                    return Some(lower);
                }
                let share = (rank - below) / (cumulative - below);
                return Some(lower + (bound - lower) * share);
            }
            if bound.is_finite() {
                lower = bound;
            }
            below = cumulative;
        }
        Some(lower)
    }

    /// The mean observation.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum / self.count)
    }
}

/// Where the series name (with its labels) of a sample line ends: at the first
/// whitespace outside the braces (label values are quoted and may hold anything).
fn series_end(line: &str) -> Option<usize> {
    let (mut in_braces, mut in_quotes, mut escaped) = (false, false, false);
    for (i, c) in line.char_indices() {
        if in_quotes {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_quotes = false,
                _ => {}
            }
            continue;
        }
        match c {
            '{' => in_braces = true,
            '}' => in_braces = false,
            '"' if in_braces => in_quotes = true,
            c if c.is_whitespace() && !in_braces => return (i > 0).then_some(i),
            _ => {}
        }
    }
    None
}

/// The `le` label of a bucket series.
fn le_of(series: &str) -> Option<f64> {
    let start = series.find("le=\"")? + 4;
    let rest = series.get(start..)?;
    let value = rest.get(..rest.find('"')?)?;
    match value {
        "+Inf" => Some(f64::INFINITY),
        v => v.parse().ok(),
    }
}
