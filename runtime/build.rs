//! Generates the gRPC service (`proto/grpc_predict_v2.proto`) for `server/grpc/`.
//!
//! protox parses the `.proto` in Rust, so a build needs no system `protoc` (not in the build
//! image, not on developers' machines); tonic-prost-build writes the messages and the service
//! into OUT_DIR, where the code cannot drift from the `.proto` and the 500-line rule of our own
//! files does not apply to generated code.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/grpc_predict_v2.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        // The tests' client; without `connect`, which needs tonic's transport feature (the tests
        // build their channel themselves).
        .build_client(true)
        .build_transport(false)
        .compile_fds(fds)?;
    Ok(())
}
