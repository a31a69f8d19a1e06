#!/usr/bin/env bash
# The project's test command (README "Run the tests"; .ci/run calls exactly this).
# 1. installs what the tests need (Python venv with py-libp2p for the Waku interop test),
# 2. runs every Rust test in the workspace,
# 3. runs the docker testnet scenarios (scripts/testnet.sh: compose v2 or v1, the checks in
#    tests/testnet/) when a Docker engine answers.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== installing test dependencies"
if [ -x scripts/setup-test-deps.sh ]; then
  scripts/setup-test-deps.sh
fi

echo "== cargo test (workspace)"
cargo test --workspace --lib --bins --tests --locked -- --test-threads=2

if [ -x scripts/testnet.sh ]; then
  if docker info >/dev/null 2>&1; then
    echo "== docker testnet scenarios"
    scripts/testnet.sh scenario all
  else
    echo "== docker testnet: SKIPPED (no Docker engine answers 'docker info')"
  fi
fi
