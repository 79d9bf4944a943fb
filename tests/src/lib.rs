//! Test harness for Flotilla's integration tests: starts real `flotilla server`
//! processes on 127.0.0.1 with their own data dirs, kills them (`SIGKILL`) and restarts
//! them, runs the `flotilla` CLI as a user would, and gives gRPC clients.
//!
//! The test files in this folder are compiled as integration tests of the `flotilla`
//! package (see `host/Cargo.toml`), so cargo builds the real `flotilla` binary before
//! running them and hands its path over as `env!("CARGO_BIN_EXE_flotilla")`; each file
//! passes that path to [`NodeProcess::start`].

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use flotilla::proto::v1::admin_client::AdminClient;
use flotilla::proto::v1::client_client::ClientClient;
use flotilla::proto::v1::{
    CreateGroupRequest, DeployPluginChunk, ProposeRequest, QueryRequest, ReadConsistency,
};
use tonic::transport::Channel;

pub mod attacks;
pub mod linearizability;

/// A port on 127.0.0.1 that was free a moment ago, chosen below the kernel's
/// ephemeral range (32768 and up on Linux): a test that kills a server and restarts it
/// on the same port must not find it taken by some client's outgoing connection.
///
/// Ports are handed out in sequence from a per-process random start, so two tests of
/// one binary never get the same port (a port is only checked free, not held, until its
/// server binds it; random picks collided in parallel tests).
pub fn free_port() -> u16 {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    const BASE: u64 = 20_000;
    const SPAN: u64 = 12_000;
    static START: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let start = *START.get_or_init(|| {
        let mut x = u64::from(std::process::id())
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x % SPAN
    });
    for _ in 0..SPAN {
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (BASE + (start + k) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// `n` consecutive ports, the first returned, claimed from [`free_port`]'s sequence (for
/// `flotilla dev`, which takes a port and the next ones): only ports handed out by that
/// sequence are kept from the process's other tests, so checking that the next port is
/// free is not enough.
pub fn consecutive_free_ports(n: u16) -> u16 {
    for _ in 0..1000 {
        let first = free_port();
        if (1..n).all(|k| first.checked_add(k) == Some(free_port())) {
            return first;
        }
    }
    panic!("no {n} consecutive free ports on 127.0.0.1 in 1000 tries");
}

/// One `flotilla server` process and its data dir.
pub struct NodeProcess {
    pub bin: PathBuf,
    pub addr: String,
    pub data_dir: PathBuf,
    /// Extra `flotilla server` arguments (cluster membership).
    pub args: Vec<String>,
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
}

impl NodeProcess {
    /// Starts a node on a fresh data dir and waits until it answers.
    pub async fn start(bin: &str) -> anyhow::Result<Self> {
        let tmp = tempfile::tempdir()?;
        let data_dir = tmp.path().join("data");
        let mut node = Self {
            bin: PathBuf::from(bin),
            addr: format!("127.0.0.1:{}", free_port()),
            data_dir,
            args: Vec::new(),
            child: None,
            _tmp: Some(tmp),
        };
        node.restart().await?;
        Ok(node)
    }

    /// A node that is not started yet (see [`Cluster`]).
    pub fn unstarted(bin: &str, addr: String, args: Vec<String>) -> anyhow::Result<Self> {
        let tmp = tempfile::tempdir()?;
        Ok(Self {
            bin: PathBuf::from(bin),
            addr,
            data_dir: tmp.path().join("data"),
            args,
            child: None,
            _tmp: Some(tmp),
        })
    }

    /// Starts (again) the process on the same data dir and address.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.spawn()?;
        self.wait_ready(Duration::from_secs(60)).await
    }

    /// Starts the process without waiting for it to answer.
    pub fn spawn(&mut self) -> anyhow::Result<()> {
        self.spawn_with_file_limit(None)
    }

    /// Starts the process with, if given, a file size limit of `kib` KiB
    /// (`ulimit -f`, with SIGXFSZ ignored): a write that would grow any file past it
    /// fails with EFBIG, as on a full disk.
    pub fn spawn_with_file_limit(&mut self, kib: Option<u64>) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.with_extension("log"))?;
        let mut cmd = match kib {
            None => Command::new(&self.bin),
            Some(kib) => {
                let mut c = Command::new("bash");
                c.arg("-c")
                    .arg(format!(
                        "ulimit -f {kib} && trap '' XFSZ && exec \"$0\" \"$@\""
                    ))
                    .arg(&self.bin);
                c
            }
        };
        let child = cmd
            .args(["server", "--listen", &self.addr, "--data-dir"])
            .arg(&self.data_dir)
            .args(&self.args)
            .env("FLOTILLA_LOG", "warn,flotilla=info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", self.bin.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until the node answers admin calls (its meta group has a leader).
    pub async fn wait_ready(&mut self, limit: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if let Some(c) = self.child.as_mut()
                && let Some(status) = c.try_wait()?
            {
                bail!(
                    "flotilla server exited early with {status}; log:\n{}",
                    self.log()
                );
            }
            if let Ok(mut a) = self.admin().await
                && a.list_plugins(flotilla::proto::v1::ListPluginsRequest {})
                    .await
                    .is_ok()
            {
                return Ok(());
            }
            if start.elapsed() > limit {
                bail!(
                    "flotilla server not ready after {limit:?}; log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The server's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.with_extension("log")).unwrap_or_default()
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `kill -9`: no shutdown, no final sync.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            let pid = c.id().to_string();
            Command::new("kill").args(["-TERM", &pid]).status()?;
            let start = Instant::now();
            while c.try_wait()?.is_none() {
                if start.elapsed() > Duration::from_secs(30) {
                    c.kill()?;
                    bail!("server did not stop within 30s of SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// The exit status, once the process has exited on its own (`None` while it runs
    /// or when it was never started).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Forgets an exited process so that the node can be spawned again.
    pub fn reap(&mut self) {
        if self.exited().is_some() {
            self.child = None;
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub async fn channel(&self) -> anyhow::Result<Channel> {
        Ok(Channel::from_shared(format!("http://{}", self.addr))?
            .connect()
            .await?)
    }

    pub async fn admin(&self) -> anyhow::Result<AdminClient<Channel>> {
        Ok(AdminClient::new(self.channel().await?))
    }

    pub async fn client(&self) -> anyhow::Result<ClientClient<Channel>> {
        Ok(ClientClient::new(self.channel().await?).max_decoding_message_size(64 << 20))
    }

    /// Runs the `flotilla` CLI against this node.
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<Output> {
        Ok(Command::new(&self.bin)
            .args(args)
            .env("FLOTILLA_ENDPOINT", &self.addr)
            .output()?)
    }

    /// Runs the CLI expecting it to refuse: an error if it succeeded, else its stderr.
    pub fn cli_refused(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.cli(args)?;
        anyhow::ensure!(
            !out.status.success(),
            "{args:?} succeeded where it should be refused"
        );
        Ok(String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// Runs `flotilla bench ARGS --output json` against this node and returns its
    /// summary; a failed run is an error with the bench's stderr and the node's log.
    pub fn bench_json(&self, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        let mut all = vec!["bench"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--output", "json"]);
        let out = self.cli(&all)?;
        anyhow::ensure!(
            out.status.success(),
            "bench {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// Deploys `bytes` as `name` over gRPC; returns "name@version".
    pub async fn deploy(&self, name: &str, bytes: &[u8]) -> Result<String, tonic::Status> {
        let mut a = self
            .admin()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let chunks: Vec<DeployPluginChunk> = bytes
            .chunks(256 * 1024)
            .enumerate()
            .map(|(i, c)| DeployPluginChunk {
                name: if i == 0 { name.into() } else { String::new() },
                total_size_bytes: if i == 0 { bytes.len() as u64 } else { 0 },
                data: c.to_vec(),
            })
            .collect();
        let r = a
            .deploy_plugin(futures::stream::iter(chunks))
            .await?
            .into_inner();
        let p = r.plugin.unwrap_or_default();
        Ok(format!("{}@{}", p.name, p.version))
    }

    pub async fn create_group(&self, plugin: &str) -> Result<u64, tonic::Status> {
        let mut a = self
            .admin()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let g = a
            .create_group(CreateGroupRequest {
                plugin: plugin.into(),
                replicas: 0,
                ..Default::default()
            })
            .await?
            .into_inner()
            .group
            .unwrap_or_default();
        Ok(g.group_id)
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.kill9();
    }
}

/// Proposes a JSON command; returns (index, output as JSON).
pub async fn propose(
    c: &mut ClientClient<Channel>,
    group: u64,
    command: &serde_json::Value,
) -> Result<(u64, serde_json::Value), tonic::Status> {
    let r = c
        .propose(ProposeRequest {
            group_id: group,
            command: command.to_string().into_bytes(),
            request_id: String::new(),
        })
        .await?
        .into_inner();
    let out = serde_json::from_slice(&r.output).unwrap_or(serde_json::Value::Null);
    Ok((r.index, out))
}

/// Runs a JSON query with the given consistency; returns the output as JSON.
pub async fn query(
    c: &mut ClientClient<Channel>,
    group: u64,
    request: &serde_json::Value,
    consistency: ReadConsistency,
) -> Result<serde_json::Value, tonic::Status> {
    let r = c
        .query(QueryRequest {
            group_id: group,
            request: request.to_string().into_bytes(),
            consistency: consistency as i32,
        })
        .await?
        .into_inner();
    Ok(serde_json::from_slice(&r.output).unwrap_or(serde_json::Value::Null))
}

/// Several `flotilla server` processes forming one cluster on loopback.
pub struct Cluster {
    pub bin: String,
    pub nodes: Vec<NodeProcess>,
}

impl Cluster {
    /// Bootstraps an `n`-node cluster (`--initial-cluster`) and waits for every node.
    pub async fn start(bin: &str, n: usize) -> anyhow::Result<Self> {
        let addrs: Vec<String> = (0..n)
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect();
        let members = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}={a}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = Vec::new();
        for (i, a) in addrs.iter().enumerate() {
            let args = vec![
                "--id".to_string(),
                (i + 1).to_string(),
                "--initial-cluster".to_string(),
                members.clone(),
            ];
            let mut node = NodeProcess::unstarted(bin, a.clone(), args)?;
            node.spawn()?;
            nodes.push(node);
        }
        for node in &mut nodes {
            node.wait_ready(Duration::from_secs(60)).await?;
        }
        Ok(Self {
            bin: bin.to_string(),
            nodes,
        })
    }

    /// Starts node `id` and joins it to the cluster through node 1.
    pub async fn join(&mut self, id: u64) -> anyhow::Result<&mut NodeProcess> {
        let via = self.nodes[0].addr.clone();
        let args = vec![
            "--id".to_string(),
            id.to_string(),
            "--join".to_string(),
            via,
        ];
        let mut node =
            NodeProcess::unstarted(&self.bin, format!("127.0.0.1:{}", free_port()), args)?;
        node.restart().await?;
        self.nodes.push(node);
        let last = self.nodes.len() - 1;
        Ok(&mut self.nodes[last])
    }

    /// Node `id` (1-based).
    pub fn node(&mut self, id: u64) -> &mut NodeProcess {
        &mut self.nodes[id as usize - 1]
    }

    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }

    /// Every node's log, for failure messages.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| format!("---- node {} ----\n{}", i + 1, n.log()))
            .collect()
    }
}

/// A client that tries each endpoint in turn until one answers: what an application
/// with a list of cluster addresses does when a node dies.
#[derive(Clone)]
pub struct AnyClient {
    pub endpoints: Vec<String>,
}

impl AnyClient {
    pub fn new(endpoints: Vec<String>) -> Self {
        Self { endpoints }
    }

    async fn client(&self, i: usize) -> Option<ClientClient<Channel>> {
        let e = &self.endpoints[i % self.endpoints.len()];
        let ch = Channel::from_shared(format!("http://{e}"))
            .ok()?
            .connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_secs(10))
            .connect()
            .await
            .ok()?;
        Some(ClientClient::new(ch))
    }

    /// Proposes, moving to the next node when one is unreachable or not serving.
    /// `Ok(None)` means the outcome is unknown (the request may have applied).
    pub async fn propose(
        &self,
        group: u64,
        command: &serde_json::Value,
        start: usize,
    ) -> Result<Option<(u64, serde_json::Value)>, tonic::Status> {
        for attempt in 0..(self.endpoints.len() * 20) {
            let Some(mut c) = self.client(start + attempt).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            match propose(&mut c, group, command).await {
                Ok(r) => return Ok(Some(r)),
                Err(s)
                    if s.code() == tonic::Code::Unavailable
                        && (s.metadata().get("x-flotilla-not-leader").is_some()
                            || s.message().contains("no reachable leader")
                            || s.message().contains("tcp connect")) =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(s)
                    if matches!(
                        s.code(),
                        tonic::Code::Unavailable
                            | tonic::Code::Cancelled
                            | tonic::Code::DeadlineExceeded
                            | tonic::Code::Unknown
                    ) =>
                {
                    return Ok(None);
                }
                Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(s) => return Err(s),
            }
        }
        Ok(None)
    }

    /// Reads with the given consistency from any node that can serve it.
    pub async fn query(
        &self,
        group: u64,
        request: &serde_json::Value,
        consistency: ReadConsistency,
        start: usize,
    ) -> Result<serde_json::Value, tonic::Status> {
        let mut last = tonic::Status::unavailable("no node answered");
        for attempt in 0..(self.endpoints.len() * 20) {
            let Some(mut c) = self.client(start + attempt).await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            match query(&mut c, group, request, consistency).await {
                Ok(v) => return Ok(v),
                Err(s)
                    if matches!(
                        s.code(),
                        tonic::Code::Unavailable
                            | tonic::Code::NotFound
                            | tonic::Code::Cancelled
                            | tonic::Code::DeadlineExceeded
                            | tonic::Code::ResourceExhausted
                    ) =>
                {
                    last = s;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(s) => return Err(s),
            }
        }
        Err(last)
    }
}

/// Waits until every listed node reports the same state digest of `group` at the same
/// applied index (`Cluster.ReplicaDigest`); returns that index and digest.
pub async fn digests_agree(addrs: &[String], group: u64) -> anyhow::Result<(u64, String)> {
    use flotilla::proto::v1::ReplicaDigestRequest;
    use flotilla::proto::v1::cluster_client::ClusterClient;
    let mut last = Vec::new();
    for _ in 0..300 {
        let mut got = Vec::new();
        for a in addrs {
            let Ok(ch) = Channel::from_shared(format!("http://{a}"))?.connect().await else {
                continue;
            };
            if let Ok(d) = ClusterClient::new(ch)
                .replica_digest(ReplicaDigestRequest {
                    group_id: group,
                    index: 0,
                })
                .await
            {
                let d = d.into_inner();
                got.push((d.applied_index, d.digest));
            }
        }
        if got.len() == addrs.len() && got.iter().all(|g| *g == got[0]) {
            return Ok(got[0].clone());
        }
        last = got;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("replicas of group {group} never agreed: {last:?}")
}
