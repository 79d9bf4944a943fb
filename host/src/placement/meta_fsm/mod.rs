//! The meta group's state machine: the cluster's source of truth for nodes, deployed
//! plugins, groups and the placement of their replicas.
//!
//! It runs natively (see [`super::HostDispatch`]) in group 0 and keeps all of its state in
//! the group's [`KvView`], so snapshots and replication work as for any group. Commands
//! ([`MetaCommand`]) and queries ([`MetaQuery`]) are JSON objects tagged by `"op"`; every
//! answer is a JSON [`MetaOutput`] tagged by `"kind"`. Outcomes are deterministic: the only
//! time is the entry's leader-assigned timestamp, all iteration is over ordered keys, and
//! placement ties break by node id.
//!
//! # Key layout (UTF-8 keys, JSON values; ids zero-padded so scans are ordered)
//! - `node/{node:020}` → [`NodeRecord`] (with its replica and preferred-leader counts)
//! - `plugin/{name}/{version:010}` → one deployed version (name, digest, flags, time)
//! - `latest/{name}` → the latest version number of `name` (versions are `1..=latest`)
//! - `blob/{digest hex}` → [`BlobRecord`]: size, the nodes holding the bytes, first deploy
//! - `group/{group:020}` → [`GroupRecord`]
//! - `replica/{node:020}/{group:020}` → the peer id of `group`'s replica on `node` (index)
//! - `seq/group`, `seq/peer` → the next group id (from 1) and peer sequence (from 1; the
//!   meta group's own peers use sequence 0, i.e. peer id = node id)
//!
//! This file holds [`MetaFsm`], the entry and query points; the submodules hold the
//! rest: `keys` (the key layout above), `store` (reading and writing records and the
//! bookkeeping of a group change), `validate` (addresses and plugin names), `commands`
//! (applying each [`MetaCommand`]) and `queries` (answering each [`MetaQuery`]).

use crate::raftstore::fsm::{CommandOutcome, EntryContext, KvView, QueryContext};

mod commands;
mod keys;
mod queries;
mod store;
mod validate;

#[cfg(test)]
mod tests;

pub use super::meta_types::*;

/// The meta group's native state machine. Stateless: everything lives in the KV view.
#[derive(Clone, Copy, Debug, Default)]
pub struct MetaFsm;

impl MetaFsm {
    /// Applies the commands of one entry in order (see
    /// [`crate::raftstore::fsm::StateMachineHost::apply_entry`]).
    pub fn apply_entry(
        &self,
        ctx: EntryContext,
        commands: &[&[u8]],
        mut kv: KvView,
    ) -> (KvView, Vec<CommandOutcome>) {
        let mut outcomes = Vec::with_capacity(commands.len());
        for bytes in commands {
            let outcome = MetaCommand::decode(bytes)
                .and_then(|cmd| Ok(commands::apply(&ctx, &mut kv, cmd)?.encode()));
            outcomes.push(kv.settle(outcome));
        }
        (kv, outcomes)
    }

    /// Answers one query.
    pub fn query(&self, _ctx: QueryContext, request: &[u8], kv: &KvView) -> CommandOutcome {
        let query = MetaQuery::decode(request)?;
        Ok(queries::answer(kv, query)?.encode())
    }
}
