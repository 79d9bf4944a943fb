//! Reaching other nodes: the address book (node id → `host:port`, fed from the meta
//! group and the initial cluster) and a pool of lazily connected gRPC channels.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tonic::Status;
use tonic::transport::{Channel, Endpoint};

use crate::ids::NodeId;

/// Node addresses as this node knows them.
#[derive(Debug, Default)]
pub struct AddrBook {
    addrs: RwLock<HashMap<NodeId, String>>,
}

impl AddrBook {
    pub fn set(&self, node: NodeId, addr: String) {
        self.addrs.write().insert(node, addr);
    }

    pub fn get(&self, node: NodeId) -> Option<String> {
        self.addrs.read().get(&node).cloned()
    }

    pub fn all(&self) -> Vec<(NodeId, String)> {
        let mut v: Vec<_> = self
            .addrs
            .read()
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        v.sort();
        v
    }
}

impl crate::transport::AddressBook for AddrBook {
    fn address(&self, node: NodeId) -> Option<String> {
        self.get(node)
    }
}

/// One lazily connected channel per node (tonic channels multiplex and reconnect).
#[derive(Debug, Default)]
pub struct Channels {
    pool: Mutex<HashMap<(NodeId, String), Channel>>,
}

impl Channels {
    pub fn get(&self, node: NodeId, book: &AddrBook) -> Result<Channel, Status> {
        let addr = book.get(node).ok_or_else(|| {
            Status::unavailable(format!("the address of node {node} is not known here"))
        })?;
        let mut pool = self.pool.lock();
        if let Some(c) = pool.get(&(node, addr.clone())) {
            return Ok(c.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| Status::internal(format!("bad address {addr:?} of node {node}: {e}")))?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true);
        let channel = endpoint.connect_lazy();
        pool.insert((node, addr), channel.clone());
        Ok(channel)
    }
}
