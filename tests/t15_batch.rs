//! The `Batch` stream on real processes: every item gets exactly one result with its
//! id, good items do what their unary calls do (also through a node that must forward
//! them to the leader), bad items fail alone with an error naming what was wrong, and
//! `flotilla bench --api batch` writes and reads back through shared streams.

use std::collections::HashMap;

use flotilla::proto::v1::batch_item::Op;
use flotilla::proto::v1::batch_result::Result as Outcome;
use flotilla::proto::v1::{BatchItem, BatchRequest, ProposeRequest, QueryRequest, ReadConsistency};
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

/// Sends `messages` on one Batch stream through `node`, closes the sending side, and
/// collects results until the server ends the stream. Returns the results by id and how
/// many response messages carried them.
async fn run_batch(
    node: &NodeProcess,
    messages: Vec<Vec<(u64, Op)>>,
) -> anyhow::Result<(HashMap<u64, Vec<Outcome>>, usize)> {
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
    while let Some(resp) = tokio::time::timeout(deadline, inbound.message()).await?? {
        responses += 1;
        for r in resp.results {
            let outcome = r
                .result
                .ok_or_else(|| anyhow::anyhow!("result {} has no outcome", r.id))?;
            results.entry(r.id).or_default().push(outcome);
        }
    }
    Ok((results, responses))
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
    // A second message over the per-message limit: each of its items fails alone.
    let oversized: Vec<(u64, Op)> = (0..1025u64)
        .map(|n| (20_000 + n, put(a, &format!("over{n}"))))
        .collect();

    // Through node 3, which leads neither group unless elections put it there: its
    // items are forwarded as unary calls would be.
    let (results, responses) = run_batch(cluster.node(3), vec![items, oversized]).await?;
    assert_eq!(results.len(), 200 + 4 + 1025, "one result per id");
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
    let mut indexes = Vec::new();
    for n in 0..100u64 {
        for id in [n, 1000 + n] {
            match one(id) {
                Outcome::Propose(p) => {
                    assert!(p.index > 0);
                    assert_eq!(p.group_id, if id < 1000 { a } else { b });
                    indexes.push(p.index);
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
    for n in 0..1025u64 {
        let (code, msg) = error_of(one(20_000 + n)).expect("oversized message refused");
        assert_eq!(code, Code::InvalidArgument);
        assert!(msg.contains("1025 items, over the limit of 1024"), "{msg}");
    }

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
    let (results, _) = run_batch(cluster.node(2), vec![reads]).await?;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bench_writes_and_reads_through_batch_streams() -> anyhow::Result<()> {
    let node = NodeProcess::start(BIN).await?;
    for workload in ["write", "read"] {
        let out = node.cli(&[
            "bench",
            "--api",
            "batch",
            "--workload",
            workload,
            "--clients",
            "16",
            "--connections",
            "2",
            "--read-keys",
            "4",
            "--duration",
            "1s",
            "--output",
            "json",
        ])?;
        anyhow::ensure!(
            out.status.success(),
            "bench {workload} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            node.log()
        );
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        assert_eq!(summary["api"], "batch", "{summary}");
        assert!(summary["ops"].as_u64().unwrap_or(0) > 0, "{summary}");
        // A read that misses a preloaded key counts as an error (`missing_key`).
        assert_eq!(summary["errors"], 0, "{summary}");
    }
    let out = node.cli(&["bench", "--api", "batch", "--target", "etcd"])?;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--api batch is for Flotilla"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
