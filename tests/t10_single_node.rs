//! One real `flotilla server` process on a real data dir: acknowledged writes survive
//! `kill -9`, a restart applies nothing twice, and a plugin upgrade takes effect at
//! exactly the log index it was committed at.

use std::collections::BTreeMap;
use std::sync::Arc;

const BIN: &str = env!("CARGO_BIN_EXE_flotilla");

use flotilla::proto::v1::ReadConsistency;
use flotilla_tests::{NodeProcess, propose, query};
use serde_json::json;
use tokio::sync::Mutex;

fn write_plugin(dir: &std::path::Path, name: &str, bytes: &[u8]) -> anyhow::Result<String> {
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, bytes)?;
    Ok(path.to_string_lossy().into_owned())
}

fn stdout_json(out: &std::process::Output) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(
        out.status.success(),
        "CLI failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_kill9() -> anyhow::Result<()> {
    let mut node = NodeProcess::start(BIN).await?;
    let tmp = tempfile::tempdir()?;
    let kv = write_plugin(tmp.path(), "kv", flotilla::examples::KV)?;
    let deployed =
        stdout_json(&node.cli(&["plugin", "deploy", &kv, "--name", "kv", "--output", "json"])?)?;
    assert_eq!(deployed["plugin"]["name"], "kv");
    assert_eq!(deployed["plugin"]["version"], 1);
    let created =
        stdout_json(&node.cli(&["group", "create", "--plugin", "kv", "--output", "json"])?)?;
    let group = created["group_id"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("no group id"))?;

    // 1,000 writes from 16 concurrent clients, half of them blind (`set`); remember what
    // was acknowledged.
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let mut tasks = Vec::new();
    for w in 0..16u32 {
        let mut c = node.client().await?;
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            for n in (w..1000).step_by(16) {
                let (key, value) = (format!("key-{n}"), format!("value-{n}"));
                let verb = if n % 2 == 0 { "put" } else { "set" };
                let (_, output) = propose(
                    &mut c,
                    group,
                    &json!({(verb): {"key": key, "value": value}}),
                )
                .await?;
                assert_eq!(
                    output,
                    serde_json::Value::Null,
                    "{verb} of the new key {key}"
                );
                acked.lock().await.insert(key, value);
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let acked = acked.lock().await.clone();
    assert_eq!(acked.len(), 1000);

    node.kill9()?;
    node.restart().await?;
    // The restart loaded the plugin's compiled code from the disk cache.
    let log = node.log();
    assert!(
        log.contains("outcome=CacheHit"),
        "plugin recompiled on restart:\n{log}"
    );

    let mut c = node.client().await?;
    for (key, value) in &acked {
        let got = query(
            &mut c,
            group,
            &json!({"get": {"key": key}}),
            ReadConsistency::Linearizable,
        )
        .await?;
        assert_eq!(got["value"], json!(value), "key {key} after kill -9: {got}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_applies_nothing_twice() -> anyhow::Result<()> {
    let mut node = NodeProcess::start(BIN).await?;
    node.deploy("counter", flotilla::examples::COUNTER).await?;
    let group = node.create_group("counter").await?;
    let mut c = node.client().await?;
    for _ in 0..200 {
        propose(&mut c, group, &json!({"add": {"delta": 1}})).await?;
    }
    // Twice: kill -9, then a clean stop. A replayed entry would push the count past 200.
    node.kill9()?;
    node.restart().await?;
    let mut c = node.client().await?;
    propose(&mut c, group, &json!({"add": {"delta": 1}})).await?;
    node.stop()?;
    node.restart().await?;
    let mut c = node.client().await?;
    let got = query(
        &mut c,
        group,
        &json!({"get": {}}),
        ReadConsistency::Linearizable,
    )
    .await?;
    assert_eq!(got, json!(201), "counter after restarts: {got}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upgrade_switches_code_at_its_index() -> anyhow::Result<()> {
    let mut node = NodeProcess::start(BIN).await?;
    let tmp = tempfile::tempdir()?;
    // Version 2 of "kv" is deliberately different code (the counter), so the switch is
    // visible: kv commands stop decoding exactly after the upgrade entry.
    let v1 = write_plugin(tmp.path(), "kv1", flotilla::examples::KV)?;
    let v2 = write_plugin(tmp.path(), "kv2", flotilla::examples::COUNTER)?;
    stdout_json(&node.cli(&["plugin", "deploy", &v1, "--name", "kv", "--output", "json"])?)?;
    let d2 =
        stdout_json(&node.cli(&["plugin", "deploy", &v2, "--name", "kv", "--output", "json"])?)?;
    assert_eq!(d2["plugin"]["version"], 2);
    let group = node.create_group("kv@1").await?;
    let mut c = node.client().await?;
    let (before, _) = propose(&mut c, group, &json!({"put": {"key": "a", "value": "1"}})).await?;

    let g = group.to_string();
    let up = stdout_json(&node.cli(&[
        "group", "upgrade", &g, "--plugin", "kv@2", "--output", "json",
    ])?)?;
    let at = up["index"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("no index: {up}"))?;
    assert!(at > before, "upgrade index {at} not after {before}");
    assert_eq!(up["group"]["plugin"], "kv@2");

    let err = propose(&mut c, group, &json!({"put": {"key": "b", "value": "2"}}))
        .await
        .expect_err("kv command accepted after the switch to counter code");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    let (after, _) = propose(&mut c, group, &json!({"add": {"delta": 5}})).await?;
    assert!(after > at);

    node.kill9()?;
    node.restart().await?;
    let st = stdout_json(&node.cli(&["group", "status", &g, "--output", "json"])?)?;
    assert_eq!(st["group"]["plugin"], "kv@2", "{st}");
    let mut c = node.client().await?;
    let got = query(
        &mut c,
        group,
        &json!({"get": {}}),
        ReadConsistency::Linearizable,
    )
    .await?;
    assert_eq!(got, json!(5), "{got}");
    Ok(())
}
