//! Compiles proto/joblet.proto with protox (pure Rust, no protoc binary) and generates the
//! tonic client and server code, plus the encoded descriptor set that the compatibility test
//! compares with joblet-sdk-python's.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/joblet.proto");
    let fds = protox::compile(["proto/joblet.proto"], ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("joblet_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
