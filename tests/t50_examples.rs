//! The example plugins on a real node: the bank conserves money under concurrent
//! transfers (overdrafts rejected), and registry leases expire by the replicated entry
//! timestamp, also across a restart.

use std::time::Duration;

use flotilla::proto::v1::ReadConsistency;
use flotilla_tests::{NodeProcess, propose, query};
use serde_json::json;
use tonic::Code;

const BIN: &str = env!("CARGO_BIN_EXE_flotilla");

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bank_total_is_conserved_under_concurrent_transfers() -> anyhow::Result<()> {
    let mut node = NodeProcess::start(BIN).await?;
    node.deploy("bank", flotilla::examples::BANK).await?;
    let group = node.create_group("bank").await?;
    let mut c = node.client().await?;
    let accounts = ["a", "b", "c", "d"];
    for a in accounts {
        propose(
            &mut c,
            group,
            &json!({"open": {"account": a, "initial": 100}}),
        )
        .await?;
    }
    let err = propose(&mut c, group, &json!({"open": {"account": "a"}}))
        .await
        .expect_err("reopened");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

    let mut tasks = Vec::new();
    for w in 0..8usize {
        let mut c = node.client().await?;
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut rejected) = (0, 0);
            for i in 0..50usize {
                let from = accounts[(w + i) % 4];
                let to = accounts[(w + 2 * i + 1) % 4];
                let amount = (w * 7 + i * 13) % 60 + 1;
                let cmd = json!({"transfer": {"from": from, "to": to, "amount": amount}});
                match propose(&mut c, group, &cmd).await {
                    Ok(_) => ok += 1,
                    Err(e) if e.code() == Code::FailedPrecondition => rejected += 1,
                    Err(e) => return Err(anyhow::anyhow!("{cmd}: {e:?}")),
                }
            }
            anyhow::Ok((ok, rejected))
        }));
    }
    let (mut ok, mut rejected) = (0, 0);
    for t in tasks {
        let (o, r) = t.await??;
        ok += o;
        rejected += r;
    }
    assert!(ok > 0, "no transfer succeeded");
    assert!(
        rejected > 0,
        "no overdraft or self-transfer was rejected ({ok} ok)"
    );
    let total = query(
        &mut c,
        group,
        &json!({"total": {}}),
        ReadConsistency::Linearizable,
    )
    .await?;
    assert_eq!(total["total"], json!(400), "{total}");

    node.kill9()?;
    node.restart().await?;
    let mut c = node.client().await?;
    let list = query(
        &mut c,
        group,
        &json!({"list": {}}),
        ReadConsistency::Linearizable,
    )
    .await?;
    let sum: u64 = list["list"]
        .as_array()
        .map(|l| l.iter().filter_map(|a| a["balance"].as_u64()).sum())
        .unwrap_or(0);
    assert_eq!(sum, 400, "{list}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registry_leases_expire_by_entry_time() -> anyhow::Result<()> {
    let mut node = NodeProcess::start(BIN).await?;
    node.deploy("registry", flotilla::examples::REGISTRY)
        .await?;
    let group = node.create_group("registry").await?;
    let mut c = node.client().await?;
    let reg = |instance: &str, ttl_ms: u64| json!({"register": {"service": "api", "instance": instance, "address": "127.0.0.1:9", "ttl_ms": ttl_ms}});
    let (_, lease) = propose(&mut c, group, &reg("short", 300)).await?;
    assert!(lease["expires_at_ms"].as_u64().is_some(), "{lease}");
    propose(&mut c, group, &reg("long", 600_000)).await?;
    let names = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|l| l["instance"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let list = query(
        &mut c,
        group,
        &json!({"list": {"service": "api"}}),
        ReadConsistency::Linearizable,
    )
    .await?;
    assert_eq!(names(&list), ["long", "short"], "{list}");

    tokio::time::sleep(Duration::from_millis(600)).await;
    // Time moves only with entries: a heartbeat of the long lease carries a new timestamp.
    propose(
        &mut c,
        group,
        &json!({"heartbeat": {"service": "api", "instance": "long"}}),
    )
    .await?;
    let list = query(
        &mut c,
        group,
        &json!({"list": {"service": "api"}}),
        ReadConsistency::Linearizable,
    )
    .await?;
    assert_eq!(names(&list), ["long"], "{list}");
    let err = propose(
        &mut c,
        group,
        &json!({"heartbeat": {"service": "api", "instance": "short"}}),
    )
    .await
    .expect_err("expired lease renewed");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

    node.kill9()?;
    node.restart().await?;
    let mut c = node.client().await?;
    let list = query(
        &mut c,
        group,
        &json!({"list": {"service": "api"}}),
        ReadConsistency::Stale,
    )
    .await?;
    assert_eq!(names(&list), ["long"], "after restart: {list}");
    Ok(())
}
