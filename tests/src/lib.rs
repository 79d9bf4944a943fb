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

pub mod linearizability;

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// One `flotilla server` process and its data dir.
pub struct NodeProcess {
    pub bin: PathBuf,
    pub addr: String,
    pub data_dir: PathBuf,
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
            child: None,
            _tmp: Some(tmp),
        };
        node.restart().await?;
        Ok(node)
    }

    /// Starts (again) the process on the same data dir and address.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.data_dir.with_extension("log"))?;
        let child = Command::new(&self.bin)
            .args(["server", "--listen", &self.addr, "--data-dir"])
            .arg(&self.data_dir)
            .env("FLOTILLA_LOG", "warn,flotilla=info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", self.bin.display()))?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(60)).await
    }

    async fn wait_ready(&mut self, limit: Duration) -> anyhow::Result<()> {
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
