//! Compiles this crate's `.proto` files with protox (pure Rust; no system `protoc`).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The manifest dir at run time, not `env!` at compile time: a build script binary is
    // shared between checkouts of the same crate that share a target dir.
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files: &[&str] = &[
        "waku/message.proto",
        "waku/metadata.proto",
        "waku/peer_exchange.proto",
        "waku/store.proto",
    ];
    let paths: Vec<_> = files.iter().map(|f| root.join(f)).collect();
    for p in &paths {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    let fds = protox::compile(&paths, [&root])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
