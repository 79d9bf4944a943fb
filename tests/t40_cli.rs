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

    let out = node.cli(&["query", "--group", "42", r#"{"get":{"key":"x"}}"#])?;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(
        stderr.contains("NOT_FOUND") && stderr.contains("group 42"),
        "{stderr}"
    );

    let out = node.cli(&["propose", "--group", "1", "{oops"])?;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
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
