//! Meta FSM tests of groups: where creation places replicas and preferred leaders, when
//! it refuses, deleting and upgrading groups, and paged group listings.

use super::*;

#[test]
fn create_places_on_distinct_least_loaded_nodes() {
    let mut meta = Meta::cluster(4);
    let one = meta.create(1);
    assert_eq!(one.id, GroupId(1));
    assert_eq!(one.replicas.len(), 1);
    assert_eq!(one.replicas[0].node, NodeId(1));
    assert_eq!(
        one.replicas[0].peer,
        PeerId::compose(FIRST_PEER_SEQ, NodeId(1))
    );
    assert_eq!(one.preferred_leader, one.replicas[0].peer);
    assert_eq!(one.created_at_ms, meta.index * 1000);
    assert_eq!(one.conf_epoch, 1);

    // Node 1 carries a replica: the next three go to 2, 3 and 4.
    let three = meta.create(3);
    assert_eq!(three.id, GroupId(2));
    let nodes: Vec<u64> = three.replicas.iter().map(|r| r.node.0).collect();
    assert_eq!(nodes, [2, 3, 4]);
    let peers: Vec<PeerId> = three.replicas.iter().map(|r| r.peer).collect();
    assert_eq!(
        peers,
        [
            PeerId::compose(2, NodeId(2)),
            PeerId::compose(3, NodeId(3)),
            PeerId::compose(4, NodeId(4))
        ]
    );
    assert!(three.replicas.iter().all(|r| !r.learner));
    assert_eq!(three.preferred_leader, peers[0]);
    // Next: node 1 has 1 replica and 1 leader, 2..4 have 1 replica; leaders go to
    // a node without one.
    let next = meta.create(3);
    let nodes: Vec<u64> = next.replicas.iter().map(|r| r.node.0).collect();
    assert_eq!(nodes, [1, 2, 3]);
    assert_eq!(next.preferred_leader.node(), NodeId(3));
    assert_eq!(meta.groups_on(4), [GroupId(2)]);
    assert_eq!(meta.groups_on(1), [GroupId(1), GroupId(3)]);
    assert_eq!(meta.group(GroupId(2)), three);
    meta.check_consistent();
}

#[test]
fn preferred_leaders_spread_over_many_groups() {
    let mut meta = Meta::cluster(3);
    for _ in 0..100 {
        meta.create(3);
    }
    for n in meta.nodes() {
        assert_eq!(n.replicas, 100);
        assert!(
            n.preferred_leaders.abs_diff(33) <= 2,
            "node {} prefers {} leaders",
            n.id,
            n.preferred_leaders
        );
    }
    meta.check_consistent();

    let mut meta = Meta::cluster(4);
    for _ in 0..100 {
        meta.create(3);
    }
    for n in meta.nodes() {
        assert!(
            n.replicas.abs_diff(75) <= 1,
            "node {} hosts {}",
            n.id,
            n.replicas
        );
        assert!(
            n.preferred_leaders.abs_diff(25) <= 2,
            "node {} prefers {} leaders",
            n.id,
            n.preferred_leaders
        );
    }
    meta.check_consistent();
}

#[test]
fn create_refuses_without_enough_up_nodes() {
    let mut meta = Meta::cluster(3);
    meta.ok(&MetaCommand::SetNodeState {
        node: NodeId(2),
        state: NodeState::Draining,
    });
    let create = |replicas| MetaCommand::CreateGroup {
        plugin_digest: PluginDigest::of(b"kv"),
        replicas,
    };
    assert_eq!(
        meta.rejected(&create(3)),
        "a group of 3 replicas needs 3 Up nodes, but only 2 are Up"
    );
    assert_eq!(
        meta.rejected(&create(0)),
        "a group needs 1..=7 replicas, not 0"
    );
    assert_eq!(
        meta.rejected(&create(8)),
        "a group needs 1..=7 replicas, not 8"
    );
    let unknown = PluginDigest::of(b"nope");
    assert_eq!(
        meta.rejected(&MetaCommand::CreateGroup {
            plugin_digest: unknown,
            replicas: 1
        }),
        format!("plugin {unknown} is not deployed")
    );
    // Refusals consumed no ids; the Draining node gets nothing.
    let g = meta.create(2);
    assert_eq!(g.id, GroupId(1));
    let nodes: Vec<u64> = g.replicas.iter().map(|r| r.node.0).collect();
    assert_eq!(nodes, [1, 3]);
    assert_eq!(g.replicas[0].peer.seq(), FIRST_PEER_SEQ);
}

#[test]
fn deleting_and_upgrading_groups() {
    let mut meta = Meta::cluster(3);
    let g = meta.create(3);
    let keep = meta.create(1);
    let (v2, _) = meta.deploy("kv", b"kv v2");
    let upgraded = meta
        .ok(&MetaCommand::SetGroupPlugin {
            group: g.id,
            plugin_digest: v2.digest,
        })
        .into_group()
        .expect("group");
    assert_eq!(upgraded.plugin_digest, v2.digest);
    assert_eq!(upgraded.conf_epoch, g.conf_epoch);
    let unknown = PluginDigest::of(b"?");
    assert_eq!(
        meta.rejected(&MetaCommand::SetGroupPlugin {
            group: g.id,
            plugin_digest: unknown
        }),
        format!("plugin {unknown} is not deployed")
    );

    let deleted = meta
        .ok(&MetaCommand::DeleteGroup { group: g.id })
        .into_group()
        .expect("group");
    assert_eq!(deleted, upgraded);
    assert_eq!(
        meta.q_rejected(&MetaQuery::Group { group: g.id }),
        "group 1 does not exist"
    );
    assert_eq!(
        meta.rejected(&MetaCommand::DeleteGroup { group: g.id }),
        "group 1 does not exist"
    );
    assert_eq!(
        meta.rejected(&MetaCommand::DeleteGroup { group: META_GROUP }),
        "group 0 is the meta group; it is not managed through group records"
    );
    let total: u64 = meta.nodes().iter().map(|n| n.replicas).sum();
    assert_eq!(total, 1);
    assert_eq!(meta.all_groups(), [keep]);
    assert_eq!(
        meta.mem
            .value("replica/00000000000000000002/00000000000000000001"),
        None
    );
    meta.check_consistent();
    // Ids are never reused.
    assert_eq!(meta.create(1).id, GroupId(3));
}

#[test]
fn group_listings_are_paged() {
    let mut meta = Meta::cluster(2);
    for _ in 0..5 {
        meta.create(1);
    }
    let page = |start_after, limit| match meta.q(&MetaQuery::Groups { start_after, limit }) {
        MetaOutput::Groups {
            groups,
            next_start_after,
        } => (
            groups.iter().map(|g| g.id.0).collect::<Vec<_>>(),
            next_start_after,
        ),
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(page(None, Some(2)), (vec![1, 2], Some(GroupId(2))));
    assert_eq!(
        page(Some(GroupId(2)), Some(2)),
        (vec![3, 4], Some(GroupId(4)))
    );
    assert_eq!(page(Some(GroupId(4)), Some(2)), (vec![5], None));
    assert_eq!(page(None, None), (vec![1, 2, 3, 4, 5], None));
    assert_eq!(page(None, Some(0)), (vec![1], Some(GroupId(1))));

    // Groups 1, 3, 5 sit on node 1.
    let on = |start_after, limit| match meta.q(&MetaQuery::GroupsOnNode {
        node: NodeId(1),
        start_after,
        limit,
    }) {
        MetaOutput::Groups {
            groups,
            next_start_after,
        } => (
            groups.iter().map(|g| g.id.0).collect::<Vec<_>>(),
            next_start_after,
        ),
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(on(None, Some(2)), (vec![1, 3], Some(GroupId(3))));
    assert_eq!(on(Some(GroupId(3)), Some(2)), (vec![5], None));
    assert_eq!(
        meta.q_rejected(&MetaQuery::GroupsOnNode {
            node: NodeId(9),
            start_after: None,
            limit: None
        }),
        "node 9 is not registered"
    );
    assert_eq!(
        meta.q_rejected(&MetaQuery::Group { group: META_GROUP }),
        "group 0 is the meta group; it is not managed through group records"
    );
}
