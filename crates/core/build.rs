//! Compiles this crate's `.proto` files with protox (pure Rust; no system `protoc`).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files: &[&str] = &["consensus/v1/consensus.proto", "demls/v1/application.proto"];
    let paths: Vec<_> = files.iter().map(|f| root.join(f)).collect();
    for p in &paths {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    let fds = protox::compile(&paths, [&root])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
