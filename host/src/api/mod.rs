//! The gRPC services on the node's one port: [`client`] (Propose, Query, WatchLeaders,
//! and [`batch`], many of the first two on one stream),
//! [`admin`] (plugins and groups), [`cluster`] (membership, placement, node to node)
//! and the standard health service; [`route`] sends group requests to leaders,
//! [`ops`] composes cluster-wide operations, [`peers`] reaches other nodes, [`liveness`]
//! wakes hibernating followers of a node that stopped answering. [`status`] is the one place
//! where errors become `tonic::Status`; [`node`] holds what the services share.

pub mod admin;
pub mod batch;
pub mod client;
pub mod cluster;
pub mod liveness;
pub mod node;
pub mod ops;
pub mod peers;
pub mod route;
pub mod status;
pub mod wiring;

pub use node::Node;
