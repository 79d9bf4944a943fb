//! The gRPC services on the node's one port: [`client`] (Propose, Query), [`admin`]
//! (plugins and groups) and the standard health service. [`status`] is the one place
//! where errors become `tonic::Status`; [`node`] holds what the services share.

pub mod admin;
pub mod client;
pub mod node;
pub mod status;

pub use node::Node;
