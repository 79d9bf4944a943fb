//! The bad-input rows for `RaftTransport`: garbage and forged raft messages and batches,
//! and snapshot streams that lie about their size or group.

use super::*;

pub(super) fn rows(v: &Vars) -> Vec<Row> {
    let Vars {
        group,
        a1,
        a2,
        a3,
        p2,
        p3,
        ..
    } = v.clone();
    vec![
        row(
            "stream: an envelope whose bytes do not decode (skipped)",
            Code::Ok,
            None,
            {
                let a = a2.clone();
                move || async move {
                    let batch = RaftBatch {
                        from_node: 1,
                        messages: vec![RaftEnvelope {
                            group_id: group,
                            message: vec![0xFF; 64],
                        }],
                    };
                    stream_batches(a, vec![batch]).await
                }
            },
        ),
        row(
            "stream: a message addressed to a peer on another node (skipped)",
            Code::Ok,
            None,
            {
                let a = a2.clone();
                move || async move {
                    let m = raft_msg(MessageType::MsgHeartbeat, (7 << 16) | 1, p3, 1_000);
                    let batch = RaftBatch {
                        from_node: 1,
                        messages: vec![RaftEnvelope {
                            group_id: group,
                            message: encode(&m),
                        }],
                    };
                    stream_batches(a, vec![batch]).await
                }
            },
        ),
        row(
            "stream: a message from a peer of another node than the sender (skipped)",
            Code::Ok,
            None,
            {
                let a = a3.clone();
                move || async move {
                    // Claims node 1 sent it, but the sending peer lives on node 2.
                    let mut m = raft_msg(MessageType::MsgRequestVote, p2, p3, 1_000);
                    m.log_term = 1_000;
                    m.index = 1_000_000;
                    let batch = RaftBatch {
                        from_node: 1,
                        messages: vec![RaftEnvelope {
                            group_id: group,
                            message: encode(&m),
                        }],
                    };
                    stream_batches(a, vec![batch]).await
                }
            },
        ),
        row(
            "stream: a MsgSnapshot outside the Snapshot call (skipped)",
            Code::Ok,
            None,
            {
                let a = a3.clone();
                move || async move {
                    let batch = RaftBatch {
                        from_node: 1,
                        messages: vec![RaftEnvelope {
                            group_id: SNAP_GROUP,
                            message: snapshot_msg(SNAP_GROUP, (1 << 16) | 1, (1 << 16) | 3, 0),
                        }],
                    };
                    stream_batches(a, vec![batch]).await
                }
            },
        ),
        row(
            "stream: a heartbeat for a group nobody created",
            Code::Ok,
            None,
            {
                let a = a3.clone();
                move || async move {
                    let m = raft_msg(MessageType::MsgHeartbeat, (1 << 16) | 1, (2 << 16) | 3, 5);
                    let batch = RaftBatch {
                        from_node: 1,
                        messages: vec![RaftEnvelope {
                            group_id: GHOST_GROUP,
                            message: encode(&m),
                        }],
                    };
                    stream_batches(a, vec![batch]).await
                }
            },
        ),
        row(
            "snapshot: no chunk at all",
            Code::InvalidArgument,
            Some("no first chunk"),
            {
                let a = a1.clone();
                move || async move { send_snapshot(a, Vec::new()).await }
            },
        ),
        row(
            "snapshot: the first chunk carries no raft message",
            Code::InvalidArgument,
            Some("carries no raft message"),
            {
                let a = a1.clone();
                move || async move {
                    send_snapshot(
                        a,
                        vec![SnapshotChunk {
                            from_node: 2,
                            group_id: group,
                            raft_message: Vec::new(),
                            data: vec![1; 100],
                        }],
                    )
                    .await
                }
            },
        ),
        row(
            "snapshot: the first chunk carries a MsgAppend",
            Code::InvalidArgument,
            Some("not a MsgSnapshot"),
            {
                let a = a1.clone();
                move || async move {
                    let m = raft_msg(MessageType::MsgAppend, p2, (1 << 16) | 1, 1_000);
                    send_snapshot(
                        a,
                        vec![SnapshotChunk {
                            from_node: 2,
                            group_id: group,
                            raft_message: encode(&m),
                            data: Vec::new(),
                        }],
                    )
                    .await
                }
            },
        ),
        row(
            "snapshot: a raft message that does not decode",
            Code::InvalidArgument,
            Some("does not decode"),
            {
                let a = a1.clone();
                move || async move {
                    send_snapshot(
                        a,
                        vec![SnapshotChunk {
                            from_node: 2,
                            group_id: SNAP_GROUP,
                            raft_message: vec![0xFF; 9],
                            data: Vec::new(),
                        }],
                    )
                    .await
                }
            },
        ),
        row(
            "snapshot: more data than the header declares",
            Code::InvalidArgument,
            Some("too long"),
            {
                let a = a1.clone();
                move || async move {
                    let msg = snapshot_msg(SNAP_GROUP, (1 << 16) | 2, (1 << 16) | 1, 8);
                    send_snapshot(
                        a,
                        vec![
                            SnapshotChunk {
                                from_node: 2,
                                group_id: SNAP_GROUP,
                                raft_message: msg,
                                data: vec![7; 6],
                            },
                            SnapshotChunk {
                                from_node: 2,
                                group_id: SNAP_GROUP,
                                raft_message: Vec::new(),
                                data: vec![7; 6],
                            },
                        ],
                    )
                    .await
                }
            },
        ),
        row(
            "snapshot: less data than the header declares",
            Code::InvalidArgument,
            Some("truncated"),
            {
                let a = a1.clone();
                move || async move {
                    let msg = snapshot_msg(SNAP_GROUP, (1 << 16) | 2, (1 << 16) | 1, 4096);
                    send_snapshot(
                        a,
                        vec![SnapshotChunk {
                            from_node: 2,
                            group_id: SNAP_GROUP,
                            raft_message: msg,
                            data: vec![7; 100],
                        }],
                    )
                    .await
                }
            },
        ),
        row(
            "fetch a plugin by a 3-byte digest",
            Code::InvalidArgument,
            Some("32-byte"),
            {
                let a = a3.clone();
                move || async move {
                    transport(&a)
                        .await?
                        .fetch_plugin(FetchPluginRequest {
                            digest: vec![1, 2, 3],
                        })
                        .await?;
                    Ok(())
                }
            },
        ),
        row(
            "fetch a plugin nobody deployed",
            Code::NotFound,
            Some("not stored"),
            {
                let a = a3.clone();
                move || async move {
                    transport(&a)
                        .await?
                        .fetch_plugin(FetchPluginRequest {
                            digest: vec![0xAB; 32],
                        })
                        .await?;
                    Ok(())
                }
            },
        ),
    ]
}
