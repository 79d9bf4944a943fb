//! The containment issue's attacks against a 3-node cluster of one `flotilla` binary,
//! printed as a Markdown table: the answer, the neighbour group's worst write latency
//! and the nodes' peak memory per attack. Run it once with the build before a change
//! and once after, on the same machine:
//!
//! ```sh
//! cargo run --release -p flotilla-tests --example attacks -- target/release/flotilla [ci]
//! ```
//!
//! The plugins come from this build (`flotilla::examples`), so both binaries run the
//! same Wasm. `ci` uses the smaller sizes of `t21_attacks`.

use std::time::Duration;

use flotilla_tests::attacks::{self, Report, Rig, Scale};
use serde_json::json;

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let bin = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: attacks <path to flotilla> [ci]"))?;
    let scale = match args.next().as_deref() {
        Some("ci") => Scale::CI,
        _ => Scale::ISSUE,
    };
    let bin = std::fs::canonicalize(&bin)?.display().to_string();
    println!("binary {bin}, {scale:?}\n");
    println!("| attack | answer | neighbour's worst write | peak RSS (any node) | nodes |");
    println!("|---|---|---|---|---|");
    let mut reports: Vec<Report> = Vec::new();
    let mut print = |r: Report| {
        println!("{}", attacks::row(&r));
        reports.push(r);
    };

    // Everything that does not stop a node, on one cluster.
    let rig = Rig::start(&bin).await?;
    let h = rig.group("hostile", 0).await?;
    let r = rig
        .measure("1,000,000 kv.put in one command", async {
            attacks::hostile(
                &rig,
                h,
                json!({"put_many": {"count": scale.puts, "key": "k", "value": "v"}}),
            )
            .await
        })
        .await;
    print(r);
    let r = rig
        .measure("1,000,000 kv.get of a 16 KiB key", async {
            attacks::hostile(
                &rig,
                h,
                json!({"get_many": {"count": scale.gets, "key_bytes": 16384}}),
            )
            .await
        })
        .await;
    print(r);
    let r = rig
        .measure(
            &format!("{} endless loops on one Batch stream", scale.loops),
            async { attacks::loops_on_one_stream(&rig, h, scale.loops).await },
        )
        .await;
    print(r);
    let r = rig
        .measure("deep recursion (stack overflow)", async {
            attacks::hostile(&rig, h, json!({"recurse": {"depth": 100_000_000u64}})).await
        })
        .await;
    print(r);
    let r = rig
        .measure("32 concurrent reads bumping a guest static", async {
            attacks::statics(&rig, h, 32).await
        })
        .await;
    print(r);
    let big = rig.group("hostile", 0).await?;
    attacks::fill_big_values(&rig, big, scale.big_values).await?;
    let r = rig
        .measure(
            &format!("scan query over {} values of 4 MiB", scale.big_values),
            async { attacks::scan_queries(&rig, big, 1).await },
        )
        .await;
    print(r);
    let r = rig
        .measure("the same scan, 4 queries at once", async {
            attacks::scan_queries(&rig, big, 4).await
        })
        .await;
    print(r);
    let r = rig
        .measure("the same scan in an apply", async {
            attacks::hostile(&rig, big, json!({"scan_all": {}})).await
        })
        .await;
    print(r);
    let amp = rig.group("hostile", 0).await?;
    let r = rig
        .measure(
            &format!("{} commands writing 12 MiB each", scale.amplify_commands),
            async { attacks::amplify(&rig, amp, scale.amplify_commands).await },
        )
        .await;
    print(r);
    let r = rig
        .measure("deploy: memory starting at 2000 pages", async {
            attacks::deploy_big_memory(&rig).await
        })
        .await;
    print(r);
    let r = rig
        .measure(
            "same bytes as x-start@1 and probe@1, upgrade to probe",
            async { attacks::same_bytes_two_names(&rig).await },
        )
        .await;
    print(r);
    drop(rig);

    // The over-long key last, on its own cluster: before the fix it stops every node.
    let mut rig = Rig::start(&bin).await?;
    let target = rig.group("kv", 0).await?;
    let r = rig
        .measure("70,000-byte key in a kv get query", async {
            match attacks::long_key_get(&rig, target).await {
                Ok(v) => format!("Ok: {v}"),
                Err(s) => attacks::show(&s),
            }
        })
        .await;
    print(r);
    let r = rig
        .measure("70,000-byte key in a kv delete", async {
            match attacks::long_key_delete(&rig, target).await {
                Ok((_, v)) => format!("Ok: {v}"),
                Err(s) => attacks::show(&s),
            }
        })
        .await;
    print(r);
    let restart = attacks::restart_all(&mut rig, Duration::from_secs(20)).await;
    let r = rig
        .measure(
            "the same delete again after kill -9 and restart of all nodes",
            async {
                match &restart {
                    Err(e) => format!(
                        "restart failed: {}",
                        e.to_string().lines().next().unwrap_or_default()
                    ),
                    Ok(()) => match attacks::long_key_delete(&rig, target).await {
                        Ok((_, v)) => format!("Ok: {v}"),
                        Err(s) => attacks::show(&s),
                    },
                }
            },
        )
        .await;
    print(r);
    Ok(())
}
