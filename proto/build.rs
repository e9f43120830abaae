//! Generates the `flashgate.v1` messages and services, plus the descriptor set served by gRPC
//! reflection.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let protos = [
        "proto/flashgate/v1/types.proto",
        "proto/flashgate/v1/operator.proto",
        "proto/flashgate/v1/station.proto",
        "proto/flashgate/v1/update.proto",
        "proto/flashgate/v1/data.proto",
        "proto/flashgate/v1/access.proto",
    ];
    for proto in &protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    tonic_build::configure()
        .file_descriptor_set_path(out_dir.join("flashgate_v1_descriptor.bin"))
        .compile_protos(&protos, &["proto"])?;
    Ok(())
}
