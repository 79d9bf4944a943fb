//! Errors → `tonic::Status`, with codes a client can act on and messages a person can.
//!
//! | error                                   | code                 |
//! |-----------------------------------------|----------------------|
//! | unknown group or plugin                 | NOT_FOUND            |
//! | bad request, undecodable command, bad plugin bytes, a key or value over the host's limits | INVALID_ARGUMENT |
//! | plugin refused the command, trapped, ran out of fuel or memory, or its writes would pass the group's storage quota | FAILED_PRECONDITION |
//! | overloaded (mailbox, pending proposals, apply lag), or the command did not run because its entry's budget was spent | RESOURCE_EXHAUSTED (+ `retry-after-ms`) |
//! | host code panicked running the command (rejected on every replica; a bug) | INTERNAL |
//! | not the leader, shutting down, dropped proposal | UNAVAILABLE (+ `leader-peer-id`) |
//! | group exists                            | ALREADY_EXISTS       |
//! | storage failures                        | INTERNAL             |

use tonic::{Code, Status};

use crate::plugin::PluginError;
use crate::raftstore::RaftError;
use crate::raftstore::fsm::FsmError;
use crate::raftstore::traits::StoreError;

pub fn from_raft(e: RaftError) -> Status {
    let msg = e.to_string();
    match e {
        RaftError::GroupNotFound(_) => Status::not_found(msg),
        RaftError::NotLeader { leader, .. } => {
            let mut s = Status::unavailable(msg);
            s.metadata_mut().insert(
                super::route::NOT_LEADER,
                tonic::metadata::MetadataValue::from_static("1"),
            );
            if let Some(l) = leader
                && let Ok(v) = l.0.to_string().parse()
            {
                s.metadata_mut().insert("leader-peer-id", v);
            }
            s
        }
        RaftError::Busy { retry_after_ms, .. } => {
            let mut s = Status::resource_exhausted(msg);
            if let Ok(v) = retry_after_ms.to_string().parse() {
                s.metadata_mut().insert("retry-after-ms", v);
            }
            s
        }
        RaftError::Dropped(_) | RaftError::Stopped | RaftError::Unanswered => {
            Status::unavailable(msg)
        }
        RaftError::GroupExists(_) => Status::already_exists(msg),
        RaftError::Invalid(_) => Status::invalid_argument(msg),
        RaftError::Fsm(f) => from_fsm(f),
    }
}

pub fn from_fsm(e: FsmError) -> Status {
    let msg = e.to_string();
    let code = match e {
        FsmError::Invalid(_) | FsmError::KvLimit(_) => Code::InvalidArgument,
        FsmError::NotRun(_) => Code::ResourceExhausted,
        FsmError::Rejected(_)
        | FsmError::Panicked(_)
        | FsmError::Trapped(_)
        | FsmError::OutOfFuel { .. }
        | FsmError::MemoryLimit { .. }
        | FsmError::OutputTooLarge { .. }
        | FsmError::KvMisuse(_)
        | FsmError::QuotaExceeded(_) => Code::FailedPrecondition,
        FsmError::MissingPlugin(_)
        | FsmError::Storage(_)
        | FsmError::HostFault(_)
        | FsmError::HostPanic(_) => Code::Internal,
    };
    Status::new(code, msg)
}

pub fn from_plugin(e: PluginError) -> Status {
    let msg = e.to_string();
    if e.is_invalid_input() {
        Status::invalid_argument(msg)
    } else {
        Status::internal(msg)
    }
}

pub fn from_store(e: StoreError) -> Status {
    Status::internal(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{GroupId, PeerId};

    #[test]
    fn codes_follow_the_table() {
        assert_eq!(
            from_raft(RaftError::GroupNotFound(GroupId(1))).code(),
            Code::NotFound
        );
        let s = from_raft(RaftError::NotLeader {
            group: GroupId(1),
            leader: Some(PeerId(7)),
        });
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(
            s.metadata()
                .get("leader-peer-id")
                .and_then(|v| v.to_str().ok()),
            Some("7")
        );
        assert_eq!(
            from_fsm(FsmError::Invalid("expected value at line 1".into())).code(),
            Code::InvalidArgument
        );
        assert_eq!(
            from_fsm(FsmError::OutOfFuel { budget: 1 }).code(),
            Code::FailedPrecondition
        );
    }
}
