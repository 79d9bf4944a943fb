//! The attacks of "One request bricks the cluster", each sent as an ordinary client
//! would, against a real 3-node cluster, with what it did to the cluster measured: the
//! answer the attacker got, the worst write latency of a neighbour group writing all
//! along, and the nodes' peak resident memory. `t21_attacks` asserts bounds on them on
//! every test run; `examples/attacks.rs` prints them as a table for one binary (the
//! build before the fix, or after it).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use flotilla::proto::v1::batch_item::Op;
use flotilla::proto::v1::batch_result::Result as Outcome;
use flotilla::proto::v1::{
    BatchItem, BatchRequest, CreateGroupRequest, GroupStatusRequest, ProposeRequest,
    ReadConsistency, UpgradeGroupRequest,
};
use serde_json::{Value, json};
use tonic::Code;

use crate::{Cluster, query};

/// How hard each attack pushes: the issue's own sizes, or smaller ones that still
/// cross every limit, for CI.
#[derive(Clone, Copy, Debug)]
pub struct Scale {
    /// `kv.put` calls in one command.
    pub puts: u64,
    /// `kv.get` calls of a 16 KiB key in one command.
    pub gets: u64,
    /// Endless loops sent at once on one Batch stream.
    pub loops: usize,
    /// Values of 4 MiB stored for the scan attacks.
    pub big_values: u64,
    /// Commands of 12 MiB of writes each, eight at a time.
    pub amplify_commands: usize,
}

impl Scale {
    /// The sizes the issue reported.
    pub const ISSUE: Scale = Scale {
        puts: 1_000_000,
        gets: 1_000_000,
        loops: 64,
        big_values: 195,
        amplify_commands: 100,
    };
    /// Enough to cross every limit in a CI run.
    pub const CI: Scale = Scale {
        puts: 1_000_000,
        gets: 1_000_000,
        loops: 64,
        big_values: 24,
        amplify_commands: 8,
    };
}

/// What one attack did.
#[derive(Clone, Debug)]
pub struct Report {
    pub attack: String,
    /// What the attacker was told, summarized.
    pub answer: String,
    /// The neighbour group's slowest write while the attack ran (or its error).
    pub neighbour_worst: Duration,
    /// Neighbour writes made during the measurement, and how many failed.
    pub neighbour_writes: usize,
    pub neighbour_errors: usize,
    /// Highest resident memory of any node before the attack, and during it.
    pub rss_before_mib: u64,
    pub rss_peak_mib: u64,
    /// Every node still running afterwards.
    pub nodes_up: bool,
}

/// A 3-node cluster with `kv` and `hostile` deployed and a `kv` group (the neighbour)
/// on every node.
pub struct Rig {
    pub cluster: Cluster,
    pub neighbour: u64,
}

impl Rig {
    pub async fn start(bin: &str) -> anyhow::Result<Self> {
        let cluster = Cluster::start(bin, 3).await?;
        let first = &cluster.nodes[0];
        first.deploy("kv", flotilla::examples::KV).await?;
        first.deploy("hostile", flotilla::examples::HOSTILE).await?;
        let mut rig = Self {
            cluster,
            neighbour: 0,
        };
        rig.neighbour = rig.group("kv", 0).await?;
        let mut c = rig.cluster.nodes[0].client().await?;
        for i in 0..20 {
            crate::propose(
                &mut c,
                rig.neighbour,
                &json!({"set": {"key": format!("warm{i}"), "value": "x"}}),
            )
            .await?;
        }
        Ok(rig)
    }

    /// A new group of 3 replicas running `plugin`, with a byte quota when not 0.
    pub async fn group(&self, plugin: &str, quota_bytes: u64) -> anyhow::Result<u64> {
        let g = self.cluster.nodes[0]
            .admin()
            .await?
            .create_group(CreateGroupRequest {
                plugin: plugin.into(),
                replicas: 3,
                quota_bytes,
                ..Default::default()
            })
            .await?
            .into_inner()
            .group
            .map(|g| g.group_id)
            .unwrap_or_default();
        // Wait until it has a leader and applies.
        let mut c = self.cluster.nodes[0].client().await?;
        for _ in 0..100 {
            // Any answer from the plugin (even "cannot decode") means the group serves.
            let probe = json!({"get": {"key": "probe"}});
            match query(&mut c, g, &probe, ReadConsistency::Linearizable).await {
                Err(s)
                    if matches!(
                        s.code(),
                        Code::Unavailable | Code::NotFound | Code::ResourceExhausted
                    ) => {}
                _ => return Ok(g),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("group {g} never answered")
    }

    fn pids(&self) -> Vec<u32> {
        self.cluster.nodes.iter().filter_map(|n| n.pid()).collect()
    }

    /// Runs `attack` while the neighbour writes and the nodes' memory is sampled.
    pub async fn measure<F>(&self, name: &str, attack: F) -> Report
    where
        F: std::future::Future<Output = String>,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let pids = self.pids();
        let sampler = tokio::spawn(sample_rss(pids.clone(), stop.clone()));
        let writer = {
            let addr = self.cluster.nodes[0].addr.clone();
            let (group, stop) = (self.neighbour, stop.clone());
            tokio::spawn(async move { neighbour_writes(addr, group, stop).await })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let rss_before_mib = pids.iter().filter_map(|p| rss_mib(*p)).max().unwrap_or(0);
        let answer = attack.await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, Ordering::Relaxed);
        let rss_peak_mib = sampler.await.unwrap_or(0);
        let (latencies, neighbour_errors) = writer.await.unwrap_or_default();
        // A node that exited is gone or a zombie: either way it has no resident memory.
        let nodes_up = pids.iter().all(|p| rss_mib(*p).is_some());
        Report {
            attack: name.into(),
            answer,
            neighbour_worst: latencies.iter().copied().max().unwrap_or_default(),
            neighbour_writes: latencies.len(),
            neighbour_errors,
            rss_before_mib,
            rss_peak_mib,
            nodes_up,
        }
    }
}

/// Writes to `group` one after another until `stop`; returns each write's latency and
/// the number that failed (a failure counts with the time it took).
async fn neighbour_writes(
    addr: String,
    group: u64,
    stop: Arc<AtomicBool>,
) -> (Vec<Duration>, usize) {
    let mut latencies = Vec::new();
    let mut errors = 0;
    let Ok(mut c) = connect(&addr).await else {
        return (latencies, 1);
    };
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let done = tokio::time::timeout(
            Duration::from_secs(60),
            crate::propose(
                &mut c,
                group,
                &json!({"set": {"key": format!("n{i}"), "value": "x"}}),
            ),
        )
        .await;
        latencies.push(started.elapsed());
        if !matches!(done, Ok(Ok(_))) {
            errors += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        i += 1;
    }
    (latencies, errors)
}

/// A client of the node at `addr` that takes answers up to 64 MiB.
async fn connect(
    addr: &str,
) -> Result<flotilla::proto::v1::client_client::ClientClient<tonic::transport::Channel>, String> {
    let ch = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(flotilla::proto::v1::client_client::ClientClient::new(ch)
        .max_decoding_message_size(64 << 20))
}

/// Samples the resident memory of `pids` every 25 ms until `stop`; returns the highest
/// value seen for any of them, in MiB.
async fn sample_rss(pids: Vec<u32>, stop: Arc<AtomicBool>) -> u64 {
    let mut peak = 0;
    while !stop.load(Ordering::Relaxed) {
        for p in &pids {
            peak = peak.max(rss_mib(*p).unwrap_or(0));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    peak
}

/// A process's resident memory in MiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_mib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// `code: message`, the message cut to `max` characters.
pub fn show(status: &tonic::Status) -> String {
    let message: String = status.message().chars().take(240).collect();
    format!("{:?}: {message}", status.code())
}

fn show_result(result: Result<(u64, Value), tonic::Status>) -> String {
    match result {
        Ok((_, v)) => format!("Ok: {}", cut(&v.to_string())),
        Err(s) => show(&s),
    }
}

fn cut(text: &str) -> String {
    text.chars().take(140).collect()
}

/// Counts of answers by code, like `62 ResourceExhausted, 2 FailedPrecondition`.
fn tally(codes: impl Iterator<Item = String>) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for code in codes {
        match counts.iter_mut().find(|(c, _)| *c == code) {
            Some((_, n)) => *n += 1,
            None => counts.push((code, 1)),
        }
    }
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    counts
        .iter()
        .map(|(c, n)| format!("{n} {c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A key of `n` bytes of `a`.
pub fn long_key(n: usize) -> String {
    "a".repeat(n)
}

/// The issue's first command: `delete` of a 70,000-byte key through the stock `kv`.
pub async fn long_key_delete(rig: &Rig, group: u64) -> Result<(u64, Value), tonic::Status> {
    let mut c = client(rig).await?;
    crate::propose(&mut c, group, &json!({"delete": {"key": long_key(70_000)}})).await
}

/// The same key in a `get` query.
pub async fn long_key_get(rig: &Rig, group: u64) -> Result<Value, tonic::Status> {
    let mut c = client(rig).await?;
    query(
        &mut c,
        group,
        &json!({"get": {"key": long_key(70_000)}}),
        ReadConsistency::Linearizable,
    )
    .await
}

async fn client(
    rig: &Rig,
) -> Result<
    flotilla::proto::v1::client_client::ClientClient<tonic::transport::Channel>,
    tonic::Status,
> {
    rig.cluster.nodes[0]
        .client()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))
}

/// One command of a hostile group, answered.
pub async fn hostile(rig: &Rig, group: u64, command: Value) -> String {
    match client(rig).await {
        Ok(mut c) => show_result(crate::propose(&mut c, group, &command).await),
        Err(s) => show(&s),
    }
}

/// `n` endless loops as items of one Batch stream; the answers tallied by code.
pub async fn loops_on_one_stream(rig: &Rig, group: u64, n: usize) -> String {
    let items = (0..n as u64)
        .map(|id| BatchItem {
            id,
            op: Some(Op::Propose(ProposeRequest {
                group_id: group,
                command: json!({"loop_forever": {}}).to_string().into_bytes(),
                request_id: String::new(),
            })),
        })
        .collect();
    let mut c = match client(rig).await {
        Ok(c) => c,
        Err(s) => return show(&s),
    };
    let request = BatchRequest { items };
    let mut inbound = match c.batch(tokio_stream::iter(vec![request])).await {
        Ok(r) => r.into_inner(),
        Err(s) => return show(&s),
    };
    let mut codes = Vec::new();
    while codes.len() < n {
        match tokio::time::timeout(Duration::from_secs(120), inbound.message()).await {
            Ok(Ok(Some(resp))) => {
                for r in resp.results {
                    codes.push(match r.result {
                        Some(Outcome::Error(e)) => format!("{:?}", Code::from(e.code)),
                        Some(_) => "Ok".into(),
                        None => "no outcome".into(),
                    });
                }
            }
            Ok(Ok(None)) => break,
            Ok(Err(s)) => {
                codes.push(show(&s));
                break;
            }
            Err(_) => {
                codes.push("no answer in 120 s".into());
                break;
            }
        }
    }
    format!("{} answers: {}", codes.len(), tally(codes.into_iter()))
}

/// Stores `count` values of 4 MiB in `group`, four per command.
pub async fn fill_big_values(rig: &Rig, group: u64, count: u64) -> anyhow::Result<()> {
    let mut c = rig.cluster.nodes[0].client().await?;
    let mut first = 0;
    while first < count {
        let n = (count - first).min(3);
        crate::propose(
            &mut c,
            group,
            &json!({"fill": {"prefix": "big/", "first": first, "count": n, "value_bytes": 4u64 << 20}}),
        )
        .await?;
        first += n;
    }
    Ok(())
}

/// `concurrency` linearizable `scan_all` queries at once; their answers tallied.
pub async fn scan_queries(rig: &Rig, group: u64, concurrency: usize) -> String {
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let node = rig.cluster.nodes[0].addr.clone();
            tokio::spawn(async move {
                let mut c = connect(&node).await?;
                query(
                    &mut c,
                    group,
                    &json!({"scan_all": {}}),
                    ReadConsistency::Linearizable,
                )
                .await
                .map(|v| format!("Ok: {v} pairs"))
                .map_err(|s| show(&s))
            })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(match t.await {
            Ok(Ok(a)) | Ok(Err(a)) => a,
            Err(e) => e.to_string(),
        });
    }
    tally(answers.into_iter())
}

/// `commands` commands of 12 MiB of writes each (to keys of their own), eight in
/// flight, each sent again while it is answered "did not run" (RESOURCE_EXHAUSTED);
/// the final answers tallied, and what the group stores afterwards.
pub async fn amplify(rig: &Rig, group: u64, commands: usize) -> String {
    let mut answers = Vec::new();
    for wave in (0..commands).collect::<Vec<_>>().chunks(8) {
        let tasks: Vec<_> = wave
            .iter()
            .map(|&i| {
                let node = rig.cluster.nodes[0].addr.clone();
                tokio::spawn(async move {
                    let mut c = connect(&node).await?;
                    let command =
                        json!({"amplify": {"bytes": 12u64 << 20, "prefix": format!("a{i}/")}});
                    // As a client would: a command that did not run is sent again.
                    let mut answer = String::new();
                    for _ in 0..20 {
                        match crate::propose(&mut c, group, &command).await {
                            Ok(_) => return Ok("Ok".to_string()),
                            Err(s) if s.code() == Code::ResourceExhausted => {
                                answer = format!("{:?}", s.code());
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                            Err(s) => return Err(format!("{:?}", s.code())),
                        }
                    }
                    Err(answer)
                })
            })
            .collect();
        for t in tasks {
            answers.push(match t.await {
                Ok(Ok(a)) | Ok(Err(a)) => a,
                Err(e) => e.to_string(),
            });
        }
    }
    let stored = match stored_bytes(rig, group).await {
        Some(b) => format!("; the group stores {} MiB", b >> 20),
        None => String::new(),
    };
    format!("{}{stored}", tally(answers.into_iter()))
}

/// The bytes a group stores, from `group status` (where the node reports it).
pub async fn stored_bytes(rig: &Rig, group: u64) -> Option<u64> {
    let mut a = rig.cluster.nodes[0].admin().await.ok()?;
    let s = a
        .group_status(GroupStatusRequest { group_id: group })
        .await
        .ok()?
        .into_inner();
    s.storage.map(|u| u.bytes)
}

/// `n` concurrent reads that each bump a guest static; the highest value any read saw
/// (1 when no read shares an instance with another).
pub async fn statics(rig: &Rig, group: u64, n: usize) -> String {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let node = rig.cluster.nodes[0].addr.clone();
            tokio::spawn(async move {
                let mut c = connect(&node).await.ok()?;
                let v = query(
                    &mut c,
                    group,
                    &json!({"count_static": {}}),
                    ReadConsistency::Linearizable,
                )
                .await
                .ok()?;
                v.as_str()?.parse::<u64>().ok()
            })
        })
        .collect();
    let mut seen = Vec::new();
    for t in tasks {
        if let Ok(Some(v)) = t.await {
            seen.push(v);
        }
    }
    format!(
        "{} reads answered; highest counter seen {}",
        seen.len(),
        seen.iter().max().copied().unwrap_or(0)
    )
}

/// The `counter` example with its memory made to start at 2000 pages (125 MiB), deployed:
/// a plugin that implements the world and is over the sandbox's memory limit.
pub async fn deploy_big_memory(rig: &Rig) -> String {
    let Some(module) = with_initial_memory(flotilla::examples::COUNTER, 2000) else {
        return "the counter example has no memory section to patch".into();
    };
    match rig.cluster.nodes[0].deploy("big-memory", &module).await {
        Ok(d) => format!("Ok: deployed {d}"),
        Err(s) => show(&s),
    }
}

/// `module` (a core module with exactly one memory) with that memory's initial size set
/// to `pages` and no maximum: its sections are walked and the memory section rewritten.
pub fn with_initial_memory(module: &[u8], pages: u32) -> Option<Vec<u8>> {
    let mut out = module.get(..8)?.to_vec();
    let mut at = 8;
    let mut patched = false;
    while at < module.len() {
        let id = *module.get(at)?;
        let (size, len) = leb(module.get(at + 1..)?)?;
        let end = at + 1 + len + size as usize;
        if id == 5 {
            let (count, _) = leb(module.get(at + 1 + len..end)?)?;
            if count != 1 {
                return None;
            }
            let mut section = Vec::new();
            push_leb(&mut section, 1);
            section.push(0); // limits: a minimum only
            push_leb(&mut section, pages);
            out.push(5);
            push_leb(&mut out, section.len() as u32);
            out.extend(section);
            patched = true;
        } else {
            out.extend_from_slice(module.get(at..end)?);
        }
        at = end;
    }
    patched.then_some(out)
}

/// An unsigned LEB128 number and its length in bytes.
fn leb(bytes: &[u8]) -> Option<(u32, usize)> {
    let mut value = 0u32;
    for (i, b) in bytes.iter().enumerate().take(5) {
        value |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

fn push_leb(out: &mut Vec<u8>, mut value: u32) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// The same bytes deployed as `x-start` and then `probe`; a group created on `x-start`
/// upgraded to `probe`: what the upgrade answer says the group runs.
pub async fn same_bytes_two_names(rig: &Rig) -> String {
    let node = &rig.cluster.nodes[0];
    for name in ["x-start", "probe"] {
        if let Err(s) = node.deploy(name, flotilla::examples::COUNTER).await {
            return show(&s);
        }
    }
    let group = match rig.group("x-start", 0).await {
        Ok(g) => g,
        Err(e) => return e.to_string(),
    };
    let Ok(mut a) = node.admin().await else {
        return "no admin client".into();
    };
    match a
        .upgrade_group(UpgradeGroupRequest {
            group_id: group,
            plugin: "probe".into(),
        })
        .await
    {
        Ok(r) => format!(
            "Ok: group {group} runs {}",
            r.into_inner().group.map(|g| g.plugin).unwrap_or_default()
        ),
        Err(s) => show(&s),
    }
}

/// Stops every node (SIGKILL, as a crash) and starts them again on their data dirs;
/// `Ok` once all answer again.
pub async fn restart_all(rig: &mut Rig, wait: Duration) -> anyhow::Result<()> {
    for n in &mut rig.cluster.nodes {
        n.reap();
        n.kill9()?;
    }
    for n in &mut rig.cluster.nodes {
        n.spawn()?;
    }
    for n in &mut rig.cluster.nodes {
        n.wait_ready(wait).await?;
    }
    Ok(())
}

/// One report as a Markdown table row.
pub fn row(r: &Report) -> String {
    format!(
        "| {} | {} | {} ms ({} writes, {} failed) | {} -> {} MiB | {} |",
        r.attack,
        r.answer.replace('|', "/"),
        r.neighbour_worst.as_millis(),
        r.neighbour_writes,
        r.neighbour_errors,
        r.rss_before_mib,
        r.rss_peak_mib,
        if r.nodes_up { "all up" } else { "NODES DOWN" }
    )
}
