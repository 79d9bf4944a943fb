//! Meta FSM tests of plugins: deployed versions, re-deploying the same bytes (already
//! present), and resolving plugin specs (`name`, `name@version`, `sha256:<hex>`).

use super::*;

#[test]
fn plugin_versions_and_already_present() {
    let mut meta = Meta::cluster(2);
    let kv1 = meta
        .q(&MetaQuery::ResolvePlugin { spec: "kv".into() })
        .into_plugin()
        .expect("plugin");
    assert_eq!(kv1.version, 1);
    assert_eq!(kv1.deployed_at_ms, 3000);
    assert_eq!(kv1.holders, [NodeId(1)]);

    // Same digest as the latest: the existing record, with the new holder.
    let again = meta.ok(&MetaCommand::DeployPlugin {
        name: "kv".into(),
        digest: PluginDigest::of(b"kv"),
        size_bytes: 2,
        stateful: false,
        holder_node: NodeId(2),
    });
    match again {
        MetaOutput::Deployed {
            plugin,
            already_present,
        } => {
            assert!(already_present);
            assert_eq!(plugin.version, 1);
            assert_eq!(plugin.deployed_at_ms, kv1.deployed_at_ms);
            assert_eq!(plugin.holders, [NodeId(1), NodeId(2)]);
        }
        other => panic!("unexpected {other:?}"),
    }

    let (v2, present) = meta.deploy("kv", b"kv v2");
    assert_eq!((v2.version, present), (2, false));
    assert_eq!(v2.holders, [NodeId(1)]);
    // The first digest again is not the latest any more: a new version.
    let (v3, present) = meta.deploy("kv", b"kv");
    assert_eq!((v3.version, present), (3, false));
    assert_eq!(v3.digest, kv1.digest);
    let (c1, _) = meta.deploy("counter", b"counter");
    assert_eq!(c1.version, 1);

    let blob = meta.ok(&MetaCommand::AddPluginHolder {
        digest: PluginDigest::of(b"kv v2"),
        node: NodeId(2),
    });
    match blob {
        MetaOutput::Blob { blob } => {
            assert_eq!(blob.holders, [NodeId(1), NodeId(2)]);
            assert_eq!((blob.first_name.as_str(), blob.first_version), ("kv", 2));
        }
        other => panic!("unexpected {other:?}"),
    }

    // Listing pages through name then version.
    let page = |start_after, limit| match meta.q(&MetaQuery::Plugins { start_after, limit }) {
        MetaOutput::Plugins { plugins, next } => (
            plugins.iter().map(PluginRecord::spec).collect::<Vec<_>>(),
            next,
        ),
        other => panic!("unexpected {other:?}"),
    };
    let (all, next) = page(None, None);
    assert_eq!(all, ["counter@1", "kv@1", "kv@2", "kv@3"]);
    assert_eq!(next, None);
    let (first, next) = page(None, Some(3));
    assert_eq!(first, ["counter@1", "kv@1", "kv@2"]);
    let (rest, next) = page(next, Some(3));
    assert_eq!(rest, ["kv@3"]);
    assert_eq!(next, None);

    // Refusals.
    let deploy = |name: &str, digest, size_bytes, holder| MetaCommand::DeployPlugin {
        name: name.into(),
        digest,
        size_bytes,
        stateful: true,
        holder_node: NodeId(holder),
    };
    let d = PluginDigest::of(b"x");
    assert_eq!(
        meta.rejected(&deploy("kv", crate::placement::META_PLUGIN, 1, 1)),
        format!(
            "digest {} is reserved for the built-in meta state machine",
            crate::placement::META_PLUGIN
        )
    );
    assert!(meta.rejected(&deploy("", d, 1, 1)).contains("it is empty"));
    assert!(
        meta.rejected(&deploy("kv@2", d, 1, 1))
            .contains("only ASCII letters")
    );
    assert!(
        meta.rejected(&deploy("-kv", d, 1, 1))
            .contains("start with a letter")
    );
    assert_eq!(
        meta.rejected(&deploy("kv", d, 1, 7)),
        "node 7 is not registered"
    );
    assert!(
        meta.rejected(&deploy("kv", d, 0, 1))
            .contains("size of 0 bytes")
    );
    assert_eq!(
        meta.rejected(&deploy("other", PluginDigest::of(b"kv"), 3, 1)),
        format!(
            "digest {} was recorded with 2 bytes, not 3",
            PluginDigest::of(b"kv")
        )
    );
    assert_eq!(
        meta.rejected(&MetaCommand::AddPluginHolder {
            digest: d,
            node: NodeId(1)
        }),
        format!("plugin {d} is not deployed")
    );
}

#[test]
fn resolving_plugin_specs() {
    let mut meta = Meta::new();
    meta.register(1);
    let none = meta.q_rejected(&MetaQuery::ResolvePlugin { spec: "kv".into() });
    assert_eq!(
        none,
        "no plugin named 'kv' is deployed; deployed plugins: none"
    );

    meta.deploy("kv", b"a");
    meta.deploy("kv", b"b");
    meta.deploy("kv", b"c");
    meta.deploy("counter", b"n");
    let resolve = |spec: &str| {
        meta.q(&MetaQuery::ResolvePlugin { spec: spec.into() })
            .into_plugin()
            .expect("plugin")
    };
    assert_eq!(resolve("kv").version, 3);
    assert_eq!(resolve("kv@2").digest, PluginDigest::of(b"b"));
    let by_digest = resolve(&PluginDigest::of(b"a").to_string());
    assert_eq!(by_digest.spec(), "kv@1");
    assert_eq!(resolve("counter").spec(), "counter@1");

    let err = |spec: &str| meta.q_rejected(&MetaQuery::ResolvePlugin { spec: spec.into() });
    assert_eq!(
        err("nope"),
        "no plugin named 'nope' is deployed; deployed plugins: counter (version 1), kv (versions 1 to 3)"
    );
    assert_eq!(err("kv@9"), "kv@9 is not deployed; kv has versions 1 to 3");
    assert_eq!(
        err("kv@x"),
        "plugin spec \"kv@x\" is not valid: the version after '@' must be a positive integer"
    );
    assert!(err("kv@0").contains("positive integer"));
    assert_eq!(
        err("sha256:zz"),
        "plugin spec \"sha256:zz\" is not valid: expected 64 hex characters after 'sha256:'"
    );
    let unknown = PluginDigest::of(b"zzz");
    assert_eq!(
        err(&unknown.to_string()),
        format!(
            "no plugin with digest {unknown} is deployed; deployed plugins: counter (version 1), kv (versions 1 to 3)"
        )
    );
    assert!(err("").contains("it is empty"));
    assert!(err("a b").contains("only ASCII letters"));
}
