//! fjall, the node's only storage: one database per node with keyspaces for the raft
//! log, raft state, apply state, plugin KV data, plugin blobs and cluster metadata.
//!
//! Keys are big-endian so scans come back ordered (see [`keys`]). The raft room's
//! persistence traits (`LogStore`, `ApplyStore`, `KvReader`) are implemented here on
//! [`Store`]; metadata (plugins, groups) has its own typed API in [`meta`]. A failed
//! fsync poisons fjall and is reported as fatal; nothing here retries it. A journal
//! that lost synced rounds is refused on open ([`durable_mark`]).

pub mod apply;
pub mod durable_mark;
pub mod keys;
pub mod mem;
pub mod meta;
pub mod raft_log;
mod sealer;
pub mod snapfile;
mod snapshot;
mod store;

pub use store::Store;
