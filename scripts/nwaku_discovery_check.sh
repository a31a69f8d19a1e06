#!/usr/bin/env bash
# Discovery against a real nwaku (docs/WAKU.md, "Checked against a real nwaku"); not in CI.
# WAKUNODE2=path/to/wakunode2 (built with ../shared/nwaku/build.sh), B=path/to/demls-node.
# nwaku N runs discv5 + peer exchange; demls-nodes X and Y bootstrap from its ENR only.
# Expected: Y reaches 2 peers (N and X), and N lists X and Y with origin Discv5.
set -u
W=$(realpath "${WAKUNODE2:?set WAKUNODE2 to the wakunode2 binary}")
B=${B:-target/debug/demls-node}
D=$(mktemp -d); B=$(realpath "$B"); cd "$D"
$W --relay=true --cluster-id=15 --num-shards-in-network=8 \
  --listen-address=127.0.0.1 --tcp-port=60100 --nat=extip:127.0.0.1 \
  --nodekey=1111111111111111111111111111111111111111111111111111111111111112 \
  --rest=true --rest-address=127.0.0.1 --rest-port=8650 --rest-admin=true \
  --discv5-discovery=true --discv5-udp-port=9100 --peer-exchange=true --rendezvous=false \
  --log-level=DEBUG --log-format=TEXT > n.log 2>&1 &
NP=$!
for i in $(seq 1 60); do curl -sf http://127.0.0.1:8650/debug/v1/info > info.json && break; sleep 1; done
ENR=$(python3 -c 'import json;print(json.load(open("info.json"))["enrUri"])')
echo "nwaku ENR: $ENR"
start() { # name api tcp
  mkdir -p $1
  cat > $1/node.toml <<T
[storage]
data_dir = "$D/$1/data"
[api]
listen = "127.0.0.1:$2"
[waku]
listen = ["/ip4/127.0.0.1/tcp/$3"]
bootstrap = ["$ENR"]
relay_shards = [0, 1, 2, 3, 4, 5, 6, 7]
[log]
level = "info,demls_transport=debug"
T
  $B run --config $1/node.toml > $1.log 2>&1 &
}
start x 8661 60111; XP=$!
sleep 3
start y 8662 60112; YP=$!
for i in $(seq 1 60); do
  py=$($B status --config y/node.toml --json 2>/dev/null | python3 -c 'import json,sys;print(json.load(sys.stdin)["peers"])' 2>/dev/null)
  [ "${py:-0}" -ge 2 ] && break; sleep 1
done
echo "after ${i}s: Y peers=$py"
$B status --config x/node.toml
$B status --config y/node.toml
curl -s http://127.0.0.1:8650/admin/v1/peers | python3 -c 'import json,sys; d=json.load(sys.stdin); [print(p.get("multiaddr"), p.get("origin"), p.get("connected")) for p in d]'
grep -c "discovered a relay peer" x.log y.log
grep -i "peer exchange" x.log y.log | head -5
kill $XP $YP $NP
echo "logs in $D"
