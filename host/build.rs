//! Build script: compiles `proto/` (and `host/proto/etcd_kv.proto`, the etcd API subset
//! `flotilla bench --target etcd` speaks) with protox (a pure-Rust protobuf compiler, so no
//! system `protoc` is needed) and builds the example plugins in `plugins/` for
//! wasm32-unknown-unknown (see `build_plugins.rs`).

#[path = "build_plugins.rs"]
mod build_plugins;

fn main() {
    compile_protos();
    compile_etcd_proto();
    build_plugins::run();
}

fn compile_protos() {
    let files = [
        "../proto/flotilla/v1/client.proto",
        "../proto/flotilla/v1/admin.proto",
        "../proto/flotilla/v1/raft.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = match protox::compile(files, ["../proto"]) {
        Ok(d) => d,
        Err(e) => panic!("cannot compile the protobuf files in proto/: {e}"),
    };
    if let Err(e) = tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)
    {
        panic!("cannot generate Rust code from proto/: {e}");
    }
}

/// etcd's KV and Maintenance subset for `flotilla bench --target etcd` (client stubs; the
/// server stubs serve a fake etcd in the bench's unit tests).
fn compile_etcd_proto() {
    let file = "proto/etcd_kv.proto";
    println!("cargo:rerun-if-changed={file}");
    let descriptors = match protox::compile([file], ["proto"]) {
        Ok(d) => d,
        Err(e) => panic!("cannot compile {file}: {e}"),
    };
    if let Err(e) = tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)
    {
        panic!("cannot generate Rust code from {file}: {e}");
    }
}
