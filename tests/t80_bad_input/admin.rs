//! The bad-input rows for the `Admin` service: plugin deploys (bad bytes, forbidden
//! imports, broken chunk streams) and group administration with wrong arguments.

use super::*;

pub(super) fn rows(v: &Vars) -> Vec<Row> {
    let Vars {
        group,
        a1,
        a2,
        a3,
        wasi,
        ..
    } = v.clone();
    vec![
        row(
            "create a group with an unknown plugin",
            Code::NotFound,
            Some("no-such-plugin"),
            {
                let a = a2.clone();
                move || async move {
                    admin(&a)
                        .await?
                        .create_group(CreateGroupRequest {
                            plugin: "no-such-plugin".into(),
                            replicas: 0,
                            ..Default::default()
                        })
                        .await?;
                    Ok(())
                }
            },
        ),
        row(
            "create a group with an unknown digest",
            Code::NotFound,
            Some("sha256:"),
            {
                let a = a1.clone();
                move || async move {
                    let plugin = format!("sha256:{}", "ab".repeat(32));
                    admin(&a)
                        .await?
                        .create_group(CreateGroupRequest {
                            plugin,
                            replicas: 0,
                            ..Default::default()
                        })
                        .await?;
                    Ok(())
                }
            },
        ),
        row(
            "create a group with 99 replicas",
            Code::InvalidArgument,
            Some("99"),
            {
                let a = a3.clone();
                move || async move {
                    admin(&a)
                        .await?
                        .create_group(CreateGroupRequest {
                            plugin: "kv".into(),
                            replicas: 99,
                            ..Default::default()
                        })
                        .await?;
                    Ok(())
                }
            },
        ),
        row(
            "deploy garbage bytes under the deployed name kv",
            Code::InvalidArgument,
            Some("wasm"),
            {
                let a = a2.clone();
                move || async move {
                    let garbage = b"\0asm but not really a component".to_vec();
                    admin(&a)
                        .await?
                        .deploy_plugin(deploy_stream(vec![DeployPluginChunk {
                            name: "kv".into(),
                            total_size_bytes: garbage.len() as u64,
                            data: garbage,
                        }]))
                        .await?;
                    Ok(())
                }
            },
        ),
        row(
            "deploy a WASI module",
            Code::InvalidArgument,
            Some("wasi_snapshot_preview1::fd_write"),
            {
                let a = a1.clone();
                move || async move {
                    admin(&a)
                        .await?
                        .deploy_plugin(deploy_stream(vec![DeployPluginChunk {
                            name: "wasi".into(),
                            total_size_bytes: wasi.len() as u64,
                            data: wasi,
                        }]))
                        .await?;
                    Ok(())
                }
            },
        ),
        row(
            "deploy a plugin named ../Evil Name",
            Code::InvalidArgument,
            Some("is invalid"),
            {
                let a = a1.clone();
                move || async move {
                    admin(&a)
                        .await?
                        .deploy_plugin(deploy_stream(vec![DeployPluginChunk {
                            name: "../Evil Name".into(),
                            total_size_bytes: flotilla::examples::KV.len() as u64,
                            data: flotilla::examples::KV.to_vec(),
                        }]))
                        .await?;
                    Ok(())
                }
            },
        ),
        row(
            "deploy with an upload stream of zero chunks",
            Code::InvalidArgument,
            Some("no chunk"),
            {
                let a = a3.clone();
                move || async move {
                    admin(&a)
                        .await?
                        .deploy_plugin(deploy_stream(Vec::new()))
                        .await?;
                    Ok(())
                }
            },
        ),
        row(
            "deploy with an upload cut short",
            Code::InvalidArgument,
            Some("cut short"),
            {
                let a = a2.clone();
                move || async move {
                    let kv = flotilla::examples::KV;
                    admin(&a)
                        .await?
                        .deploy_plugin(deploy_stream(vec![DeployPluginChunk {
                            name: "kv2".into(),
                            total_size_bytes: kv.len() as u64,
                            data: kv[..kv.len() / 2].to_vec(),
                        }]))
                        .await?;
                    Ok(())
                }
            },
        ),
        row(
            "deploy announcing 1 TiB",
            Code::InvalidArgument,
            Some("over the limit"),
            {
                let a = a1.clone();
                move || async move {
                    admin(&a)
                        .await?
                        .deploy_plugin(deploy_stream(vec![DeployPluginChunk {
                            name: "huge".into(),
                            total_size_bytes: 1 << 40,
                            data: vec![0; 16],
                        }]))
                        .await?;
                    Ok(())
                }
            },
        ),
        row(
            "delete group 0 (the meta group)",
            Code::InvalidArgument,
            Some("group 0"),
            {
                let a = a2.clone();
                move || async move {
                    admin(&a)
                        .await?
                        .delete_group(DeleteGroupRequest { group_id: 0 })
                        .await?;
                    Ok(())
                }
            },
        ),
        row("delete an unknown group", Code::NotFound, Some("987654"), {
            let a = a3.clone();
            move || async move {
                admin(&a)
                    .await?
                    .delete_group(DeleteGroupRequest { group_id: 987_654 })
                    .await?;
                Ok(())
            }
        }),
        row(
            "status of an unknown group",
            Code::NotFound,
            Some("987654"),
            {
                let a = a1.clone();
                move || async move {
                    admin(&a)
                        .await?
                        .group_status(GroupStatusRequest { group_id: 987_654 })
                        .await?;
                    Ok(())
                }
            },
        ),
        row(
            "upgrade the kv group to an unknown plugin",
            Code::NotFound,
            Some("nope"),
            {
                let a = a2.clone();
                move || async move {
                    admin(&a)
                        .await?
                        .upgrade_group(UpgradeGroupRequest {
                            group_id: group,
                            plugin: "nope@3".into(),
                        })
                        .await?;
                    Ok(())
                }
            },
        ),
    ]
}
