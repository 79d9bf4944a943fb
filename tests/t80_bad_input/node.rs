//! The bad-input rows for the node-to-node calls of the `Cluster` service: forged meta
//! commands, replica starts and plugin fetches that only another node should send.

use super::*;

pub(super) fn rows(v: &Vars) -> Vec<Row> {
    let Vars {
        group,
        a1,
        a2,
        a3,
        p3,
        absent_peer,
        meta,
        ..
    } = v.clone();
    vec![
        row(
            "join with node id 0",
            Code::InvalidArgument,
            Some("out of range"),
            {
                let a = a1.clone();
                move || async move {
                    cluster(&a)
                        .await?
                        .join_cluster(JoinClusterRequest {
                            node_id: 0,
                            addr: "127.0.0.1:1".into(),
                        })
                        .await?;
                    Ok(())
                }
            },
        ),
        row(
            "join with node id 70000",
            Code::InvalidArgument,
            Some("out of range"),
            {
                let a = a2.clone();
                move || async move {
                    cluster(&a)
                        .await?
                        .join_cluster(JoinClusterRequest {
                            node_id: 70_000,
                            addr: "127.0.0.1:1".into(),
                        })
                        .await?;
                    Ok(())
                }
            },
        ),
        row(
            "meta command with a garbage body",
            Code::InvalidArgument,
            Some("not a meta command"),
            {
                let a = meta.clone();
                move || async move {
                    cluster(&a)
                        .await?
                        .meta(MetaRequest {
                            body: b"{\"register_node\": 17".to_vec(),
                            query: false,
                        })
                        .await?;
                    Ok(())
                }
            },
        ),
        row(
            "meta query with a garbage body",
            Code::InvalidArgument,
            Some("not a meta query"),
            {
                let a = meta.clone();
                move || async move {
                    cluster(&a)
                        .await?
                        .meta(MetaRequest {
                            body: vec![0xFF, 0xFE, 0x00],
                            query: true,
                        })
                        .await?;
                    Ok(())
                }
            },
        ),
        row(
            "start a replica whose peer belongs to another node",
            Code::InvalidArgument,
            Some("does not belong"),
            {
                let a = a2.clone();
                move || async move {
                    cluster(&a)
                        .await?
                        .start_replica(StartReplicaRequest {
                            group_id: group,
                            peer_id: p3,
                            voters: vec![p3],
                            plugin_digest: flotilla::ids::PluginDigest::of(flotilla::examples::KV)
                                .0
                                .to_vec(),
                            campaign: true,
                            plugin_holders: vec![3],
                        })
                        .await?;
                    Ok(())
                }
            },
        ),
        row(
            "change peers with an unknown kind",
            Code::InvalidArgument,
            Some("unknown membership change"),
            {
                let a = a3.clone();
                move || async move {
                    cluster(&a)
                        .await?
                        .change_peers(ChangePeersRequest {
                            group_id: group,
                            changes: vec![PeerChangeItem {
                                kind: "add-emperor".into(),
                                peer_id: absent_peer,
                            }],
                        })
                        .await?;
                    Ok(())
                }
            },
        ),
        row(
            "change peers with no change",
            Code::InvalidArgument,
            Some("no membership change"),
            {
                let a = a1.clone();
                move || async move {
                    cluster(&a)
                        .await?
                        .change_peers(ChangePeersRequest {
                            group_id: group,
                            changes: Vec::new(),
                        })
                        .await?;
                    Ok(())
                }
            },
        ),
        row(
            "ensure a plugin with a 3-byte digest",
            Code::InvalidArgument,
            Some("32 bytes"),
            {
                let a = a2.clone();
                move || async move {
                    cluster(&a)
                        .await?
                        .ensure_plugin(EnsurePluginRequest {
                            digest: vec![1, 2, 3],
                            holders: vec![1],
                        })
                        .await?;
                    Ok(())
                }
            },
        ),
    ]
}
