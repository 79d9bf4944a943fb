//! `--target etcd`: the etcd members from `--endpoints`, found leader, and one KV client
//! per benchmark client.

use std::time::Duration;

use anyhow::Context as _;
use tonic::transport::Channel;

use super::client::Client;
use crate::cli::connect::channel;

/// etcd's KV and Maintenance API, the subset in `host/proto/etcd_kv.proto`.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod pb {
    tonic::include_proto!("etcdserverpb");
}

/// Where the etcd clients send their requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EtcdRoute {
    /// Every request to the member that leads (found with Maintenance.Status), as a
    /// leader-aware client would; the same routing the Flotilla side gets.
    Leader,
    /// Client i to endpoint i mod N; followers forward writes and run ReadIndex.
    Spread,
}

/// `--endpoints`: a list of etcd client URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints(pub Vec<String>);

/// Parses `--endpoints` for clap.
pub fn parse_endpoints_arg(s: &str) -> Result<Endpoints, String> {
    parse_endpoints(s).map(Endpoints)
}

/// `HOST:PORT[,HOST:PORT...]`, each optionally with an `http://` scheme; no duplicates.
pub fn parse_endpoints(s: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for part in s.split(',') {
        let e = part.trim();
        if e.is_empty() {
            return Err(format!(
                "{s:?} has an empty endpoint (expected HOST:PORT,...)"
            ));
        }
        let hostport = e.strip_prefix("http://").unwrap_or(e);
        let Some((host, port)) = hostport.rsplit_once(':') else {
            return Err(format!("{e:?} is not HOST:PORT"));
        };
        if host.is_empty() || hostport.contains('/') {
            return Err(format!("{e:?} is not HOST:PORT"));
        }
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("{e:?} has no valid port"));
        }
        if out.iter().any(|o| o == e) {
            return Err(format!("{e:?} is listed twice"));
        }
        out.push(e.to_string());
    }
    Ok(out)
}

/// One member's view from Maintenance.Status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberView {
    pub member_id: u64,
    pub leader: u64,
}

/// The index of the endpoint that leads: the member whose id is the leader that the
/// members agree on (a majority of those that answered).
pub fn leader_index(views: &[Option<MemberView>]) -> Option<usize> {
    let answered: Vec<MemberView> = views.iter().flatten().copied().collect();
    let leader = answered
        .iter()
        .map(|v| v.leader)
        .filter(|&l| l != 0)
        .find(|&l| answered.iter().filter(|v| v.leader == l).count() * 2 > answered.len())?;
    views
        .iter()
        .position(|v| v.is_some_and(|v| v.member_id == leader))
}

async fn status(ch: Channel) -> Option<MemberView> {
    let mut m = pb::maintenance_client::MaintenanceClient::new(ch);
    let r = tokio::time::timeout(Duration::from_secs(2), m.status(pb::StatusRequest {}))
        .await
        .ok()?
        .ok()?
        .into_inner();
    Some(MemberView {
        member_id: r.header.map(|h| h.member_id).unwrap_or_default(),
        leader: r.leader,
    })
}

pub struct EtcdSetup {
    pub clients: Vec<Client>,
    /// The endpoint found leading (always looked up, also when not routing by it).
    pub leader: Option<String>,
}

/// Connects `connections` channels to each endpoint, finds the leader (waiting up to
/// 10 s for one) and makes `clients` KV clients routed by `route`.
pub async fn setup(
    endpoints: &[String],
    connections: usize,
    clients: usize,
    route: EtcdRoute,
) -> anyhow::Result<EtcdSetup> {
    anyhow::ensure!(
        !endpoints.is_empty(),
        "--target etcd needs --endpoints HOST:PORT,..."
    );
    let mut pools: Vec<Vec<Channel>> = Vec::new();
    for e in endpoints {
        let mut p = Vec::new();
        for _ in 0..connections.max(1) {
            p.push(
                channel(e)
                    .await
                    .with_context(|| format!("etcd endpoint {e} is not reachable"))?,
            );
        }
        pools.push(p);
    }
    let mut leader = None;
    for _ in 0..100 {
        let views = futures::future::join_all(pools.iter().map(|p| status(p[0].clone()))).await;
        leader = leader_index(&views);
        if leader.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if route == EtcdRoute::Leader && leader.is_none() {
        anyhow::bail!(
            "no etcd member among {} reports a leader that is one of them; use --etcd-route spread to skip the lookup",
            endpoints.join(",")
        );
    }
    let clients = (0..clients)
        .map(|i| {
            let (pool, conn) = match (route, leader) {
                (EtcdRoute::Leader, Some(l)) => (&pools[l], i),
                _ => (&pools[i % pools.len()], i / pools.len()),
            };
            Client::Etcd {
                c: pb::kv_client::KvClient::new(pool[conn % pool.len()].clone()),
            }
        })
        .collect();
    Ok(EtcdSetup {
        clients,
        leader: leader.map(|l| endpoints[l].clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            parse_endpoints("127.0.0.1:2379, 127.0.0.1:2380,http://localhost:1").expect("valid"),
            vec!["127.0.0.1:2379", "127.0.0.1:2380", "http://localhost:1"]
        );
        assert_eq!(
            parse_endpoints("[::1]:2379").expect("valid"),
            vec!["[::1]:2379"]
        );
        for bad in [
            "",
            "a:1,",
            "127.0.0.1",
            ":2379",
            "h:0",
            "h:99999",
            "h:x",
            "https://h:1",
            "h:1,h:1",
        ] {
            assert!(parse_endpoints(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn leader_is_the_member_a_majority_names() {
        let v = |member_id, leader| Some(MemberView { member_id, leader });
        assert_eq!(leader_index(&[v(7, 9), v(8, 9), v(9, 9)]), Some(2));
        // One member down: the two that answer still agree.
        assert_eq!(leader_index(&[None, v(8, 7), v(7, 7)]), Some(2));
        // No leader yet, or the named leader is not among the endpoints.
        assert_eq!(leader_index(&[v(7, 0), v(8, 0), v(9, 0)]), None);
        assert_eq!(leader_index(&[v(7, 5), v(8, 5)]), None);
        // Split views (an election in progress): no majority.
        assert_eq!(leader_index(&[v(7, 7), v(8, 8)]), None);
        assert_eq!(leader_index(&[None, None]), None);
    }
}
