//! One node hosts 1,000 groups at once: create them, write to each, restart the process
//! (`kill -9`), and read every one back.

use flotilla::proto::v1::ReadConsistency;
use flotilla_tests::{NodeProcess, propose, query};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_flotilla");

const GROUPS: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_groups_survive_a_restart() -> anyhow::Result<()> {
    let mut node = NodeProcess::start(BIN).await?;
    node.deploy("kv", flotilla::examples::KV).await?;
    let mut groups = Vec::with_capacity(GROUPS);
    for _ in 0..GROUPS {
        groups.push(node.create_group("kv").await?);
    }
    let mut sorted = groups.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), GROUPS, "group ids repeat");

    // Write to every group from 8 concurrent clients.
    let mut tasks = Vec::new();
    for part in groups.chunks(GROUPS / 8) {
        let part = part.to_vec();
        let mut c = node.client().await?;
        tasks.push(tokio::spawn(async move {
            for g in part {
                propose(
                    &mut c,
                    g,
                    &json!({"put": {"key": "owner", "value": format!("group-{g}")}}),
                )
                .await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }

    node.kill9()?;
    node.restart().await?;

    let mut admin = node.admin().await?;
    let listed = admin
        .list_groups(flotilla::proto::v1::ListGroupsRequest {
            start_after: 0,
            limit: 10_000,
        })
        .await?
        .into_inner()
        .groups;
    assert_eq!(listed.len(), GROUPS);
    let mut c = node.client().await?;
    for g in groups {
        let got = query(
            &mut c,
            g,
            &json!({"get": {"key": "owner"}}),
            ReadConsistency::Linearizable,
        )
        .await?;
        assert_eq!(got["value"], json!(format!("group-{g}")), "group {g}");
    }
    Ok(())
}
