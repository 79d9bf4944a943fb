//! Meta FSM tests of a group's replicas: adding learners and voters, promoting and
//! removing them, replacing a removed preferred leader, and the members limit.

use super::*;

#[test]
fn add_promote_and_remove_replicas() {
    let mut meta = Meta::cluster(4);
    meta.register(5);
    let g = meta.create(3); // nodes 1, 2, 3
    let gid = g.id;
    let add = |node, learner| MetaCommand::AddReplica {
        group: gid,
        node: NodeId(node),
        learner,
    };
    assert_eq!(
        meta.rejected(&add(2, false)),
        format!(
            "node 2 already hosts peer {} of group 1",
            g.replicas[1].peer
        )
    );
    meta.ok(&MetaCommand::SetNodeState {
        node: NodeId(5),
        state: NodeState::Draining,
    });
    assert_eq!(
        meta.rejected(&add(5, false)),
        "node 5 is Draining, not Up; only Up nodes take new replicas"
    );
    assert_eq!(meta.rejected(&add(9, false)), "node 9 is not registered");
    assert_eq!(
        meta.rejected(&MetaCommand::AddReplica {
            group: GroupId(42),
            node: NodeId(4),
            learner: false
        }),
        "group 42 does not exist"
    );

    let (group, learner) = match meta.ok(&add(4, true)) {
        MetaOutput::ReplicaAdded { group, replica } => (group, replica),
        other => panic!("unexpected {other:?}"),
    };
    assert!(learner.learner);
    assert_eq!(learner.node, NodeId(4));
    assert_eq!(learner.peer, PeerId::compose(4, NodeId(4)));
    assert_eq!(group.replicas.len(), 4);
    assert_eq!(group.conf_epoch, 2);
    assert_eq!(meta.node(4).replicas, 1);
    meta.check_consistent();

    let promote = |peer| MetaCommand::PromoteReplica { group: gid, peer };
    let promoted = meta.ok(&promote(learner.peer)).into_group().expect("group");
    assert!(!promoted.replica(learner.peer).expect("member").learner);
    assert_eq!(promoted.conf_epoch, 3);
    assert_eq!(
        meta.rejected(&promote(learner.peer)),
        format!("peer {} of group 1 is already a voter", learner.peer)
    );
    assert_eq!(
        meta.rejected(&promote(PeerId(12345))),
        "group 1 has no peer 12345"
    );

    // Removing the preferred leader hands the role to the voter whose node prefers
    // the fewest leaders (node 4 prefers none; nodes 2 and 3 none either: lowest id).
    let remove = |peer| MetaCommand::RemoveReplica { group: gid, peer };
    let old_leader = g.preferred_leader;
    assert_eq!(old_leader.node(), NodeId(1));
    let after = meta.ok(&remove(old_leader)).into_group().expect("group");
    assert!(after.replica(old_leader).is_none());
    assert_eq!(after.preferred_leader.node(), NodeId(2));
    assert_eq!(after.conf_epoch, 4);
    assert_eq!(meta.node(1).replicas, 0);
    assert_eq!(meta.node(1).preferred_leaders, 0);
    assert_eq!(meta.node(2).preferred_leaders, 1);
    assert_eq!(meta.groups_on(1), Vec::<GroupId>::new());
    meta.check_consistent();

    // Down to one voter plus a learner: the learner can go, the last voter cannot.
    let peers: Vec<PeerId> = after.replicas.iter().map(|r| r.peer).collect();
    meta.ok(&remove(peers[1]));
    meta.ok(&remove(peers[2]));
    let last = meta.group(gid);
    assert_eq!(last.replicas.len(), 1);
    let learner = match meta.ok(&add(3, true)) {
        MetaOutput::ReplicaAdded { replica, .. } => replica,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(
        meta.rejected(&remove(last.replicas[0].peer)),
        format!(
            "peer {} is the last voter of group 1; delete the group instead",
            last.replicas[0].peer
        )
    );
    meta.ok(&remove(learner.peer));
    meta.check_consistent();
}

#[test]
fn a_removed_preferred_leader_is_replaced_on_the_least_leading_node() {
    let mut meta = Meta::cluster(3);
    let g1 = meta.create(3);
    let g2 = meta.create(3);
    assert_eq!(g1.preferred_leader.node(), NodeId(1));
    assert_eq!(g2.preferred_leader.node(), NodeId(2));
    // g1's remaining voters are on nodes 2 (prefers g2) and 3 (prefers none).
    let after = meta
        .ok(&MetaCommand::RemoveReplica {
            group: g1.id,
            peer: g1.preferred_leader,
        })
        .into_group()
        .expect("group");
    assert_eq!(after.preferred_leader.node(), NodeId(3));
    meta.check_consistent();
}

#[test]
fn groups_hold_at_most_members_max() {
    let mut meta = Meta::cluster(9);
    let g = meta.create(REPLICAS_MAX);
    assert_eq!(g.replicas.len(), 7);
    meta.ok(&MetaCommand::AddReplica {
        group: g.id,
        node: NodeId(8),
        learner: true,
    });
    assert_eq!(
        meta.rejected(&MetaCommand::AddReplica {
            group: g.id,
            node: NodeId(9),
            learner: true
        }),
        "group 1 already has 8 members, the most a group may have"
    );
}
