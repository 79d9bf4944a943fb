//! The etcd side of the bench against an in-process fake etcd (three "members" sharing
//! one map, member 2 leading): leader lookup, puts, linearizable reads, error counting.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tonic::{Request, Response, Status};

use super::etcd::{self, EtcdRoute, pb};
use super::{Workload, load, report};

#[derive(Clone, Default)]
struct Store {
    kv: Arc<Mutex<HashMap<Vec<u8>, Vec<u8>>>>,
    /// Requests served, per member id (index 0 unused).
    served: Arc<[AtomicU64; 4]>,
}

#[derive(Clone)]
struct Member {
    id: u64,
    store: Store,
}

impl Member {
    fn header(&self) -> Option<pb::ResponseHeader> {
        Some(pb::ResponseHeader {
            member_id: self.id,
            ..Default::default()
        })
    }
}

#[tonic::async_trait]
impl pb::kv_server::Kv for Member {
    async fn range(
        &self,
        r: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        self.store.served[self.id as usize].fetch_add(1, Ordering::Relaxed);
        let r = r.into_inner();
        if r.serializable {
            return Err(Status::invalid_argument("the bench must read linearizably"));
        }
        let kvs = self
            .store
            .kv
            .lock()
            .get(&r.key)
            .map(|v| pb::KeyValue {
                key: r.key.clone(),
                value: v.clone(),
                ..Default::default()
            })
            .into_iter()
            .collect::<Vec<_>>();
        Ok(Response::new(pb::RangeResponse {
            header: self.header(),
            count: kvs.len() as i64,
            kvs,
            more: false,
        }))
    }

    async fn put(&self, r: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        self.store.served[self.id as usize].fetch_add(1, Ordering::Relaxed);
        let r = r.into_inner();
        if r.key.starts_with(b"c3-") {
            return Err(Status::resource_exhausted("client 3 is refused"));
        }
        self.store.kv.lock().insert(r.key, r.value);
        Ok(Response::new(pb::PutResponse {
            header: self.header(),
            prev_kv: None,
        }))
    }
}

#[tonic::async_trait]
impl pb::maintenance_server::Maintenance for Member {
    async fn status(
        &self,
        _: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        Ok(Response::new(pb::StatusResponse {
            header: self.header(),
            leader: 2,
            ..Default::default()
        }))
    }
}

async fn start_members(store: &Store) -> Vec<String> {
    let mut endpoints = Vec::new();
    for id in 1..=3 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        endpoints.push(l.local_addr().expect("local addr").to_string());
        let m = Member {
            id,
            store: store.clone(),
        };
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(pb::kv_server::KvServer::new(m.clone()))
                .add_service(pb::maintenance_server::MaintenanceServer::new(m))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l)),
        );
    }
    endpoints
}

fn case(workload: &'static str) -> report::Case {
    report::Case {
        target: "etcd",
        workload,
        api: "unary",
        codec: "protobuf",
        clients: 4,
        groups: 1,
        value_size: 16,
        routing: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_writes_go_to_the_leader_and_errors_are_counted() {
    let store = Store::default();
    let endpoints = start_members(&store).await;
    let s = etcd::setup(&endpoints, 2, 4, EtcdRoute::Leader)
        .await
        .expect("setup");
    assert_eq!(s.leader.as_deref(), Some(endpoints[1].as_str()));
    let values = Arc::new(load::Values::new(16));
    let o = load::run(
        s.clients,
        Workload::Write,
        Duration::from_millis(300),
        &values,
        1,
        Some(Duration::from_millis(100)),
    )
    .await
    .expect("no error");
    // Every successful put is in exactly one slice of the timeline.
    let timeline = o.timeline.clone().expect("a timeline was asked for");
    assert_eq!(timeline.slices.len(), 3, "{timeline:?}");
    let in_slices: u64 = timeline.slices.iter().map(|s| s.ops).sum();
    assert_eq!(in_slices, o.latency_us.len());
    let sum = report::Summary::new(case("write"), o);
    assert!(sum.ops > 0);
    assert_eq!(
        sum.json()["timeline"]["slices"].as_array().map(Vec::len),
        Some(3)
    );
    // Client 3's puts are all refused: counted by code, not hidden.
    assert!(sum.errors > 0);
    assert_eq!(
        sum.errors_by_kind.keys().collect::<Vec<_>>(),
        vec!["ResourceExhausted"]
    );
    let j = sum.json();
    assert_eq!(j["errors"], sum.errors);
    assert!(j["ops_per_s"].as_f64().expect("ops_per_s is a number") > 0.0);
    assert!(store.kv.lock().get(b"c0-0".as_slice()) == Some(&values.get(0, 0).as_bytes().to_vec()));
    assert_eq!(store.served[1].load(Ordering::Relaxed), 0);
    assert_eq!(store.served[3].load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_reads_find_the_preloaded_keys() {
    let store = Store::default();
    let endpoints = start_members(&store).await;
    // Without a preload every read misses, and says so.
    let s = etcd::setup(&endpoints, 1, 3, EtcdRoute::Spread)
        .await
        .expect("no error");
    let o = load::run(
        s.clients,
        Workload::Read,
        Duration::from_millis(100),
        &no_values(),
        4,
        None,
    )
    .await
    .expect("no error");
    let sum = report::Summary::new(case("read"), o);
    assert_eq!(sum.ops, 0);
    assert!(sum.errors_by_kind["missing_key"] > 0);
    // Spread: every member served some.
    for id in 1..=3 {
        assert!(store.served[id].load(Ordering::Relaxed) > 0, "member {id}");
    }

    let s = etcd::setup(&endpoints, 1, 3, EtcdRoute::Spread)
        .await
        .expect("no error");
    let clients = load::preload(s.clients, 4, &Arc::new(load::Values::new(3)))
        .await
        .expect("preload");
    assert_eq!(store.kv.lock().len(), 12);
    let o = load::run(
        clients,
        Workload::Read,
        Duration::from_millis(200),
        &no_values(),
        4,
        None,
    )
    .await
    .expect("no error");
    let sum = report::Summary::new(case("read"), o);
    assert!(sum.ops > 0);
    assert_eq!(sum.errors, 0, "{:?}", sum.sample_error);
    assert!(sum.p50_ms > 0.0 && sum.p50_ms <= sum.p99_ms && sum.p99_ms <= sum.p999_ms);
}

/// Values for a read run, which writes none.
fn no_values() -> Arc<load::Values> {
    Arc::new(load::Values::new(0))
}

/// The bench's values have the asked size, need no escaping in JSON, are the same in
/// every run, differ from put to put, and do not compress together: in 64 puts of 1 KiB
/// side by side, as a table block holds them, few 8-byte sequences repeat (with one
/// value for every put, nearly all would).
#[test]
fn bench_values_are_sized_plain_repeatable_distinct_and_incompressible() {
    let values = load::Values::new(1024);
    let again = load::Values::new(1024);
    let mut all = Vec::new();
    for i in 0..4 {
        for n in 0..16 {
            let v = values.get(i, n);
            assert_eq!(v.len(), 1024);
            assert!(v.bytes().all(|b| b.is_ascii_alphanumeric()), "{v}");
            assert_eq!(v, again.get(i, n));
            all.extend_from_slice(v.as_bytes());
        }
    }
    assert_ne!(values.get(0, 0), values.get(0, 1));
    assert_ne!(values.get(0, 0), values.get(1, 0));
    let mut seen = std::collections::HashSet::new();
    let repeats = all.windows(8).filter(|w| !seen.insert(*w)).count();
    assert!(
        repeats < all.len() / 20,
        "{repeats} of {} 8-byte sequences repeat",
        all.len()
    );
    for size in [0, 1, 16] {
        assert_eq!(load::Values::new(size).get(3, 9).len(), size);
    }
}
