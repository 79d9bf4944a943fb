//! Answering [`MetaQuery`]s: the node list, paged plugin and group listings (all
//! groups, or those with a replica on one node), one group, and resolving a plugin spec
//! (`name`, `name@version` or `sha256:<hex>`) — whose "no such plugin" errors list what
//! is deployed.

use super::keys;
use super::store::{all_nodes, get, get_referenced, group, joined, node, page_limit, scan};
use super::validate::plugin_name_problem;
use crate::ids::{GroupId, PluginDigest};
use crate::placement::meta_types::*;
use crate::raftstore::fsm::KvView;

pub(super) fn answer(kv: &KvView, query: MetaQuery) -> Result<MetaOutput, MetaError> {
    match query {
        MetaQuery::Nodes => Ok(MetaOutput::Nodes {
            nodes: all_nodes(kv)?,
        }),
        MetaQuery::Plugins { start_after, limit } => {
            let limit = page_limit(limit, PLUGINS_PAGE_DEFAULT, PLUGINS_PAGE_MAX);
            let start = match &start_after {
                Some(c) => keys::after(&keys::version(&c.name, c.version)),
                None => keys::PLUGIN.as_bytes().to_vec(),
            };
            let end = keys::prefix_end(keys::PLUGIN);
            let mut versions: Vec<(Vec<u8>, VersionRecord)> = scan(kv, &start, &end, limit + 1)?;
            let more = versions.len() > limit as usize;
            versions.truncate(limit as usize);
            let mut plugins = Vec::with_capacity(versions.len());
            for (_, v) in versions {
                let blob: BlobRecord = get_referenced(kv, &keys::blob(v.digest))?;
                plugins.push(joined(v, &blob));
            }
            let next = if more {
                plugins.last().map(|p| PluginCursor {
                    name: p.name.clone(),
                    version: p.version,
                })
            } else {
                None
            };
            Ok(MetaOutput::Plugins { plugins, next })
        }
        MetaQuery::ResolvePlugin { spec } => Ok(MetaOutput::Plugin {
            plugin: resolve(kv, &spec)?,
        }),
        MetaQuery::Groups { start_after, limit } => {
            let start = match start_after {
                Some(g) => keys::after(&keys::group(g)),
                None => keys::GROUP.as_bytes().to_vec(),
            };
            let limit = page_limit(limit, GROUPS_PAGE_DEFAULT, GROUPS_PAGE_MAX);
            let end = keys::prefix_end(keys::GROUP);
            let found: Vec<(Vec<u8>, GroupRecord)> = scan(kv, &start, &end, limit + 1)?;
            let groups = found.into_iter().map(|(_, g)| g).collect();
            Ok(groups_page(groups, limit))
        }
        MetaQuery::Group { group: id } => Ok(MetaOutput::Group {
            group: group(kv, id)?,
        }),
        MetaQuery::GroupsOnNode {
            node: id,
            start_after,
            limit,
        } => {
            node(kv, id)?;
            let prefix = keys::replicas_of(id);
            let start = match start_after {
                Some(g) => keys::after(&keys::replica(id, g)),
                None => prefix.as_bytes().to_vec(),
            };
            let limit = page_limit(limit, GROUPS_PAGE_DEFAULT, GROUPS_PAGE_MAX);
            let end = keys::prefix_end(&prefix);
            let found: Vec<(Vec<u8>, u64)> = scan(kv, &start, &end, limit + 1)?;
            let mut groups = Vec::with_capacity(found.len());
            for (key, _) in found {
                let text = String::from_utf8_lossy(&key).into_owned();
                let gid = text[prefix.len()..]
                    .parse::<u64>()
                    .map_err(|e| MetaError::Corrupt {
                        key: text.clone(),
                        problem: e.to_string(),
                    })?;
                groups.push(get_referenced(kv, &keys::group(GroupId(gid)))?);
            }
            Ok(groups_page(groups, limit))
        }
    }
}

/// A page of at most `limit` groups from `limit + 1` found.
fn groups_page(mut groups: Vec<GroupRecord>, limit: u32) -> MetaOutput {
    let more = groups.len() > limit as usize;
    groups.truncate(limit as usize);
    let next_start_after = if more {
        groups.last().map(|g| g.id)
    } else {
        None
    };
    MetaOutput::Groups {
        groups,
        next_start_after,
    }
}

fn resolve(kv: &KvView, spec: &str) -> Result<PluginRecord, MetaError> {
    let bad = |reason: &str| MetaError::BadSpec {
        spec: spec.into(),
        reason: reason.into(),
    };
    if let Some(hex) = spec.strip_prefix("sha256:") {
        let digest = PluginDigest::from_hex(hex)
            .ok_or_else(|| bad("expected 64 hex characters after 'sha256:'"))?;
        let Some(blob) = get::<BlobRecord>(kv, &keys::blob(digest))? else {
            return Err(MetaError::NoSuchPlugin {
                what: format!("no plugin with digest {digest} is deployed"),
                deployed: deployed_summary(kv)?,
            });
        };
        let version: VersionRecord =
            get_referenced(kv, &keys::version(&blob.first_name, blob.first_version))?;
        return Ok(joined(version, &blob));
    }
    let (name, version) = match spec.split_once('@') {
        Some((name, v)) => {
            let v = v
                .parse::<u32>()
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| bad("the version after '@' must be a positive integer"))?;
            (name, Some(v))
        }
        None => (spec, None),
    };
    if spec.is_empty() {
        return Err(bad(
            "it is empty; use 'name', 'name@version' or 'sha256:<hex>'",
        ));
    }
    if let Some(reason) = plugin_name_problem(name) {
        return Err(bad(&reason));
    }
    let Some(latest) = get::<u32>(kv, &keys::latest(name))? else {
        return Err(MetaError::NoSuchPlugin {
            what: format!("no plugin named '{name}' is deployed"),
            deployed: deployed_summary(kv)?,
        });
    };
    let version = version.unwrap_or(latest);
    if version > latest {
        return Err(MetaError::NoSuchVersion {
            name: name.into(),
            version,
            latest,
        });
    }
    let record: VersionRecord = get_referenced(kv, &keys::version(name, version))?;
    let blob: BlobRecord = get_referenced(kv, &keys::blob(record.digest))?;
    Ok(joined(record, &blob))
}

/// "counter (version 1), kv (versions 1 to 3)", or "none" — bounded.
fn deployed_summary(kv: &KvView) -> Result<String, MetaError> {
    let end = keys::prefix_end(keys::LATEST);
    let names: Vec<(Vec<u8>, u32)> = scan(kv, keys::LATEST.as_bytes(), &end, ERROR_NAMES_MAX + 1)?;
    if names.is_empty() {
        return Ok("none".into());
    }
    let mut parts: Vec<String> = names
        .iter()
        .take(ERROR_NAMES_MAX as usize)
        .map(|(k, latest)| {
            let name = String::from_utf8_lossy(&k[keys::LATEST.len()..]);
            if *latest == 1 {
                format!("{name} (version 1)")
            } else {
                format!("{name} (versions 1 to {latest})")
            }
        })
        .collect();
    if names.len() > ERROR_NAMES_MAX as usize {
        parts.push("...".into());
    }
    Ok(parts.join(", "))
}
