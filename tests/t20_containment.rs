//! Containment and bad input against a real node: a hostile plugin's trap, endless loop,
//! memory bomb, stack overflow, huge output and panic each fail only that command, with
//! a clear error, leave the group's state unchanged, and leave the node serving; bad
//! requests get the documented status code and change nothing.

use flotilla::proto::v1::{ProposeRequest, ReadConsistency};
use flotilla_tests::{NodeProcess, propose, query};
use serde_json::json;
use tonic::Code;

const BIN: &str = env!("CARGO_BIN_EXE_flotilla");

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_plugin_commands_fail_cleanly() -> anyhow::Result<()> {
    let mut node = NodeProcess::start(BIN).await?;
    node.deploy("hostile", flotilla::examples::HOSTILE).await?;
    node.deploy("kv", flotilla::examples::KV).await?;
    let hostile = node.create_group("hostile").await?;
    let bystander = node.create_group("kv").await?;
    let mut c = node.client().await?;
    propose(
        &mut c,
        hostile,
        &json!({"put": {"key": "k", "value": "before"}}),
    )
    .await?;

    let cases = [
        (json!({"trap": {}}), "trapped"),
        (json!({"loop_forever": {}}), "fuel"),
        (json!({"alloc_forever": {}}), "memory"),
        (json!({"recurse": {"depth": 1_000_000_000u64}}), "trapped"),
        (
            json!({"huge_output": {"bytes": 8 * 1024 * 1024}}),
            "over the limit",
        ),
        (
            json!({"panic": {"message": "boom at the fsm"}}),
            "boom at the fsm",
        ),
        (
            json!({"write_then_trap": {"key": "k", "value": "after"}}),
            "trapped",
        ),
    ];
    for (cmd, expect) in cases {
        let err = propose(&mut c, hostile, &cmd)
            .await
            .expect_err(&format!("{cmd} succeeded"));
        assert_eq!(err.code(), Code::FailedPrecondition, "{cmd}: {err:?}");
        assert!(
            err.message().contains(expect),
            "{cmd}: message {:?} lacks {expect:?}",
            err.message()
        );
        // The group's state is unchanged and both groups keep serving.
        let got = query(
            &mut c,
            hostile,
            &json!({"get": {"key": "k"}}),
            ReadConsistency::Linearizable,
        )
        .await?;
        assert_eq!(got, json!("before"), "after {cmd}: {got}");
        let key = format!(
            "after-{}",
            cmd.as_object()
                .and_then(|o| o.keys().next().cloned())
                .unwrap_or_default()
        );
        propose(
            &mut c,
            bystander,
            &json!({"put": {"key": key, "value": "ok"}}),
        )
        .await?;
        assert!(node.is_running(), "node died after {cmd}");
    }
    // The hostile group itself still applies well-formed commands.
    propose(
        &mut c,
        hostile,
        &json!({"put": {"key": "k", "value": "later"}}),
    )
    .await?;
    let got = query(
        &mut c,
        hostile,
        &json!({"get": {"key": "k"}}),
        ReadConsistency::Linearizable,
    )
    .await?;
    assert_eq!(got, json!("later"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_requests_get_clear_errors() -> anyhow::Result<()> {
    let node = NodeProcess::start(BIN).await?;
    node.deploy("kv", flotilla::examples::KV).await?;
    let group = node.create_group("kv").await?;
    let mut c = node.client().await?;
    propose(&mut c, group, &json!({"put": {"key": "a", "value": "1"}})).await?;

    let err = propose(&mut c, 987_654, &json!({"put": {"key": "a", "value": "1"}}))
        .await
        .expect_err("unknown group accepted");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(err.message().contains("987654"), "{err:?}");

    let err = c
        .propose(ProposeRequest {
            group_id: group,
            command: b"{not json".to_vec(),
            request_id: String::new(),
        })
        .await
        .expect_err("undecodable command accepted");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("decode"), "{err:?}");
    assert!(
        err.message().contains("line 1"),
        "decoder message missing: {err:?}"
    );

    let huge = vec![b'x'; 2 * 1024 * 1024];
    let err = c
        .propose(ProposeRequest {
            group_id: group,
            command: huge,
            request_id: String::new(),
        })
        .await
        .expect_err("oversized command accepted");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("over the limit"), "{err:?}");

    let err = c
        .propose(ProposeRequest {
            group_id: 0,
            command: b"{}".to_vec(),
            request_id: String::new(),
        })
        .await
        .expect_err("group 0 accepted");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    let err = node
        .create_group("no-such-plugin")
        .await
        .expect_err("unknown plugin accepted");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    let err = node
        .deploy("garbage", b"this is not wasm at all")
        .await
        .expect_err("garbage deployed");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    let wasi = wat::parse_str(
        r#"(module
             (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
             (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
             (memory (export "memory") 1))"#,
    )?;
    let err = node
        .deploy("wasi", &wasi)
        .await
        .expect_err("WASI module deployed");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    for name in [
        "wasi_snapshot_preview1::fd_write",
        "wasi_snapshot_preview1::proc_exit",
    ] {
        assert!(
            err.message().contains(name),
            "{name} not named in {:?}",
            err.message()
        );
    }

    // None of that changed anything.
    let got = query(
        &mut c,
        group,
        &json!({"get": {"key": "a"}}),
        ReadConsistency::Linearizable,
    )
    .await?;
    assert_eq!(got["value"], json!("1"));
    let mut admin = node.admin().await?;
    let plugins = admin
        .list_plugins(flotilla::proto::v1::ListPluginsRequest {})
        .await?
        .into_inner()
        .plugins;
    assert_eq!(
        plugins.len(),
        1,
        "a rejected plugin was stored: {plugins:?}"
    );
    Ok(())
}
