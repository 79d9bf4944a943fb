//! Node liveness for hibernating groups. A hibernating follower does not tick, so it
//! would never notice that its leader died; this task probes every other node's
//! health service a few times a second, and when one has not answered for an election
//! timeout it wakes the local replicas whose leader lives there (they then elect a new
//! leader as usual). The timing rules are [`Silence`]'s, shared with the simulation.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use super::Node;
use crate::ids::NodeId;
use crate::raftstore::hibernate::Silence;

/// How often every other node is probed.
const PROBE_INTERVAL: Duration = Duration::from_millis(250);
/// How long a probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

async fn answers(node: &Node, id: NodeId) -> bool {
    let Ok(channel) = node.channels.get(id, &node.book) else {
        return false;
    };
    let mut client = HealthClient::new(channel);
    let check = client.check(HealthCheckRequest {
        service: String::new(),
    });
    matches!(tokio::time::timeout(PROBE_TIMEOUT, check).await, Ok(Ok(_)))
}

/// Probes the other nodes until the task is aborted.
pub async fn watch(node: Arc<Node>) {
    let start = Instant::now();
    let mut silences: HashMap<NodeId, Silence> = HashMap::new();
    loop {
        let others: Vec<NodeId> = node
            .book
            .all()
            .into_iter()
            .map(|(id, _)| id)
            .filter(|id| *id != node.id)
            .collect();
        let probes = others.iter().map(|id| answers(&node, *id));
        let results = futures::future::join_all(probes).await;
        let now_ms = start.elapsed().as_millis() as u64;
        for (id, answered) in others.into_iter().zip(results) {
            if silences.entry(id).or_default().probe(answered, now_ms) {
                tracing::info!(
                    node = id.0,
                    "node not answering; waking the replicas it leads"
                );
                node.raft.wake_led_by(id);
            }
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}
