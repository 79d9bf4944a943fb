//! The bad-input rows for the operator calls of the `Cluster` service: node and group
//! membership, placement and status requests with wrong or hostile arguments.

use super::*;

pub(super) fn rows(v: &Vars) -> Vec<Row> {
    let Vars {
        group,
        a1,
        a2,
        a3,
        p2,
        absent_peer,
        ..
    } = v.clone();
    vec![
        row(
            "add a replica on an unknown node",
            Code::NotFound,
            Some("42"),
            {
                let a = a1.clone();
                move || async move {
                    cluster(&a)
                        .await?
                        .add_replica(AddReplicaRequest {
                            group_id: group,
                            node_id: 42,
                            learner_only: false,
                        })
                        .await?;
                    Ok(())
                }
            },
        ),
        row(
            "add a replica on a node that already hosts one",
            Code::AlreadyExists,
            Some("already"),
            {
                let a = a2.clone();
                move || async move {
                    cluster(&a)
                        .await?
                        .add_replica(AddReplicaRequest {
                            group_id: group,
                            node_id: 2,
                            learner_only: true,
                        })
                        .await?;
                    Ok(())
                }
            },
        ),
        row(
            "add a replica to an unknown group",
            Code::NotFound,
            Some("987654"),
            {
                let a = a3.clone();
                move || async move {
                    cluster(&a)
                        .await?
                        .add_replica(AddReplicaRequest {
                            group_id: 987_654,
                            node_id: 0,
                            learner_only: false,
                        })
                        .await?;
                    Ok(())
                }
            },
        ),
        row(
            "remove a peer that is not in the group",
            Code::NotFound,
            Some("has no replica"),
            {
                let a = a2.clone();
                move || async move {
                    cluster(&a)
                        .await?
                        .remove_replica(RemoveReplicaRequest {
                            group_id: group,
                            peer_id: absent_peer,
                        })
                        .await?;
                    Ok(())
                }
            },
        ),
        row(
            "promote a peer that does not exist",
            Code::NotFound,
            Some("no peer"),
            {
                let a = a1.clone();
                move || async move {
                    cluster(&a)
                        .await?
                        .promote(PromoteRequest {
                            group_id: group,
                            peer_id: absent_peer,
                        })
                        .await?;
                    Ok(())
                }
            },
        ),
        row(
            "promote a peer that is already a voter",
            Code::FailedPrecondition,
            Some("already a voter"),
            {
                let a = a3.clone();
                move || async move {
                    cluster(&a)
                        .await?
                        .promote(PromoteRequest {
                            group_id: group,
                            peer_id: p2,
                        })
                        .await?;
                    Ok(())
                }
            },
        ),
        row(
            "transfer leadership to a peer that is not a member",
            Code::InvalidArgument,
            Some("not a voter"),
            {
                let a = a2.clone();
                move || async move {
                    cluster(&a)
                        .await?
                        .transfer_leader(TransferLeaderRequest {
                            group_id: group,
                            peer_id: absent_peer,
                            node_id: 0,
                        })
                        .await?;
                    Ok(())
                }
            },
        ),
        row(
            "transfer leadership to a node without a replica",
            Code::NotFound,
            Some("no replica on node 42"),
            {
                let a = a1.clone();
                move || async move {
                    cluster(&a)
                        .await?
                        .transfer_leader(TransferLeaderRequest {
                            group_id: group,
                            peer_id: 0,
                            node_id: 42,
                        })
                        .await?;
                    Ok(())
                }
            },
        ),
        row("drain an unknown node", Code::NotFound, Some("42"), {
            let a = a3.clone();
            move || async move {
                cluster(&a)
                    .await?
                    .drain_node(DrainNodeRequest { node_id: 42 })
                    .await?;
                Ok(())
            }
        }),
        row(
            "replica digest of an unknown group",
            Code::NotFound,
            Some("987654"),
            {
                let a = a2.clone();
                move || async move {
                    cluster(&a)
                        .await?
                        .replica_digest(ReplicaDigestRequest {
                            group_id: 987_654,
                            index: 0,
                        })
                        .await?;
                    Ok(())
                }
            },
        ),
    ]
}
