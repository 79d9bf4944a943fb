//! Meta FSM tests of the wire format: commands, queries and outputs are plain JSON, and
//! malformed input is refused as invalid with the offending part named.

use super::*;

#[test]
fn malformed_input_is_invalid_and_named() {
    let mut meta = Meta::new();
    let invalid = |meta: &mut Meta, bytes: &[u8]| match meta.entry(&[bytes]).remove(0) {
        Err(FsmError::Invalid(msg)) => msg,
        other => panic!("expected Invalid, got {other:?}"),
    };
    assert!(invalid(&mut meta, b"not json").starts_with("not a meta command: expected"));
    let msg = invalid(&mut meta, br#"{"op":"Bogus"}"#);
    assert!(msg.contains("unknown variant `Bogus`"), "{msg}");
    let msg = invalid(&mut meta, br#"{"node":1}"#);
    assert!(msg.contains("missing field `op`"), "{msg}");
    let msg = invalid(&mut meta, br#"{"op":"RegisterNode","node":1}"#);
    assert!(msg.contains("missing field `addr`"), "{msg}");
    let msg = invalid(
        &mut meta,
        br#"{"op":"RegisterNode","node":1,"addr":"a:1","adr":2}"#,
    );
    assert!(msg.contains("unknown field `adr`"), "{msg}");
    let msg = invalid(
        &mut meta,
        br#"{"op":"RegisterNode","node":-1,"addr":"a:1"}"#,
    );
    assert!(msg.contains("invalid value: integer `-1`"), "{msg}");
    let msg = invalid(
        &mut meta,
        br#"{"op":"CreateGroup","plugin_digest":"sha256:12","replicas":1}"#,
    );
    assert!(msg.contains("'sha256:12' is not a plugin digest"), "{msg}");
    assert!(meta.mem.is_empty());

    let q = |bytes: &[u8]| {
        let ctx = QueryContext {
            group: META_GROUP,
            applied_index: 0,
            applied_timestamp_ms: 0,
        };
        MetaFsm.query(ctx, bytes, &KvView::for_query(meta.mem.clone(), META_GROUP))
    };
    match q(br#"{"op":"Groups","limit":"ten"}"#) {
        Err(FsmError::Invalid(msg)) => {
            assert!(msg.starts_with("not a meta query:"), "{msg}");
            assert!(msg.contains("invalid type: string \"ten\""), "{msg}");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert!(q(br#"{"op":"Groups"}"#).is_ok());
}

#[test]
fn wire_format_is_plain_json() {
    let cmd = MetaCommand::AddReplica {
        group: GroupId(3),
        node: NodeId(2),
        learner: true,
    };
    assert_eq!(
        String::from_utf8(cmd.encode()).expect("utf-8"),
        r#"{"op":"AddReplica","group":3,"node":2,"learner":true}"#
    );
    // `learner` may be left out; digests accept both spellings.
    let parsed = MetaCommand::decode(br#"{"op":"AddReplica","group":3,"node":2}"#).expect("parses");
    assert_eq!(
        parsed,
        MetaCommand::AddReplica {
            group: GroupId(3),
            node: NodeId(2),
            learner: false
        }
    );
    let d = PluginDigest::of(b"kv");
    for spelled in [d.to_hex(), d.to_string()] {
        let text = format!(r#"{{"op":"CreateGroup","plugin_digest":"{spelled}","replicas":3}}"#);
        assert_eq!(
            MetaCommand::decode(text.as_bytes()).expect("parses"),
            MetaCommand::CreateGroup {
                plugin_digest: d,
                replicas: 3
            }
        );
    }
    assert_eq!(
        String::from_utf8(MetaQuery::Nodes.encode()).expect("utf-8"),
        r#"{"op":"Nodes"}"#
    );
    let out = MetaOutput::Groups {
        groups: Vec::new(),
        next_start_after: None,
    };
    assert_eq!(
        String::from_utf8(out.encode()).expect("utf-8"),
        r#"{"kind":"Groups","groups":[],"next_start_after":null}"#
    );
    assert_eq!(
        out.into_node(),
        Err(MetaDecodeError::Unexpected {
            wanted: "Node",
            got: "Groups".into()
        })
    );
}
