#!/usr/bin/env bash
# Idle cost of one node in N conversations (default 10): starts the release binary on
# loopback, creates N conversations, lets it settle, then samples RSS and CPU time over
# a window (default 60 s) from /proc. Prints a markdown table row.
#   scripts/measure-idle.sh [N] [WINDOW_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10}; WINDOW=${2:-60}
BIN=${BIN:-target/x86_64-unknown-linux-gnu/release/demls-node}
[ -x "$BIN" ] || BIN=target/release/demls-node
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
DIR=$(mktemp -d); trap 'kill $PID 2>/dev/null || true; rm -rf "$DIR"' EXIT
API=127.0.0.1:18699
# Exported, so that the client commands find the node's API and its token as `run` does.
export DEMLS__STORAGE__DATA_DIR="$DIR/data" DEMLS__API__LISTEN=$API
DEMLS__WAKU__LISTEN=/ip4/127.0.0.1/tcp/18698 "$BIN" run > "$DIR/node.log" 2>&1 &
PID=$!
for _ in $(seq 1 50); do "$BIN" status >/dev/null 2>&1 && break; sleep 0.2; done
for i in $(seq 1 "$N"); do "$BIN" create "idle-$i" >/dev/null; done
sleep 5
ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
HZ=$(getconf CLK_TCK)
t0=$(ticks); sleep "$WINDOW"; t1=$(ticks)
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$PID/status")
hwm_kb=$(awk '/VmHWM/ {print $2}' "/proc/$PID/status")
threads=$(awk '/Threads/ {print $2}' "/proc/$PID/status")
cpu_ms=$(( (t1 - t0) * 1000 / HZ ))
awk -v n="$N" -v w="$WINDOW" -v rss="$rss_kb" -v hwm="$hwm_kb" -v th="$threads" -v cpu="$cpu_ms" \
  'BEGIN { printf "| %s | %s s | %.1f MiB | %.1f MiB | %s | %s ms (%.3f %% of one core) |\n", n, w, rss/1024, hwm/1024, th, cpu, cpu/(w*10) }'
