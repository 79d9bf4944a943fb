//! The CLI as a user meets it: tables by default, JSON with `--output json`, and errors
//! that say what went wrong with a non-zero exit.

use flotilla_tests::NodeProcess;

const BIN: &str = env!("CARGO_BIN_EXE_flotilla");

fn text(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_round_trip_and_errors() -> anyhow::Result<()> {
    let node = NodeProcess::start(BIN).await?;
    let tmp = tempfile::tempdir()?;
    let file = tmp.path().join("kv.wasm");
    std::fs::write(&file, flotilla::examples::KV)?;
    let f = file.to_string_lossy().into_owned();

    let out = node.cli(&["plugin", "deploy", &f, "--name", "kv"])?;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("deployed kv@1"), "{stdout}");
    // Deploying the same bytes again is a no-op that says so.
    let (stdout, _) = text(&node.cli(&["plugin", "deploy", &f, "--name", "kv"])?);
    assert!(stdout.contains("already deployed"), "{stdout}");

    let (stdout, _) = text(&node.cli(&["group", "create", "--plugin", "kv"])?);
    assert!(stdout.contains("created group 1 running kv@1"), "{stdout}");
    let out = node.cli(&[
        "propose",
        "--group",
        "1",
        r#"{"put":{"key":"hello","value":"world"}}"#,
    ])?;
    assert!(out.status.success(), "{:?}", text(&out));
    let out = node.cli(&[
        "query",
        "--group",
        "1",
        r#"{"get":{"key":"hello"}}"#,
        "--output",
        "json",
    ])?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(v["output"]["value"], "world", "{v}");
    assert_eq!(v["served"], "linearizable");

    let (stdout, _) = text(&node.cli(&["group", "list"])?);
    assert!(stdout.contains("kv@1"), "{stdout}");
    let (stdout, _) = text(&node.cli(&["plugin", "list"])?);
    assert!(
        stdout.contains("kv@1") && stdout.contains("sha256:"),
        "{stdout}"
    );

    let stderr = node.cli_refused(&["query", "--group", "42", r#"{"get":{"key":"x"}}"#])?;
    assert!(
        stderr.contains("NOT_FOUND") && stderr.contains("group 42"),
        "{stderr}"
    );

    let stderr = node.cli_refused(&["propose", "--group", "1", "{oops"])?;
    assert!(stderr.contains("INVALID_ARGUMENT"), "{stderr}");

    let out = node.cli(&["group", "delete", "1"])?;
    assert!(out.status.success(), "{:?}", text(&out));
    let out = node.cli(&["group", "status", "1"])?;
    assert!(!out.status.success(), "deleted group still answers");

    // Standard gRPC health checking answers for the whole server and each service.
    let mut health = tonic_health::pb::health_client::HealthClient::new(node.channel().await?);
    for service in ["", "flotilla.v1.Client", "flotilla.v1.Admin"] {
        let r = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await?
            .into_inner();
        assert_eq!(
            r.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service:?}"
        );
    }

    let dead = node.cli(&["plugin", "list", "--endpoint", "127.0.0.1:1"])?;
    let (_, stderr) = text(&dead);
    assert!(!dead.status.success());
    assert!(
        stderr.contains("cannot reach a flotilla node at 127.0.0.1:1"),
        "{stderr}"
    );
    Ok(())
}

/// The README's first command: `flotilla dev` forms a 3-node cluster, deploys the four
/// example plugins and creates a group for each; a write through node 1 reads back
/// through node 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_brings_up_three_nodes_with_the_examples() -> anyhow::Result<()> {
    let port = flotilla_tests::consecutive_free_ports(3);
    let tmp = tempfile::tempdir()?;
    let stdout_path = tmp.path().join("dev.out");
    let stderr_path = tmp.path().join("dev.err");
    let mut child = std::process::Command::new(BIN)
        .args([
            "dev",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--no-metrics",
        ])
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .stdout(std::fs::File::create(&stdout_path)?)
        .stderr(std::fs::File::create(&stderr_path)?)
        .spawn()?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let (stdout, stderr) = loop {
        let stdout = std::fs::read_to_string(&stdout_path)?;
        let stderr = std::fs::read_to_string(&stderr_path)?;
        let done = stdout.contains("try next") || stderr.contains("setup failed");
        if done || std::time::Instant::now() >= deadline || child.try_wait()?.is_some() {
            break (stdout, stderr);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let checked = async {
        anyhow::ensure!(
            stdout.contains("try next"),
            "dev did not finish its setup\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        for plugin in ["kv", "counter", "bank", "registry"] {
            anyhow::ensure!(
                stdout.contains(&format!("plugin {plugin}@1 deployed")),
                "{plugin} not deployed:\n{stdout}"
            );
            anyhow::ensure!(
                stdout.contains(&format!("runs {plugin}@1")),
                "no group runs {plugin}:\n{stdout}"
            );
        }
        write_through_one_read_through_another(port, &stdout).await
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    checked
}

async fn write_through_one_read_through_another(port: u16, stdout: &str) -> anyhow::Result<()> {
    let kv_group = stdout
        .lines()
        .find(|l| l.contains("runs kv@1"))
        .and_then(|l| l.split_whitespace().nth(1))
        .ok_or_else(|| anyhow::anyhow!("no kv group line in:\n{stdout}"))?
        .to_string();
    let node1 = format!("127.0.0.1:{port}");
    let node3 = format!("127.0.0.1:{}", port + 2);
    let put = std::process::Command::new(BIN)
        .args(["propose", "--group", &kv_group, "--endpoint", &node1])
        .arg(r#"{"put":{"key":"hello","value":"dev"}}"#)
        .output()?;
    anyhow::ensure!(put.status.success(), "propose failed: {:?}", text(&put));
    let get = std::process::Command::new(BIN)
        .args(["query", "--group", &kv_group, "--endpoint", &node3])
        .args([r#"{"get":{"key":"hello"}}"#, "--output", "json"])
        .output()?;
    anyhow::ensure!(get.status.success(), "query failed: {:?}", text(&get));
    let v: serde_json::Value = serde_json::from_slice(&get.stdout)?;
    anyhow::ensure!(v["output"]["value"] == "dev", "read back {v}");
    Ok(())
}
