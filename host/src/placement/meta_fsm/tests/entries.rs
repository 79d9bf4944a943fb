//! Meta FSM tests of how entries apply: the same history gives byte-identical state, a
//! failed command leaves the rest of its entry intact, and corrupt stored state is a
//! storage fault rather than a command outcome.

use super::*;

#[test]
fn corrupt_state_is_a_storage_fault_not_an_outcome() {
    let mut meta = Meta::cluster(2);
    meta.mem.insert(b"node/00000000000000000002", b"{not json");
    let out = meta.apply(&MetaCommand::CreateGroup {
        plugin_digest: PluginDigest::of(b"kv"),
        replicas: 1,
    });
    match out {
        Err(FsmError::Storage(msg)) => {
            assert!(
                msg.starts_with("corrupt meta record at node/00000000000000000002"),
                "{msg}"
            )
        }
        other => panic!("expected a storage fault, got {other:?}"),
    }
}

/// A scripted history with several commands per entry, some of which fail.
fn script() -> Vec<Vec<MetaCommand>> {
    let d = PluginDigest::of(b"kv");
    let mut entries = vec![
        (1..=5)
            .map(|n| MetaCommand::RegisterNode {
                node: NodeId(n),
                addr: format!("h{n}:1"),
            })
            .collect(),
        vec![
            MetaCommand::DeployPlugin {
                name: "kv".into(),
                digest: d,
                size_bytes: 2,
                stateful: false,
                holder_node: NodeId(2),
            },
            MetaCommand::CreateGroup {
                plugin_digest: d,
                replicas: 9,
            },
        ],
    ];
    for i in 0..30u64 {
        entries.push(vec![
            MetaCommand::CreateGroup {
                plugin_digest: d,
                replicas: (i % 3 + 1) as u32,
            },
            MetaCommand::AddReplica {
                group: GroupId(i + 1),
                node: NodeId(i % 5 + 1),
                learner: i % 2 == 0,
            },
        ]);
    }
    entries.push(vec![
        MetaCommand::SetNodeState {
            node: NodeId(3),
            state: NodeState::Draining,
        },
        MetaCommand::DeleteGroup { group: GroupId(4) },
        MetaCommand::RemoveReplica {
            group: GroupId(5),
            peer: PeerId(1),
        },
    ]);
    entries
}

#[test]
fn same_history_gives_byte_identical_state() {
    let run = || {
        let mut meta = Meta::new();
        let mut outputs = Vec::new();
        for entry in script() {
            let bytes: Vec<Vec<u8>> = entry.iter().map(MetaCommand::encode).collect();
            let refs: Vec<&[u8]> = bytes.iter().map(Vec::as_slice).collect();
            outputs.extend(meta.entry(&refs));
        }
        (meta, outputs)
    };
    let (a, out_a) = run();
    let (b, out_b) = run();
    assert_eq!(out_a, out_b);
    assert_eq!(a.dump(), b.dump());
    // The history did real work and had refusals in it.
    assert!(out_a.iter().filter(|o| o.is_err()).count() >= 2);
    assert!(a.all_groups().len() >= 20);
    a.check_consistent();
}

#[test]
fn a_failed_command_leaves_the_rest_of_its_entry_intact() {
    let mut meta = Meta::new();
    let good1 = MetaCommand::RegisterNode {
        node: NodeId(1),
        addr: "a:1".into(),
    }
    .encode();
    let bad = MetaCommand::RegisterNode {
        node: NodeId(2),
        addr: "a:1".into(),
    }
    .encode();
    let good2 = MetaCommand::RegisterNode {
        node: NodeId(3),
        addr: "c:1".into(),
    }
    .encode();
    let outs = meta.entry(&[&good1, b"{", &bad, &good2]);
    assert!(outs[0].is_ok());
    assert!(matches!(outs[1], Err(FsmError::Invalid(_))));
    assert!(matches!(outs[2], Err(FsmError::Rejected(_))));
    assert!(outs[3].is_ok());
    let ids: Vec<u64> = meta.nodes().iter().map(|n| n.id.0).collect();
    assert_eq!(ids, [1, 3]);
}
