//! The data of normal raft entries: a leader-assigned timestamp and either a batch of
//! client commands, a plugin upgrade, a digest request or a new storage quota (prost
//! messages from `proto/flotilla/v1/raft.proto`).

use prost::Message as _;

use super::quota::Quota;
use crate::ids::PluginDigest;
use crate::proto::v1::{
    Command, CommandBatch, ComputeDigest, EntryPayload, SetQuota, UpgradePlugin, entry_payload,
};

/// A decoded entry payload.
#[derive(Debug, PartialEq, Eq)]
pub enum Payload {
    Commands {
        timestamp_ms: u64,
        commands: Vec<Command>,
    },
    Upgrade {
        timestamp_ms: u64,
        plugin: PluginDigest,
    },
    Digest {
        timestamp_ms: u64,
    },
    Quota {
        timestamp_ms: u64,
        quota: Quota,
    },
}

pub fn encode_commands(timestamp_ms: u64, commands: Vec<Command>) -> Vec<u8> {
    EntryPayload {
        timestamp_ms,
        kind: Some(entry_payload::Kind::Commands(CommandBatch { commands })),
    }
    .encode_to_vec()
}

pub fn encode_upgrade(timestamp_ms: u64, plugin: PluginDigest) -> Vec<u8> {
    EntryPayload {
        timestamp_ms,
        kind: Some(entry_payload::Kind::Upgrade(UpgradePlugin {
            digest: plugin.0.to_vec(),
        })),
    }
    .encode_to_vec()
}

pub fn encode_digest(timestamp_ms: u64) -> Vec<u8> {
    EntryPayload {
        timestamp_ms,
        kind: Some(entry_payload::Kind::Digest(ComputeDigest {})),
    }
    .encode_to_vec()
}

pub fn encode_quota(timestamp_ms: u64, quota: Quota) -> Vec<u8> {
    EntryPayload {
        timestamp_ms,
        kind: Some(entry_payload::Kind::Quota(SetQuota {
            keys_max: quota.keys_max,
            bytes_max: quota.bytes_max,
        })),
    }
    .encode_to_vec()
}

/// Decodes an entry's data. Entries are written only by leaders of this codebase, so a
/// failure means corruption or a version mismatch; the message says which part failed.
pub fn decode(data: &[u8]) -> Result<Payload, String> {
    let p = EntryPayload::decode(data).map_err(|e| format!("undecodable entry payload: {e}"))?;
    match p.kind {
        Some(entry_payload::Kind::Commands(b)) => Ok(Payload::Commands {
            timestamp_ms: p.timestamp_ms,
            commands: b.commands,
        }),
        Some(entry_payload::Kind::Upgrade(u)) => Ok(Payload::Upgrade {
            timestamp_ms: p.timestamp_ms,
            plugin: PluginDigest::from_slice(&u.digest)
                .ok_or_else(|| "upgrade entry with a malformed digest".to_string())?,
        }),
        Some(entry_payload::Kind::Digest(_)) => Ok(Payload::Digest {
            timestamp_ms: p.timestamp_ms,
        }),
        Some(entry_payload::Kind::Quota(q)) => Ok(Payload::Quota {
            timestamp_ms: p.timestamp_ms,
            quota: Quota {
                keys_max: q.keys_max,
                bytes_max: q.bytes_max,
            },
        }),
        None => Err("entry payload without a kind".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        let cmds = vec![Command {
            data: b"{}".to_vec(),
            request_id: "r1".into(),
        }];
        let bytes = encode_commands(5, cmds.clone());
        assert_eq!(
            decode(&bytes),
            Ok(Payload::Commands {
                timestamp_ms: 5,
                commands: cmds
            })
        );
        let d = PluginDigest::of(b"x");
        assert_eq!(
            decode(&encode_upgrade(6, d)),
            Ok(Payload::Upgrade {
                timestamp_ms: 6,
                plugin: d
            })
        );
        let q = Quota {
            keys_max: 3,
            bytes_max: 4,
        };
        assert_eq!(
            decode(&encode_quota(7, q)),
            Ok(Payload::Quota {
                timestamp_ms: 7,
                quota: q
            })
        );
        assert!(decode(b"\xff\xff\xff").is_err());
    }
}
