//! Generates the gRPC door's types and service trait from `proto/coffer/v1`,
//! with the protoc that `protoc-bin-vendored` ships (nothing to install), and
//! the file descriptor set that server reflection serves.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    println!("cargo:rerun-if-changed=../proto/coffer/v1/coffer.proto");
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .codec_path("crate::grpc::codec::CofferCodec")
        // Responses encode their JSON data as a Struct without building one.
        .extern_path(".coffer.v1.Response", "crate::grpc::wire::Response")
        .file_descriptor_set_path(out.join("coffer_descriptor.bin"))
        .compile_with_config(config, &["../proto/coffer/v1/coffer.proto"], &["../proto"])?;
    Ok(())
}
