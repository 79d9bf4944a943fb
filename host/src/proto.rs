//! Code generated from `proto/` by the build script (prost messages, tonic stubs).

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("flotilla.v1");
}
