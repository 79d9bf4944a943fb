//! Process faults under load, with the clients' history checked (guarantees 1 and 2 of
//! DESIGN.md section 7). A 3-node cluster runs a `kv` group of three replicas; six
//! clients, each on its own connection that moves to the next node when one fails, put,
//! read (linearizable) and compare-and-swap a few keys and record every request in a
//! [`History`]. Meanwhile a fault loop driven by a seed picks a node — the group's
//! leader more often than a follower — and either kills it with SIGKILL and restarts
//! it, or freezes it with SIGSTOP for 1–3 s and thaws it with SIGCONT. Every few rounds
//! (an *epoch*) the clients stop, each key is read once more, and the epoch's history
//! must pass the linearizability checker (so every acknowledged put is visible or
//! consistently superseded); the next epoch uses fresh keys, so long runs are checked in
//! slices of bounded size. At the end every replica must hold the same state.
//!
//! A request counts as not having run only when the answer proves it (NOT_LEADER from a
//! node, a connection that could not be opened); then the client retries it elsewhere
//! inside the same operation. Any other failure is an unknown outcome.
//!
//! The seed is printed; `FAULT_SEED=<n>` replays a run's fault schedule (the timing of
//! the clients differs from run to run). `FAULT_ROUNDS` sets the number of faults
//! (default 8: one epoch, about 30 s). A long run:
//!
//! ```sh
//! FAULT_ROUNDS=500 cargo test -p flotilla --release --test integration t90_fault_loop:: -- --nocapture
//! ```
//!
//! The second test corrupts the newest journal file of a stopped single node (cut short,
//! zeroed, bytes flipped) and restarts it: the node must either refuse to start with an
//! error in its log, or serve every acknowledged write at its last value — never
//! garbage, never an older state passed off as current.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use flotilla::proto::v1::admin_client::AdminClient;
use flotilla::proto::v1::client_client::ClientClient;
use flotilla::proto::v1::{
    CreateGroupRequest, GroupStatusRequest, ProposeRequest, QueryRequest, ReadConsistency,
};
use flotilla_tests::linearizability::{CheckResult, History, KvInput, KvModel, KvOutput};
use flotilla_tests::{Cluster, NodeProcess, digests_agree, propose, query};
use serde_json::json;
use tonic::Code;
use tonic::transport::Channel;

const BIN: &str = env!("CARGO_BIN_EXE_flotilla");
const CLIENTS: u64 = 6;
const KEYS: u64 = 4;
/// Fault rounds checked as one history.
const ROUNDS_PER_EPOCH: u64 = 8;
/// How long one request may take before its outcome counts as unknown.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);

type Input = KvInput<String, String>;
type Output = KvOutput<String>;

/// A tiny deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

async fn connect(addr: &str) -> Option<ClientClient<Channel>> {
    let ch = Channel::from_shared(format!("http://{addr}")).ok()?;
    ch.connect_timeout(Duration::from_millis(300))
        .timeout(REQUEST_TIMEOUT)
        .connect()
        .await
        .ok()
        .map(ClientClient::new)
}

/// How one attempt ended.
enum Attempt {
    Done(Output),
    /// The answer proves the request did not run: try another node.
    NotRun,
    Unknown,
}

fn classify(e: &tonic::Status) -> Attempt {
    if e.metadata().get("x-flotilla-not-leader").is_some() {
        return Attempt::NotRun;
    }
    if e.code() == Code::Unavailable
        && (e.message().contains("tcp connect") || e.message().contains("onnection refused"))
    {
        return Attempt::NotRun;
    }
    Attempt::Unknown
}

async fn attempt(c: &mut ClientClient<Channel>, group: u64, input: &Input) -> Attempt {
    match input {
        KvInput::Put { key, value } => {
            let cmd = json!({"put": {"key": key, "value": value}});
            match propose(c, group, &cmd).await {
                Ok(_) => Attempt::Done(KvOutput::Ok),
                Err(e) => classify(&e),
            }
        }
        KvInput::Cas { key, expected, new } => {
            let cmd = json!({"cas": {"key": key, "expected": expected, "new": new}});
            match propose(c, group, &cmd).await {
                Ok(_) => Attempt::Done(KvOutput::Cas(true)),
                Err(e) if e.code() == Code::FailedPrecondition => {
                    Attempt::Done(KvOutput::Cas(false))
                }
                Err(e) => classify(&e),
            }
        }
        KvInput::Get { key } => {
            let q = json!({"get": {"key": key}});
            match query(c, group, &q, ReadConsistency::Linearizable).await {
                Ok(v) => Attempt::Done(KvOutput::Value(v["value"].as_str().map(String::from))),
                Err(e) => classify(&e),
            }
        }
        KvInput::Delete { .. } => Attempt::Unknown,
    }
}

/// A client with one connection that moves to the next node when it fails.
struct RotatingClient {
    addrs: Vec<String>,
    at: usize,
    conn: Option<ClientClient<Channel>>,
}

impl RotatingClient {
    fn new(addrs: Vec<String>, start: usize) -> Self {
        Self {
            addrs,
            at: start,
            conn: None,
        }
    }

    fn rotate(&mut self) {
        self.conn = None;
        self.at += 1;
    }

    /// Runs `input` until it has a known outcome, an unknown one, or the deadline.
    async fn run(&mut self, group: u64, input: &Input, deadline: Instant) -> Option<Output> {
        loop {
            if Instant::now() > deadline {
                return None;
            }
            if self.conn.is_none() {
                let addr = self.addrs[self.at % self.addrs.len()].clone();
                self.conn = connect(&addr).await;
                if self.conn.is_none() {
                    // Nothing was sent.
                    self.rotate();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
            let c = self.conn.as_mut()?;
            match attempt(c, group, input).await {
                Attempt::Done(out) => return Some(out),
                Attempt::NotRun => {
                    self.rotate();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Attempt::Unknown => {
                    self.rotate();
                    return None;
                }
            }
        }
    }
}

/// Stats of one client over an epoch.
#[derive(Default, Debug, Clone, Copy)]
struct ClientStats {
    ops: u64,
    unknown: u64,
}

#[allow(clippy::too_many_arguments)]
async fn client_loop(
    addrs: Vec<String>,
    group: u64,
    id: u64,
    seed: u64,
    epoch: u64,
    history: Arc<History<Input, Output>>,
    stop: Arc<AtomicBool>,
) -> ClientStats {
    let mut rng = Rng::new(seed ^ (id + 1).wrapping_mul(0x2545_F491_4F6C_DD1D) ^ epoch);
    let mut c = RotatingClient::new(addrs, id as usize);
    let mut last_seen: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut stats = ClientStats::default();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("e{epoch}-k{}", rng.below(KEYS));
        let value = format!("c{id}-{n}");
        n += 1;
        let input = match rng.below(3) {
            0 => KvInput::Put { key, value },
            1 => KvInput::Get { key },
            _ => KvInput::Cas {
                expected: last_seen.get(&key).cloned().flatten(),
                key,
                new: Some(value),
            },
        };
        let op = history.invoke(id, input.clone());
        stats.ops += 1;
        let deadline = Instant::now() + REQUEST_TIMEOUT * 3;
        match c.run(group, &input, deadline).await {
            Some(out) => {
                if let (KvInput::Get { key }, KvOutput::Value(v)) = (&input, &out) {
                    last_seen.insert(key.clone(), v.clone());
                }
                history.complete(op, out);
            }
            None => {
                history.unknown(op);
                stats.unknown += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    stats
}

async fn admin(addr: &str) -> anyhow::Result<AdminClient<Channel>> {
    Ok(AdminClient::new(
        Channel::from_shared(format!("http://{addr}"))?
            .connect_timeout(Duration::from_millis(300))
            .timeout(Duration::from_secs(2))
            .connect()
            .await?,
    ))
}

/// The node id of the group's leader as some node sees it, if any answers in time.
async fn leader_node(addrs: &[String], group: u64) -> Option<u64> {
    for a in addrs {
        let Ok(mut c) = admin(a).await else { continue };
        if let Ok(st) = c.group_status(GroupStatusRequest { group_id: group }).await {
            let st = st.into_inner();
            if st.role == "Leader" && st.leader_peer_id != 0 {
                return Some(st.leader_peer_id & 0xFFFF);
            }
        }
    }
    None
}

fn signal(pid: u32, sig: &str) -> anyhow::Result<()> {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()?
        .success();
    anyhow::ensure!(ok, "kill {sig} {pid} failed");
    Ok(())
}

/// One fault on one node; returns what it did.
async fn fault(cl: &mut Cluster, group: u64, rng: &mut Rng) -> anyhow::Result<String> {
    let addrs = cl.addrs();
    let leader = leader_node(&addrs, group).await;
    let n = cl.nodes.len() as u64;
    let target = match leader {
        Some(l) if rng.below(3) != 0 => l,
        _ => 1 + rng.below(n),
    };
    let role = if Some(target) == leader {
        "leader"
    } else {
        "follower"
    };
    let node = cl.node(target);
    if rng.below(2) == 0 {
        let down = Duration::from_millis(rng.below(1000));
        node.kill9()?;
        tokio::time::sleep(down).await;
        node.restart().await?;
        Ok(format!(
            "kill -9 node {target} ({role}), restarted after {down:?}"
        ))
    } else {
        let pid = node
            .pid()
            .ok_or_else(|| anyhow::anyhow!("node {target} is not running"))?;
        let frozen = Duration::from_millis(1000 + rng.below(2000));
        signal(pid, "-STOP")?;
        tokio::time::sleep(frozen).await;
        signal(pid, "-CONT")?;
        Ok(format!("SIGSTOP node {target} ({role}) for {frozen:?}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_and_sigstop_under_load_keep_the_history_linearizable() -> anyhow::Result<()> {
    let seed = env_u64("FAULT_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let rounds = env_u64("FAULT_ROUNDS").unwrap_or(8);
    println!("FAULT_SEED={seed} FAULT_ROUNDS={rounds}");
    let mut rng = Rng::new(seed);
    let mut cl = Cluster::start(BIN, 3).await?;
    cl.nodes[0].deploy("kv", flotilla::examples::KV).await?;
    let group = admin(&cl.nodes[0].addr)
        .await?
        .create_group(CreateGroupRequest {
            plugin: "kv".into(),
            replicas: 3,
            ..Default::default()
        })
        .await?
        .into_inner()
        .group
        .unwrap_or_default()
        .group_id;
    let addrs = cl.addrs();
    let started = Instant::now();
    let (mut total_ops, mut total_unknown) = (0u64, 0u64);
    let epochs = rounds.div_ceil(ROUNDS_PER_EPOCH).max(1);
    for epoch in 0..epochs {
        let history = Arc::new(History::<Input, Output>::new());
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|id| {
                tokio::spawn(client_loop(
                    addrs.clone(),
                    group,
                    id,
                    seed,
                    epoch,
                    history.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        let first = epoch * ROUNDS_PER_EPOCH;
        let last = rounds.min(first + ROUNDS_PER_EPOCH);
        tokio::time::sleep(Duration::from_millis(500)).await;
        for round in first..last {
            tokio::time::sleep(Duration::from_millis(300 + rng.below(1200))).await;
            let did = fault(&mut cl, group, &mut rng).await.map_err(|e| {
                anyhow::anyhow!("round {round} (FAULT_SEED={seed}): {e}\n{}", cl.logs())
            })?;
            println!(
                "round {round}: {did}; {} operations so far",
                history.operations().len()
            );
        }
        // Let the clients see the cluster whole again, then stop them.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        stop.store(true, Ordering::Relaxed);
        let mut stats = ClientStats::default();
        for t in tasks {
            let s = t.await?;
            stats.ops += s.ops;
            stats.unknown += s.unknown;
        }
        // A final read of every key: acknowledged writes must show through.
        let mut reader = RotatingClient::new(addrs.clone(), 0);
        for k in 0..KEYS {
            let input = KvInput::Get {
                key: format!("e{epoch}-k{k}"),
            };
            let op = history.invoke(CLIENTS, input.clone());
            let deadline = Instant::now() + Duration::from_secs(30);
            match reader.run(group, &input, deadline).await {
                Some(out) => history.complete(op, out),
                None => anyhow::bail!(
                    "the final read of {input:?} failed (FAULT_SEED={seed})\n{}",
                    cl.logs()
                ),
            }
        }
        let ops = history.operations();
        let known = ops.iter().filter(|o| o.output.is_some()).count();
        println!(
            "epoch {epoch}: {} operations, {known} known, {} unknown",
            ops.len(),
            stats.unknown
        );
        total_ops += ops.len() as u64;
        total_unknown += stats.unknown;
        anyhow::ensure!(
            known * 2 >= ops.len(),
            "only {known} of {} operations completed (FAULT_SEED={seed})",
            ops.len()
        );
        match history.check::<KvModel<String, String>>() {
            CheckResult::Ok => {}
            other => panic!(
                "epoch {epoch}: history of {} operations is not linearizable (FAULT_SEED={seed}): {other:?}",
                ops.len()
            ),
        }
    }
    let (index, digest) = digests_agree(&addrs, group).await?;
    println!(
        "FAULT_SEED={seed}: {rounds} faults, {total_ops} operations ({total_unknown} unknown) in {:?}; replicas agree at index {index}: {digest}",
        started.elapsed()
    );
    for (i, n) in cl.nodes.iter_mut().enumerate() {
        anyhow::ensure!(n.is_running(), "node {} is down:\n{}", i + 1, n.log());
    }
    Ok(())
}

// ---- A corrupted log tail ----------------------------------------------------------

/// Files under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The newest non-empty journal file of the node's fjall database.
fn newest_journal(data_dir: &Path) -> anyhow::Result<PathBuf> {
    let all = files(&data_dir.join("db"));
    let journals: Vec<&PathBuf> = all
        .iter()
        .filter(|p| {
            // fjall 3 names its journals `<n>.jnl`; older versions keep a `journals/` dir.
            p.extension().is_some_and(|e| e == "jnl") || p.to_string_lossy().contains("journal")
        })
        .filter(|p| std::fs::metadata(p).map(|m| m.len() > 0).unwrap_or(false))
        .collect();
    journals
        .iter()
        .max_by_key(|p| {
            let m = std::fs::metadata(p).ok();
            (
                m.as_ref().and_then(|m| m.modified().ok()),
                m.map_or(0, |m| m.len()),
            )
        })
        .map(|p| (*p).clone())
        .ok_or_else(|| anyhow::anyhow!("no journal file under {}/db: {all:?}", data_dir.display()))
}

/// Damage to the written part of a journal file. fjall preallocates journal files, so
/// "the end" is the last non-zero byte, not the file's length.
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// Cut the file this many bytes before the end of its data (a lost tail).
    Truncate(u64),
    /// Zero this many bytes at the end of the data (a torn write in a preallocated file).
    Zero(u64),
    /// Flip every bit of `len` bytes starting `from_end` bytes before the end of the data.
    Flip { from_end: u64, len: u64 },
}

fn damage(path: &Path, how: Damage) -> anyhow::Result<String> {
    let mut bytes = std::fs::read(path)?;
    let file_len = bytes.len();
    let data_end = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    let back = |n: u64| data_end.saturating_sub(n as usize);
    let what = match how {
        Damage::Truncate(n) => {
            std::fs::OpenOptions::new()
                .write(true)
                .open(path)?
                .set_len(back(n) as u64)?;
            return Ok(format!(
                "cut {} at byte {} (data ended at {data_end}, file of {file_len})",
                path.display(),
                back(n)
            ));
        }
        Damage::Zero(n) => {
            bytes[back(n)..data_end].fill(0);
            format!("zeroed bytes {}..{data_end}", back(n))
        }
        Damage::Flip { from_end, len } => {
            let start = back(from_end);
            let end = (start + len as usize).min(data_end);
            for b in &mut bytes[start..end] {
                *b = !*b;
            }
            format!("flipped bytes {start}..{end} (data ends at {data_end})")
        }
    };
    std::fs::write(path, &bytes)?;
    Ok(format!("{what} of {} ({file_len} bytes)", path.display()))
}

/// What a damaged node did on restart.
#[derive(Debug)]
enum Outcome {
    Refused(String),
    Served {
        intact: usize,
        missing: usize,
        older: usize,
        /// WARN and ERROR lines the node logged while restarting.
        warnings: Vec<String>,
    },
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(why) => write!(f, "refused to start: {why}"),
            Self::Served {
                intact,
                missing,
                older,
                warnings,
            } => write!(
                f,
                "started and served only written values: {intact} keys at their last value, \
                 {older} at an older one, {missing} absent; restart warnings: {warnings:?}"
            ),
        }
    }
}

async fn corrupt_and_restart(how: Damage) -> anyhow::Result<Outcome> {
    let mut node = NodeProcess::start(BIN).await?;
    node.deploy("kv", flotilla::examples::KV).await?;
    let group = node.create_group("kv").await?;
    let mut c = node.client().await?;
    // Every value ever written per key; the latest one is what an intact node holds.
    let mut written: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for i in 0..300u64 {
        let key = format!("k{:02}", i % 40);
        let value = format!("v{i}-{}", "x".repeat((i % 7) as usize * 20));
        propose(&mut c, group, &json!({"put": {"key": key, "value": value}})).await?;
        written.entry(key).or_default().push(value);
    }
    drop(c);
    // The durability mark trails the last synced round by at most 10 ms; a disk that
    // loses writes acknowledged before that must be caught.
    tokio::time::sleep(Duration::from_millis(200)).await;
    node.kill9()?;
    let journal = newest_journal(&node.data_dir)?;
    let what = damage(&journal, how)?;
    println!("{how:?}: {what}");
    let log_before = node.log().len();
    node.spawn()?;
    if let Err(e) = node.wait_ready(Duration::from_secs(30)).await {
        let log = node.log();
        let last: Vec<&str> = log.lines().rev().take(5).collect();
        anyhow::ensure!(
            !node.is_running(),
            "the damaged node neither served nor exited: {e}"
        );
        anyhow::ensure!(
            log.to_lowercase().contains("error") || log.to_lowercase().contains("corrupt"),
            "the node exited without saying why:\n{log}"
        );
        return Ok(Outcome::Refused(last.join(" | ")));
    }
    let warnings: Vec<String> = node.log()[log_before..]
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .map(String::from)
        .collect();
    // It serves: every value must be one that was written to that key, never garbage.
    let mut c = node.client().await?;
    let (mut intact, mut missing, mut older) = (0, 0, 0);
    let all_keys: BTreeSet<String> = written.keys().cloned().collect();
    for (pass, consistency) in [ReadConsistency::Linearizable, ReadConsistency::Stale]
        .into_iter()
        .enumerate()
    {
        for key in &all_keys {
            let r = c
                .query(QueryRequest {
                    group_id: group,
                    request: json!({"get": {"key": key}}).to_string().into_bytes(),
                    consistency: consistency as i32,
                })
                .await;
            let v: serde_json::Value = match r {
                Ok(r) => serde_json::from_slice(&r.into_inner().output)?,
                Err(e) => anyhow::bail!("reading {key} after the damage: {e:?}\n{}", node.log()),
            };
            let versions = &written[key];
            let first = usize::from(pass == 0);
            match v["value"].as_str() {
                None => missing += first,
                Some(s) if Some(&s.to_string()) == versions.last() => intact += first,
                Some(s) if versions.iter().any(|w| w == s) => older += first,
                Some(s) => anyhow::bail!(
                    "{how:?}: key {key} serves {s:?}, which was never written to it ({versions:?})"
                ),
            }
        }
        // Scans see the same: only written keys with written values.
        let pairs = query(&mut c, group, &json!({"scan": {}}), consistency).await?;
        for p in pairs["pairs"].as_array().cloned().unwrap_or_default() {
            let (k, v) = (
                p["key"].as_str().unwrap_or(""),
                p["value"].as_str().unwrap_or(""),
            );
            anyhow::ensure!(
                written.get(k).is_some_and(|vs| vs.iter().any(|w| w == v)),
                "{how:?}: scan serves {k:?} = {v:?}, never written"
            );
        }
    }
    // And it still takes writes.
    c.propose(ProposeRequest {
        group_id: group,
        command: json!({"put": {"key": "after", "value": "ok"}})
            .to_string()
            .into_bytes(),
        request_id: String::new(),
    })
    .await?;
    Ok(Outcome::Served {
        intact,
        missing,
        older,
        warnings,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_damaged_log_tail_is_never_served_as_data() -> anyhow::Result<()> {
    let mut outcomes = Vec::new();
    for how in [
        Damage::Truncate(37),
        Damage::Truncate(5000),
        Damage::Zero(700),
        Damage::Flip {
            from_end: 300,
            len: 16,
        },
        Damage::Flip {
            from_end: 5000,
            len: 64,
        },
    ] {
        let outcome = corrupt_and_restart(how).await?;
        println!("{how:?} -> {outcome}");
        // Every value was acknowledged: serving an older one, or none, is silent loss.
        if let Outcome::Served { missing, older, .. } = &outcome {
            anyhow::ensure!(
                *missing == 0 && *older == 0,
                "{how:?}: acknowledged writes were silently lost: {outcome}"
            );
        }
        outcomes.push(format!("{how:?}: {outcome}"));
    }
    println!("{}", outcomes.join("\n"));
    Ok(())
}
