//! The `Batch` stream on real processes: every item gets exactly one result with its
//! id, good items do what their unary calls do (through a node that must forward them
//! to the leaders), bad items fail alone with an error naming what was wrong, an
//! over-long message ends the stream only after everything before it is answered, and
//! `flotilla bench --api batch` writes and reads back through shared streams.

use std::collections::HashMap;

use flotilla::proto::v1::batch_item::Op;
use flotilla::proto::v1::batch_result::Result as Outcome;
use flotilla::proto::v1::cluster_client::ClusterClient;
use flotilla::proto::v1::{
    BatchItem, BatchRequest, ClusterStatusRequest, ProposeRequest, QueryRequest, ReadConsistency,
};
use flotilla_tests::{Cluster, NodeProcess};
use serde_json::json;
use tonic::Code;

const BIN: &str = env!("CARGO_BIN_EXE_flotilla");

fn put(group: u64, key: &str) -> Op {
    Op::Propose(ProposeRequest {
        group_id: group,
        command: json!({"put": {"key": key, "value": format!("v-{key}")}})
            .to_string()
            .into_bytes(),
        request_id: String::new(),
    })
}

fn get(group: u64, key: &str) -> Op {
    Op::Query(QueryRequest {
        group_id: group,
        request: json!({"get": {"key": key}}).to_string().into_bytes(),
        consistency: ReadConsistency::Linearizable as i32,
    })
}

/// What one stream returned: results by id, how many response messages carried them,
/// and the error it ended with, if any.
struct Returned {
    results: HashMap<u64, Vec<Outcome>>,
    responses: usize,
    ended: Option<tonic::Status>,
}

/// Sends `messages` on one Batch stream through `node`, closes the sending side, and
/// collects results until the server ends the stream.
async fn run_batch(node: &NodeProcess, messages: Vec<Vec<(u64, Op)>>) -> anyhow::Result<Returned> {
    let requests: Vec<BatchRequest> = messages
        .into_iter()
        .map(|items| BatchRequest {
            items: items
                .into_iter()
                .map(|(id, op)| BatchItem { id, op: Some(op) })
                .collect(),
        })
        .collect();
    let mut c = node.client().await?;
    let mut inbound = c.batch(tokio_stream::iter(requests)).await?.into_inner();
    let mut results: HashMap<u64, Vec<Outcome>> = HashMap::new();
    let mut responses = 0;
    let deadline = std::time::Duration::from_secs(60);
    let ended = loop {
        match tokio::time::timeout(deadline, inbound.message()).await? {
            Ok(Some(resp)) => {
                responses += 1;
                for r in resp.results {
                    let outcome = r
                        .result
                        .ok_or_else(|| anyhow::anyhow!("result {} has no outcome", r.id))?;
                    results.entry(r.id).or_default().push(outcome);
                }
            }
            Ok(None) => break None,
            Err(status) => break Some(status),
        }
    };
    Ok(Returned {
        results,
        responses,
        ended,
    })
}

/// The node that leads `group`, from the cluster status.
async fn leader_of(node: &NodeProcess, group: u64) -> anyhow::Result<u64> {
    let mut c = ClusterClient::new(node.channel().await?);
    for _ in 0..100 {
        let st = c
            .cluster_status(ClusterStatusRequest {})
            .await?
            .into_inner();
        if let Some(g) = st.groups.iter().find(|g| g.group_id == group)
            && g.leader_node_id != 0
        {
            return Ok(g.leader_node_id);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    anyhow::bail!("group {group} has no leader")
}

fn error_of(outcome: &Outcome) -> Option<(Code, &str)> {
    match outcome {
        Outcome::Error(e) => Some((Code::from(e.code), e.message.as_str())),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batch_items_run_like_unary_calls_and_fail_alone() -> anyhow::Result<()> {
    let mut cluster = Cluster::start(BIN, 3).await?;
    let plugin = cluster.node(1).deploy("kv", flotilla::examples::KV).await?;
    let (a, b) = (
        cluster.node(1).create_group(&plugin).await?,
        cluster.node(1).create_group(&plugin).await?,
    );

    // One message: 100 puts to each group, then the bad items.
    let mut items = Vec::new();
    for n in 0..100u64 {
        items.push((n, put(a, &format!("a{n}"))));
        items.push((1000 + n, put(b, &format!("b{n}"))));
    }
    items.push((
        9000,
        Op::Propose(ProposeRequest {
            group_id: 0,
            command: b"{}".to_vec(),
            request_id: String::new(),
        }),
    ));
    items.push((
        9001,
        Op::Propose(ProposeRequest {
            group_id: a,
            command: Vec::new(),
            request_id: String::new(),
        }),
    ));
    items.push((9002, put(987_654, "nowhere")));
    items.push((9003, get(a, "a1")));
    items.push((
        9004,
        Op::Query(QueryRequest {
            group_id: a,
            request: b"{}".to_vec(),
            consistency: 99,
        }),
    ));
    // A second message over the per-message limit: none of it runs, and it ends the
    // stream once everything before it is answered.
    let oversized: Vec<(u64, Op)> = (0..1025u64)
        .map(|n| (20_000 + n, put(a, &format!("over{n}"))))
        .collect();

    // Through a node that leads neither group (of three nodes, one always does): its
    // items are forwarded to the leaders as unary calls would be.
    let leaders = [
        leader_of(cluster.node(1), a).await?,
        leader_of(cluster.node(1), b).await?,
    ];
    let via = (1..=3u64)
        .find(|n| !leaders.contains(n))
        .ok_or_else(|| anyhow::anyhow!("no node outside {leaders:?}"))?;
    let Returned {
        results,
        responses,
        ended,
    } = run_batch(cluster.node(via), vec![items, oversized]).await?;
    let ended = ended.expect("the over-long message ended the stream with an error");
    assert_eq!(ended.code(), Code::InvalidArgument, "{ended:?}");
    assert!(
        ended
            .message()
            .contains("carried 1025 items, over the limit of 1024"),
        "{ended:?}"
    );
    assert_eq!(
        results.len(),
        200 + 5,
        "one result per id of the first message"
    );
    for (id, outcomes) in &results {
        assert_eq!(
            outcomes.len(),
            1,
            "item {id} got {} results",
            outcomes.len()
        );
    }
    assert!(
        responses < results.len(),
        "{responses} response messages for {} results: nothing was gathered",
        results.len()
    );
    let one = |id: u64| &results[&id][0];
    for n in 0..100u64 {
        for id in [n, 1000 + n] {
            match one(id) {
                Outcome::Propose(p) => {
                    assert!(p.index > 0);
                    assert_eq!(p.group_id, if id < 1000 { a } else { b });
                }
                other => panic!("put {id} failed: {other:?}"),
            }
        }
    }
    let (code, msg) = error_of(one(9000)).expect("group 0 refused");
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.contains("group_id is required"), "{msg}");
    let (code, msg) = error_of(one(9001)).expect("empty command refused");
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.contains("empty"), "{msg}");
    let (code, msg) = error_of(one(9002)).expect("unknown group refused");
    assert_eq!(code, Code::NotFound);
    assert!(msg.contains("987654"), "{msg}");
    assert!(
        matches!(one(9003), Outcome::Query(_)),
        "the query item failed: {:?}",
        one(9003)
    );
    let (code, msg) = error_of(one(9004)).expect("unknown consistency refused");
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.contains("unknown consistency 99"), "{msg}");

    // Every acknowledged put is there, read back linearizably through another node,
    // and none of the refused items wrote anything.
    let mut reads: Vec<(u64, Op)> = (0..100u64)
        .flat_map(|n| {
            [
                (n, get(a, &format!("a{n}"))),
                (1000 + n, get(b, &format!("b{n}"))),
            ]
        })
        .collect();
    reads.push((5000, get(a, "over0")));
    let reader = if via == 2 { 1 } else { 2 };
    let Returned { results, ended, .. } = run_batch(cluster.node(reader), vec![reads]).await?;
    assert!(ended.is_none(), "{ended:?}");
    for n in 0..100u64 {
        for (id, key) in [(n, format!("a{n}")), (1000 + n, format!("b{n}"))] {
            let Outcome::Query(q) = &results[&id][0] else {
                panic!("read {id} failed: {:?}", results[&id]);
            };
            let got: serde_json::Value = serde_json::from_slice(&q.output)?;
            assert_eq!(got["value"], json!(format!("v-{key}")), "{key}");
        }
    }
    let Outcome::Query(q) = &results[&5000][0] else {
        panic!("read failed: {:?}", results[&5000]);
    };
    let got: serde_json::Value = serde_json::from_slice(&q.output)?;
    assert_eq!(
        got["value"],
        serde_json::Value::Null,
        "a refused item wrote"
    );
    Ok(())
}

/// A one-second `flotilla bench` with `args` (reads over 4 preloaded keys per client)
/// that must do some operations and count no error: a read that misses a preloaded key
/// counts as one (`missing_key`). Returns its JSON summary.
fn short_clean_bench(node: &NodeProcess, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--read-keys", "4", "--duration", "1s"]);
    let summary = node.bench_json(&all)?;
    assert!(summary["ops"].as_u64().unwrap_or(0) > 0, "{summary}");
    assert_eq!(summary["errors"], 0, "{summary}");
    Ok(summary)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bench_writes_and_reads_through_batch_streams() -> anyhow::Result<()> {
    let node = NodeProcess::start(BIN).await?;
    for workload in ["write", "read"] {
        let summary = short_clean_bench(
            &node,
            &[
                "--api",
                "batch",
                "--workload",
                workload,
                "--clients",
                "16",
                "--connections",
                "2",
            ],
        )?;
        assert_eq!(summary["api"], "batch", "{summary}");
    }
    let stderr = node.cli_refused(&["bench", "--api", "batch", "--target", "etcd"])?;
    assert!(stderr.contains("--api batch is for Flotilla"), "{stderr}");
    Ok(())
}

/// `--codec binary` sends the kv plugin postcard instead of JSON: writes apply and reads
/// find what they wrote (a miss would count as a `missing_key` error), unary and batched.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bench_speaks_the_binary_codec_to_the_kv_plugin() -> anyhow::Result<()> {
    let node = NodeProcess::start(BIN).await?;
    for api in ["unary", "batch"] {
        for workload in ["write", "read"] {
            let summary = short_clean_bench(
                &node,
                &[
                    "--codec",
                    "binary",
                    "--api",
                    api,
                    "--workload",
                    workload,
                    "--clients",
                    "8",
                ],
            )?;
            assert_eq!(summary["codec"], "binary", "{summary}");
        }
    }
    let stderr = node.cli_refused(&["bench", "--codec", "binary", "--target", "etcd"])?;
    assert!(stderr.contains("--codec is for Flotilla"), "{stderr}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_serves_a_bounded_number_of_batch_streams() -> anyhow::Result<()> {
    let node = NodeProcess::start(BIN).await?;
    let limit = flotilla::limits::BATCH_STREAMS_MAX;
    // Open streams are held by their senders and answer streams; spread them over a
    // few connections (HTTP/2 caps concurrent streams per connection).
    let mut held = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(node.client().await?);
    }
    for i in 0..limit {
        let (tx, rx) = tokio::sync::mpsc::channel::<BatchRequest>(1);
        let n = clients.len();
        let inbound = clients[i % n]
            .batch(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await?
            .into_inner();
        held.push((tx, inbound));
    }
    let (_tx, rx) = tokio::sync::mpsc::channel::<BatchRequest>(1);
    let refused = clients[0]
        .batch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect_err("one stream over the limit");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused
            .message()
            .contains(&format!("already serves {limit} Batch streams")),
        "{refused:?}"
    );
    // Closing one frees its place once the server has answered everything on it.
    let (tx, mut inbound) = held.pop().expect("streams were opened");
    drop(tx);
    assert!(inbound.message().await?.is_none());
    let mut again = None;
    for _ in 0..50 {
        let (tx, rx) = tokio::sync::mpsc::channel::<BatchRequest>(1);
        match clients[1]
            .batch(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
        {
            Ok(s) => {
                again = Some((tx, s));
                break;
            }
            Err(s) if s.code() == Code::ResourceExhausted => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(s) => return Err(s.into()),
        }
    }
    assert!(again.is_some(), "a closed stream's place was never freed");
    Ok(())
}
