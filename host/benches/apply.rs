//! Per-entry apply cost of the Wasm `kv` plugin against the same logic written natively,
//! both driven through the same host path (`StateMachineHost::apply_entry` over a
//! `KvView`), so the difference is what the sandbox costs: a fresh instance per entry,
//! fuel metering, and copying across the component boundary.
//!
//! A third case, `wasm-binary`, sends the plugin the same puts in the SDK's binary codec
//! instead of JSON: the difference is what decoding JSON costs inside the sandbox.
//!
//! `cargo bench -p flotilla --bench apply`

use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use flotilla::ids::{GroupId, PluginDigest};
use flotilla::plugin::PluginRuntime;
use flotilla::raftstore::fsm::{
    CommandOutcome, EntryContext, FsmError, KvView, QueryContext, StateMachineHost,
};
use flotilla::raftstore::mem_kv::MemKv;

/// The kv plugin's `put`, written natively against the same KV view.
struct NativeKv;

/// The kv plugin's commands as far as the bench sends them: `Put` is also variant 0 of
/// the plugin's own enum, so the binary codec encodes it the same way.
#[derive(serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
enum Cmd {
    Put { key: String, value: String },
}

impl StateMachineHost for NativeKv {
    fn apply_entry(
        &self,
        _: PluginDigest,
        _: EntryContext,
        commands: &[&[u8]],
        mut kv: KvView,
    ) -> (KvView, Vec<CommandOutcome>) {
        let mut out = Vec::with_capacity(commands.len());
        for c in commands {
            let r = match serde_json::from_slice::<Cmd>(c) {
                Ok(Cmd::Put { key, value }) => kv.get(key.as_bytes()).and_then(|prev| {
                    kv.put(key.as_bytes(), value.as_bytes())?;
                    let prev = prev.map(|p| String::from_utf8_lossy(&p).into_owned());
                    serde_json::to_vec(&serde_json::json!({ "previous": prev }))
                        .map_err(|e| FsmError::Rejected(e.to_string()))
                }),
                Err(e) => Err(FsmError::Invalid(e.to_string())),
            };
            out.push(kv.settle(r));
        }
        (kv, out)
    }
    fn query(&self, _: PluginDigest, _: QueryContext, _: &[u8], _: KvView) -> CommandOutcome {
        Err(FsmError::Rejected("not benchmarked".into()))
    }
}

fn bench(c: &mut Criterion) {
    let cache = tempfile::tempdir().expect("tempdir");
    let runtime = PluginRuntime::new(cache.path().to_path_buf()).expect("runtime");
    let digest = PluginDigest::of(flotilla::examples::KV);
    runtime
        .load(digest, flotilla::examples::KV)
        .expect("load kv");
    let reader = Arc::new(MemKv::default());
    let json =
        |i: usize| format!(r#"{{"put":{{"key":"k{i}","value":"0123456789abcdef"}}}}"#).into_bytes();
    let binary = |i: usize| {
        let put = Cmd::Put {
            key: format!("k{i}"),
            value: "0123456789abcdef".into(),
        };
        flotilla_sdk::encode_binary(&put).expect("a put encodes")
    };
    type Encode<'a> = &'a dyn Fn(usize) -> Vec<u8>;
    let hosts: [(&str, &dyn StateMachineHost, Encode); 3] = [
        ("wasm", &runtime, &json),
        ("wasm-binary", &runtime, &binary),
        ("native", &NativeKv, &json),
    ];
    let mut group = c.benchmark_group("apply_entry");
    for commands_per_entry in [1usize, 64] {
        group.throughput(Throughput::Elements(commands_per_entry as u64));
        for (name, host, encode) in hosts {
            let cmds: Vec<Vec<u8>> = (0..commands_per_entry).map(encode).collect();
            let refs: Vec<&[u8]> = cmds.iter().map(Vec::as_slice).collect();
            group.bench_with_input(
                BenchmarkId::new(name, commands_per_entry),
                &refs,
                |b, refs| {
                    let mut index = 0;
                    b.iter(|| {
                        index += 1;
                        let ctx = EntryContext {
                            group: GroupId(1),
                            index,
                            term: 1,
                            timestamp_ms: 0,
                            random_seed: 7,
                        };
                        let view = KvView::for_apply(reader.clone(), GroupId(1));
                        let (view, outcomes) = host.apply_entry(digest, ctx, refs, view);
                        assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
                        view.into_writes()
                    });
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
