//! Linearizability of one real node under a crash: concurrent clients put, get
//! (linearizable reads) and compare-and-swap on a few keys of a `kv` group while the
//! node is killed with SIGKILL and restarted; the recorded history must pass the
//! checker, with every request that failed or was cut off counted as "may or may not
//! have happened".

use std::sync::Arc;
use std::time::Duration;

use flotilla::proto::v1::ReadConsistency;
use flotilla::proto::v1::client_client::ClientClient;
use flotilla_tests::linearizability::{CheckResult, History, KvInput, KvModel, KvOutput};
use flotilla_tests::{NodeProcess, propose, query};
use serde_json::json;
use tonic::Code;
use tonic::transport::Channel;

const BIN: &str = env!("CARGO_BIN_EXE_flotilla");
const CLIENTS: u64 = 6;
const OPS_PER_CLIENT: u64 = 200;
const KEYS: u64 = 3;

type Input = KvInput<String, String>;
type Output = KvOutput<String>;

/// A tiny deterministic generator (xorshift) so a failure can be replayed by seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

async fn connect(addr: &str) -> Option<ClientClient<Channel>> {
    let ch = Channel::from_shared(format!("http://{addr}")).ok()?;
    ch.connect_timeout(Duration::from_millis(200))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .ok()
        .map(ClientClient::new)
}

/// Runs one operation; `None` means the outcome is unknown.
async fn run(c: &mut ClientClient<Channel>, group: u64, input: &Input) -> Option<Output> {
    match input {
        KvInput::Put { key, value } => {
            propose(c, group, &json!({"put": {"key": key, "value": value}}))
                .await
                .ok()
                .map(|_| KvOutput::Ok)
        }
        KvInput::Cas { key, expected, new } => {
            match propose(
                c,
                group,
                &json!({"cas": {"key": key, "expected": expected, "new": new}}),
            )
            .await
            {
                Ok(_) => Some(KvOutput::Cas(true)),
                Err(e) if e.code() == Code::FailedPrecondition => Some(KvOutput::Cas(false)),
                Err(_) => None,
            }
        }
        KvInput::Get { key } => query(
            c,
            group,
            &json!({"get": {"key": key}}),
            ReadConsistency::Linearizable,
        )
        .await
        .ok()
        .map(|v| KvOutput::Value(v["value"].as_str().map(String::from))),
        KvInput::Delete { .. } => None,
    }
}

async fn client(addr: String, group: u64, id: u64, history: Arc<History<Input, Output>>) {
    let mut rng = Rng(0x9E37_79B9 ^ (id + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut conn = None;
    let mut last_seen: Option<String> = None;
    for n in 0..OPS_PER_CLIENT {
        let key = format!("k{}", rng.next() % KEYS);
        let value = format!("c{id}-{n}");
        let input = match rng.next() % 3 {
            0 => KvInput::Put { key, value },
            1 => KvInput::Get { key },
            _ => KvInput::Cas {
                key,
                expected: last_seen.clone(),
                new: Some(value),
            },
        };
        // Only a request actually sent can have an unknown outcome: while the node is
        // down, wait for it instead of burning the workload on refused connections
        // (on a loaded machine the restart can outlast every remaining operation, and
        // a history of unknowns proves nothing).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while conn.is_none() && tokio::time::Instant::now() < deadline {
            conn = connect(&addr).await;
            if conn.is_none() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let op = history.invoke(id, input.clone());
        let out = match conn.as_mut() {
            Some(c) => run(c, group, &input).await,
            None => None,
        };
        match out {
            Some(out) => {
                if let KvOutput::Value(v) = &out {
                    last_seen = v.clone();
                }
                history.complete(op, out);
            }
            None => {
                history.unknown(op);
                conn = None;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kv_history_across_a_kill9_is_linearizable() -> anyhow::Result<()> {
    let mut node = NodeProcess::start(BIN).await?;
    node.deploy("kv", flotilla::examples::KV).await?;
    let group = node.create_group("kv").await?;
    let history = Arc::new(History::<Input, Output>::new());
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|id| tokio::spawn(client(node.addr.clone(), group, id, history.clone())))
        .collect();

    // Crash once a quarter of the workload is done, however fast the machine is.
    while history.operations().len() < (CLIENTS * OPS_PER_CLIENT / 4) as usize {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    node.kill9()?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    node.restart().await?;
    for t in tasks {
        t.await?;
    }

    let ops = history.operations();
    let known = ops.iter().filter(|o| o.output.is_some()).count();
    eprintln!("{} operations, {known} with a known outcome", ops.len());
    assert!(
        known >= (CLIENTS * OPS_PER_CLIENT / 2) as usize,
        "only {known} operations completed"
    );
    match history.check::<KvModel<String, String>>() {
        CheckResult::Ok => Ok(()),
        other => panic!(
            "history of {} operations is not linearizable: {other:?}",
            ops.len()
        ),
    }
}
