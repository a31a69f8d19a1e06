#!/usr/bin/env bash
# Builds the statically linked release binary and the FROM-scratch image `demls-node:dev`.
# Flags measured in shared/BUILD-NOTES.md: crt-static gives a static-pie binary; the
# getrandom cfg makes it use the getrandom syscall (no /dev/urandom in an empty root).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=x86_64-unknown-linux-gnu
export RUSTFLAGS='-C target-feature=+crt-static --cfg getrandom_backend="linux_getrandom"'
echo "== building static release binary (first build takes ~8 min on 2 cores)"
cargo build --release --locked --target "$TARGET" --bin demls-node
BIN="target/$TARGET/release/demls-node"
if ldd "$BIN" 2>&1 | grep -q "=>"; then
  echo "error: $BIN is dynamically linked" >&2; exit 1
fi
CTX=target/docker-context
rm -rf "$CTX"; mkdir -p "$CTX/data"
cp "$BIN" "$CTX/demls-node"
cp config/testnet/node.toml "$CTX/testnet.toml"
echo "== docker build"
docker build -q -t demls-node:dev -f Dockerfile "$CTX"
echo "image demls-node:dev ready ($(du -h "$CTX/demls-node" | cut -f1) binary)"
