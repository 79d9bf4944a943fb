//! A full disk (DESIGN.md section 7: fail-stop on storage errors). A single node runs
//! with a file size limit (`ulimit -f`, SIGXFSZ ignored), so its journal's writes start
//! failing with EFBIG while clients write 1 KiB values. The node must stop by itself
//! with a fatal error that says what failed (fail-stop, never retrying a failed sync),
//! and after a restart without the limit it must hold every acknowledged write at its
//! last value and take new writes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla::proto::v1::{ProposeRequest, ReadConsistency};
use flotilla_tests::{NodeProcess, query};
use parking_lot::Mutex;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_flotilla");

/// Bytes in all files under `dir`, and the largest one.
fn sizes(dir: &std::path::Path) -> (u64, u64) {
    let (mut total, mut largest) = (0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => {
                    total += m.len();
                    largest = largest.max(m.len());
                }
                Err(_) => {}
            }
        }
    }
    (total, largest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_stops_the_node_and_it_restarts_with_every_acknowledged_write()
-> anyhow::Result<()> {
    let mut node = NodeProcess::start(BIN).await?;
    node.deploy("kv", flotilla::examples::KV).await?;
    let group = node.create_group("kv").await?;
    node.stop()?;
    // fjall preallocates its journal (64 MiB, sparse); the limit applies to the write
    // offset, so journal appends past 8 MiB fail as they would on a full disk.
    let (total, largest) = sizes(&node.data_dir);
    let limit_kib = 8 * 1024;
    println!("data dir: {total} bytes, largest file {largest} bytes; limit {limit_kib} KiB");
    node.spawn_with_file_limit(Some(limit_kib))?;
    node.wait_ready(Duration::from_secs(60)).await?;

    // Four writers put 1 KiB values to their own keys until the node stops answering.
    let acked: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..4u64 {
        let mut c = node.client().await?;
        let acked = acked.clone();
        writers.push(tokio::spawn(async move {
            let mut errors = 0;
            for i in 0u64.. {
                let key = format!("w{w}-k{}", i % 50);
                let value = format!("{i:08}-{}", "x".repeat(1000));
                let r = c
                    .propose(ProposeRequest {
                        group_id: group,
                        command: json!({"put": {"key": key, "value": value}})
                            .to_string()
                            .into_bytes(),
                        request_id: String::new(),
                    })
                    .await;
                match r {
                    Ok(_) => {
                        acked.lock().insert(key, value);
                    }
                    // Unknown outcome: the value may or may not be there, so the key is
                    // no longer checked exactly.
                    Err(_) => {
                        acked.lock().remove(&key);
                        errors += 1;
                        if errors > 20 {
                            return i;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            0
        }));
    }
    let start = Instant::now();
    let status = loop {
        if let Some(s) = node.exited() {
            break s;
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(120),
            "the node kept running for 2 minutes with a {limit_kib} KiB file limit; log:\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut attempts = 0;
    for w in writers {
        attempts += w.await?;
    }
    let log = node.log();
    println!(
        "stopped after {:?} and {attempts} writes with {status}; last lines:\n{}",
        start.elapsed(),
        log.lines().rev().take(3).collect::<Vec<_>>().join("\n")
    );
    anyhow::ensure!(
        status.code() == Some(70),
        "the node must fail-stop (exit 70), it exited with {status}; log:\n{log}"
    );
    anyhow::ensure!(
        log.contains("fatal") && (log.contains("File too large") || log.contains("os error 27")),
        "the fatal error must name the failed write; log:\n{log}"
    );

    // Restart with room on the disk: everything acknowledged is there.
    node.reap();
    node.restart().await?;
    let mut c = node.client().await?;
    let acked = acked.lock().clone();
    anyhow::ensure!(
        acked.len() > 20,
        "too few acknowledged writes to check: {}",
        acked.len()
    );
    for (key, value) in &acked {
        let got = query(
            &mut c,
            group,
            &json!({"get": {"key": key}}),
            ReadConsistency::Linearizable,
        )
        .await?;
        anyhow::ensure!(
            got["value"].as_str() == Some(value.as_str()),
            "acknowledged {key} = {}… reads back as {:?}",
            &value[..8],
            got["value"].as_str().map(|v| &v[..8.min(v.len())])
        );
    }
    let put = json!({"put": {"key": "after", "value": "ok"}});
    flotilla_tests::propose(&mut c, group, &put).await?;
    println!("{} acknowledged keys read back intact", acked.len());
    Ok(())
}
