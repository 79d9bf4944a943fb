//! Meta FSM tests of nodes: registering and re-registering (addresses, id range), node
//! states, and the rules for removing a node.

use super::*;

#[test]
fn registering_and_re_registering_nodes() {
    let mut meta = Meta::new();
    let first = meta.register(1);
    assert_eq!(first.state, NodeState::Up);
    assert_eq!(first.registered_at_ms, 1000);
    assert_eq!(first.addr, "10.0.0.1:7000");
    assert_eq!(
        meta.mem.value("node/00000000000000000001").as_deref(),
        Some(
            r#"{"id":1,"addr":"10.0.0.1:7000","state":"Up","replicas":0,"preferred_leaders":0,"registered_at_ms":1000,"updated_at_ms":1000}"#
        )
    );

    // Same address again: nothing changes, not even the update time.
    let before = meta.dump();
    assert_eq!(meta.register(1), first);
    assert_eq!(meta.dump(), before);

    // A new address is taken, the registration time kept.
    let moved = meta
        .ok(&MetaCommand::RegisterNode {
            node: NodeId(1),
            addr: "10.0.0.99:7000".into(),
        })
        .into_node()
        .expect("node");
    assert_eq!(moved.addr, "10.0.0.99:7000");
    assert_eq!(moved.registered_at_ms, 1000);
    assert_eq!(moved.updated_at_ms, 3000);

    meta.register(2);
    let msg = meta.rejected(&MetaCommand::RegisterNode {
        node: NodeId(3),
        addr: "10.0.0.99:7000".into(),
    });
    assert_eq!(
        msg,
        "address 10.0.0.99:7000 is already registered by node 1"
    );
    for bad in [0, 65_536] {
        let msg = meta.rejected(&MetaCommand::RegisterNode {
            node: NodeId(bad),
            addr: "x:1".into(),
        });
        assert_eq!(
            msg,
            format!("node id {bad} is out of range: node ids are 1..=65535")
        );
    }
    let msg = meta.rejected(&MetaCommand::RegisterNode {
        node: NodeId(3),
        addr: String::new(),
    });
    assert!(msg.contains("is not usable: it is empty"), "{msg}");
    assert_eq!(meta.nodes().len(), 2);
    meta.register(65_535);
    assert_eq!(meta.nodes().len(), 3);
}

#[test]
fn node_states_and_removal_rules() {
    let mut meta = Meta::cluster(3);
    let set = |node, state| MetaCommand::SetNodeState {
        node: NodeId(node),
        state,
    };
    let g = meta.create(1);
    let host = g.replicas[0].node.0;
    assert_eq!(
        meta.rejected(&set(host, NodeState::Removed)),
        format!("node {host} still hosts 1 replicas; drain it before removing it")
    );
    let draining = meta
        .ok(&set(host, NodeState::Draining))
        .into_node()
        .expect("node");
    assert_eq!(draining.state, NodeState::Draining);
    assert_eq!(
        meta.ok(&set(host, NodeState::Up))
            .into_node()
            .expect("node")
            .state,
        NodeState::Up
    );

    meta.ok(&set(3, NodeState::Removed));
    assert_eq!(
        meta.rejected(&set(3, NodeState::Up)),
        "node 3 was removed; a removed node id cannot be used again"
    );
    assert_eq!(
        meta.rejected(&MetaCommand::RegisterNode {
            node: NodeId(3),
            addr: "10.0.0.3:7000".into()
        }),
        "node 3 was removed; a removed node id cannot be used again"
    );
    // A removed node's address is free for a new node.
    meta.ok(&MetaCommand::RegisterNode {
        node: NodeId(4),
        addr: "10.0.0.3:7000".into(),
    });
    assert_eq!(
        meta.rejected(&set(9, NodeState::Up)),
        "node 9 is not registered"
    );
    // Re-registering keeps the state.
    meta.ok(&set(2, NodeState::Draining));
    assert_eq!(meta.register(2).state, NodeState::Draining);
}
