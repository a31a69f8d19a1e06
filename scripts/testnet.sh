#!/usr/bin/env bash
# docker-compose testnet: a bootstrap node and N members from the demls-node:dev image.
#
#   scripts/testnet.sh up [N]          build the image if needed, start bootstrap + N members (default 4)
#   scripts/testnet.sh down            stop and remove containers, network and volumes
#   scripts/testnet.sh status          a table per node: epoch, state, role, members, peers
#   scripts/testnet.sh logs [SERVICE]  follow logs
#   scripts/testnet.sh events NODE     live event stream of one node (e.g. member2)
#   scripts/testnet.sh scenario NAME   basic | kill-steward | partition | kill-bootstrap
#                                      | split-brain | all
#   scripts/testnet.sh compose [N]     print the compose file for N members
#   scripts/testnet.sh recreate NODE.. write the compose file again (BOOT_MODE) and recreate
#                                      NODEs from it, volumes kept (the runner's kill-bootstrap)
#   scripts/testnet.sh swarm COMMAND    the same testnet as a Docker Swarm stack (demls-swarm),
#                                      so that it can span hosts: up [N] | down | status | logs NODE
#                                      | events NODE | cli NODE ARGS.. | scenario basic|kill-steward|all
#                                      | compose [N] | init | leave   (docs/TESTNET.md)
#
# This script owns the containers: the compose file (or stack), up, down, logs, events.
# What a scenario does and checks is Rust, tests/testnet/ (ignored tests of the test
# target `testnet`, run here through cargo against each node's HTTP API); `status` is its
# table too. Compose is `docker compose` (v2) or `docker-compose` (v1), whichever is
# installed (v2 first), decided once below.
#
# Node APIs are published on host loopback only: bootstrap on 127.0.0.1:18645, member i
# on 127.0.0.1:$((18645 + i)); each node's API token is copied out of its data volume
# (`token NODE`), e.g. for curl: -H "Authorization: Bearer $(cat target/testnet/tokens/member1)".
# Every wait is bounded; scenarios clean up after themselves, and a failed one is not run
# again. Healing times (kill-bootstrap, split-brain) are appended to
# target/testnet/heal-times.tsv.
#
# BOOT_MODE (read when the compose file is generated) picks whom members dial at start:
#   relay (default)  the `bootstrap` relay node only
#   mesh             the relay and every other member (each half of a split stays connected
#                    among itself without relying on discovery)
#   star:NODE=ADDR   every member but NODE dials only ADDR (NODE's ENR or multiaddr); NODE
#                    dials nobody
set -euo pipefail
cd "$(dirname "$0")/.."

# `swarm ...`: the same commands against a Docker Swarm stack (see swarm_* below and
# docs/TESTNET.md). Its own stack name and directory, so that it never touches a compose
# testnet's containers, volumes or tokens.
MODE=compose
if [ "${1:-}" = swarm ]; then MODE=swarm; shift; fi
if [ "$MODE" = swarm ]; then
  PROJECT=demls-swarm
  DIR=target/testnet-swarm
  COMPOSE_FILE="$DIR/docker-stack.yml"
else
  PROJECT=demls-testnet
  DIR=target/testnet
  COMPOSE_FILE="$DIR/docker-compose.yml"
fi
# The image the stack runs: demls-node:dev (on every host of the swarm, docs/TESTNET.md), or
# SWARM_IMAGE, e.g. the same image pushed to a registry that every host can pull from.
IMAGE=demls-node:dev; [ "$MODE" = compose ] || IMAGE=${SWARM_IMAGE:-$IMAGE}
SWARM_NET="${PROJECT}_demls"
BIN=target/x86_64-unknown-linux-gnu/release/demls-node
CONV=testnet-chat
BASE_PORT=18645
N_FILE="$DIR/members"

# Fixed addresses, so that each node's ENR can advertise the address others reach it at
# (waku.ext_ip, nwaku's --nat=extip): bootstrap .10, member i .(10 + i).
SUBNET=172.31.250
ip_of() { if [ "$1" = bootstrap ]; then echo "$SUBNET.10"; else echo "$SUBNET.$((10 + ${1#member}))"; fi; }
HALF_B_NET="${PROJECT}_half_b"
SELF="$PWD/scripts/testnet.sh"

# UTC, as the runner's lines.
log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
die() { log "FAIL: $*"; exit 1; }

# The compose command, decided once, here: the v2 plugin (`docker compose`) when the docker
# CLI has it, else the v1 binary. Both read the same file; nothing else calls compose (the
# runner finds containers by their compose labels, which both versions set alike, where
# container names differ: project_service_1 in v1, project-service-1 in v2).
COMPOSE=()
if [ "$MODE" = compose ]; then
  if docker compose version >/dev/null 2>&1; then COMPOSE=(docker compose)
  elif command -v docker-compose >/dev/null 2>&1; then COMPOSE=(docker-compose)
  fi
fi
dc() {
  [ ${#COMPOSE[@]} -gt 0 ] || die "no docker compose: neither the plugin ('docker compose', v2) nor docker-compose (v1) is installed"
  "${COMPOSE[@]}" -p "$PROJECT" -f "$COMPOSE_FILE" "$@"
}
# The container of a compose service (running or not), by its labels.
service_container() {
  docker ps -aq --filter "label=com.docker.compose.project=$PROJECT" \
    --filter "label=com.docker.compose.service=$1" 2>/dev/null | head -n1
}
members() { cat "$N_FILE" 2>/dev/null || echo 4; }
port() { if [ "$1" = bootstrap ]; then echo "$BASE_PORT"; else echo $((BASE_PORT + ${1#member})); fi; }
# The API token of a node: the file api-token of its data volume (created at its first
# start), copied out with `docker cp` (the image has no shell) and kept under $DIR/tokens
# while the testnet's volumes live.
# In swarm mode the tokens are generated before the deploy (gen_tokens) and given to the
# nodes as secrets.
token() {
  local f="$DIR/tokens/$1" id
  if [ ! -s "$f" ]; then
    [ "$MODE" = compose ] || return 1
    id=$(service_container "$1") && [ -n "$id" ] || return 1
    mkdir -p "$DIR/tokens" && chmod 700 "$DIR/tokens"
    if docker cp "$id:/data/api-token" - 2>/dev/null | tar -xO >"$f.tmp" 2>/dev/null && [ -s "$f.tmp" ]; then
      mv "$f.tmp" "$f"
    else
      rm -f "$f.tmp"; return 1
    fi
  fi
  tr -d '[:space:]' <"$f"
}
# api_argv NODE: how to run the CLI against NODE's API: API_PRE=(the command before the
# CLI's arguments), API_POST=(after them). Compose: our binary against the published port.
# Swarm: `docker exec` of the binary in NODE's task container when that runs on this host
# (its API on the container's loopback), else a one-off container of the image on the
# attachable overlay network, which reaches NODE by name on any host of the swarm
# (SWARM_API=overlay always takes this way).
api_argv() {
  local node=$1 cid=""
  if [ "$MODE" = compose ]; then
    API_PRE=("$BIN"); API_POST=(--api "http://127.0.0.1:$(port "$node")")
    return
  fi
  [ "${SWARM_API:-auto}" = overlay ] || cid=$(task_container "$node")
  if [ -n "$cid" ]; then
    API_PRE=(docker exec -e DEMLS_API_TOKEN "$cid" /demls-node); API_POST=(--api http://127.0.0.1:8645)
  else
    API_PRE=(docker run --rm --network "$SWARM_NET" -e DEMLS_API_TOKEN "$IMAGE"); API_POST=(--api "http://$node:8645")
  fi
}
# The running task container of NODE's swarm service on this host (empty: none here).
task_container() {
  docker ps -q --filter "label=com.docker.swarm.service.name=${PROJECT}_$1" --filter status=running 2>/dev/null | head -n1
}
# cli NODE ARGS...: the CLI against NODE's API, with its token (in the environment, not
# on the command line).
cli() {
  local node=$1 t; shift
  t=$(token "$node") || { echo "error: no API token of $node yet (not started?)" >&2; return 1; }
  api_argv "$node"
  DEMLS_API_TOKEN="$t" "${API_PRE[@]}" "$@" "${API_POST[@]}"
}
# gen_compose N: the compose file for a bootstrap node and N members. In swarm mode the
# same file with what `docker stack deploy` needs instead of what it ignores:
# - no fixed addresses (swarm assigns task IPs on an overlay network): every node has a
#   stable DNS name on the overlay instead (endpoint_mode dnsrr: the name is the task's
#   own address), members dial the relay and each other by name (BOOT_MODE mesh by
#   default), and discv5 is off, as a node's ENR would advertise the address of its
#   default route, docker_gwbridge, which no other node can reach;
# - no published ports (swarm publishes on every interface, never on loopback only): a
#   node is reached from inside (docker exec), at its task's docker_gwbridge address (the
#   runner, for a task on this host) or from the attachable overlay;
# - API tokens generated here and given as swarm secrets (/data/api-token, mode 0400), so
#   that the driver knows them wherever the tasks run;
# - deploy: restart_policy none (compose's restart: "no"); no depends_on (members redial
#   the relay until it is up).
gen_compose() {
  local n=$1 swarm=""
  [ "$MODE" = swarm ] && swarm=1
  mkdir -p "$DIR"
  echo "$n" > "$N_FILE"
  {
    if [ -n "$swarm" ]; then
      echo "# Generated by scripts/testnet.sh swarm for $n members: docker stack deploy -c THIS $PROJECT (docs/TESTNET.md)."
      cat <<YAML
x-node: &node
  image: $IMAGE
  networks: [demls]
  healthcheck:
    test: ["CMD", "/demls-node", "status", "--config", "/etc/demls/node.toml"]
    interval: 2s
    timeout: 3s
    retries: 60
  deploy:
    endpoint_mode: dnsrr
    restart_policy: {condition: none}
services:
  bootstrap:
    <<: *node
    hostname: bootstrap
    environment:
      DEMLS__WAKU__RELAY_SHARDS: "0,1,2,3,4,5,6,7"
      DEMLS__WAKU__BOOTSTRAP: ""
      DEMLS__WAKU__DISCV5_DISCOVERY: "false"
      DEMLS__API__ALLOWED_HOSTS: "bootstrap"
    volumes: ["bootstrap-data:/data"]
    secrets: [{source: bootstrap-token, target: /data/api-token, uid: "10001", gid: "10001", mode: 0400}]
YAML
    else
      echo "# Generated by scripts/testnet.sh for $n members; see docker-compose.yml for the default (4)."
      cat <<YAML
x-node: &node
  image: demls-node:dev
  restart: "no"
  networks: [demls]
  healthcheck:
    test: ["CMD", "/demls-node", "status", "--config", "/etc/demls/node.toml"]
    interval: 2s
    timeout: 3s
    retries: 60
services:
  bootstrap:
    <<: *node
    hostname: bootstrap
    networks:
      demls:
        ipv4_address: $(ip_of bootstrap)
    environment:
      DEMLS__WAKU__RELAY_SHARDS: "0,1,2,3,4,5,6,7"
      DEMLS__WAKU__BOOTSTRAP: ""
      DEMLS__WAKU__EXT_IP: "$(ip_of bootstrap)"
    volumes: ["bootstrap-data:/data"]
    ports: ["127.0.0.1:${BASE_PORT}:8645"]
YAML
    fi
    local mode=${BOOT_MODE:-relay}
    [ -z "$swarm" ] || mode=${BOOT_MODE:-mesh}
    for i in $(seq 1 "$n"); do
      local boot=""
      case "$mode" in
        relay) ;;
        mesh)
          boot="/dns4/bootstrap/tcp/60000"
          for j in $(seq 1 "$n"); do [ "$j" = "$i" ] || boot="$boot,/dns4/member$j/tcp/60000"; done ;;
        star:*)
          local hub=${mode#star:}; hub=${hub%%=*}
          if [ "$hub" = "member$i" ]; then boot="none"; else boot=${mode#star:*=}; fi ;;
        *) echo "unknown BOOT_MODE $mode" >&2; return 1 ;;
      esac
      if [ -n "$swarm" ]; then
        cat <<YAML
  member$i:
    <<: *node
    hostname: member$i
    environment:
      DEMLS__WAKU__DISCV5_DISCOVERY: "false"
      DEMLS__API__ALLOWED_HOSTS: "member$i"
YAML
      else
        cat <<YAML
  member$i:
    <<: *node
    hostname: member$i
    networks:
      demls:
        ipv4_address: $(ip_of "member$i")
    environment:
      DEMLS__WAKU__EXT_IP: "$(ip_of "member$i")"
YAML
      fi
      if [ "$boot" = none ]; then
        printf '      DEMLS__WAKU__BOOTSTRAP: ""\n'
      elif [ -n "$boot" ]; then
        printf '      DEMLS__WAKU__BOOTSTRAP: "%s"\n' "$boot"
      fi
      if [ -n "$swarm" ]; then
        cat <<YAML
    volumes: ["member$i-data:/data"]
    secrets: [{source: member$i-token, target: /data/api-token, uid: "10001", gid: "10001", mode: 0400}]
YAML
      else
        cat <<YAML
    volumes: ["member$i-data:/data"]
    ports: ["127.0.0.1:$((BASE_PORT + i)):8645"]
    depends_on:
      bootstrap:
        condition: service_healthy
YAML
      fi
    done
    echo "volumes:"
    echo "  bootstrap-data: {}"
    for i in $(seq 1 "$n"); do echo "  member$i-data: {}"; done
    echo "networks:"
    echo "  demls:"
    if [ -n "$swarm" ]; then
      echo "    driver: overlay"
      echo "    attachable: true"
      echo "secrets:"
      # Absolute paths: docker stack deploy reads them wherever it is run from.
      for node in bootstrap $(seq 1 "$n" | sed 's/^/member/'); do
        echo "  $node-token: {file: \"$PWD/$DIR/tokens/$node\"}"
      done
    else
      echo "    ipam:"
      echo "      config: [{subnet: \"$SUBNET.0/24\"}]"
    fi
  } > "$COMPOSE_FILE"
}

ensure_image() {
  if [ ! -x "$BIN" ] || ! docker image inspect demls-node:dev >/dev/null 2>&1 || [ -n "${REBUILD:-}" ]; then
    scripts/build-image.sh
  fi
}

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2; shift 2
  local start=$SECONDS
  until "$@" >/dev/null 2>&1; do
    if (( SECONDS - start > limit )); then log "timed out after ${limit}s waiting for: $what"; return 1; fi
    sleep 2
  done
  log "ok: $what ($((SECONDS - start))s)"
}

cmd_up() {
  local n=${1:-4}
  [ "$MODE" = compose ] || { swarm_up "$n"; return; }
  ensure_image
  gen_compose "$n"
  log "starting bootstrap + $n members"
  rm -rf "$DIR/tokens"
  dc up -d
  for i in $(seq 1 "$n"); do
    wait_for 120 "member$i API answers" cli "member$i" status || return 1
  done
}

cmd_down() {
  [ "$MODE" = compose ] || { swarm_down; return; }
  if [ -f "$COMPOSE_FILE" ]; then dc down -v --remove-orphans >/dev/null 2>&1 || true; fi
  rm -rf "$DIR/tokens"
  docker network rm "$HALF_B_NET" >/dev/null 2>&1 || true
}

# --- swarm mode ---------------------------------------------------------------------------
swarm_state() { docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null || echo "no docker engine"; }
need_manager() {
  [ "$(docker info --format '{{.Swarm.ControlAvailable}}' 2>/dev/null)" = true ] && return 0
  die "this Docker engine is not a swarm manager (swarm: $(swarm_state)). One host: scripts/testnet.sh swarm init (undo: swarm leave); several hosts: docs/TESTNET.md"
}
# gen_tokens N: a fresh API token per node (64 hex digits, as a node makes its own), given
# to the nodes as swarm secrets.
gen_tokens() {
  rm -rf "$DIR/tokens"; mkdir -p "$DIR/tokens"; chmod 700 "$DIR/tokens"
  local node
  for node in bootstrap $(seq 1 "$1" | sed 's/^/member/'); do
    (umask 077; printf '%s\n' "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')" >"$DIR/tokens/$node")
  done
}
stack_deployed() { docker stack ls --format '{{.Name}}' 2>/dev/null | grep -qx "$PROJECT"; }
stack_gone() {
  [ -z "$(docker ps -aq --filter "label=com.docker.stack.namespace=$PROJECT")" ] \
    && ! docker network inspect "$SWARM_NET" >/dev/null 2>&1
}
swarm_up() {
  local n=$1
  need_manager
  ! stack_deployed || die "stack $PROJECT is deployed already: scripts/testnet.sh swarm down first"
  ensure_image
  gen_tokens "$n"
  gen_compose "$n"
  log "deploying stack $PROJECT: bootstrap + $n members ($COMPOSE_FILE)"
  docker stack deploy --detach=true --resolve-image never -c "$COMPOSE_FILE" "$PROJECT"
  local node
  for node in bootstrap $(seq 1 "$n" | sed 's/^/member/'); do
    wait_for 120 "$node API answers" cli "$node" status || return 1
  done
}
# Removes the stack, then (once its containers are gone: `docker stack rm` returns before)
# its volumes on this host. Volumes on other hosts of the swarm stay: docs/TESTNET.md.
swarm_down() {
  if stack_deployed; then docker stack rm "$PROJECT" >/dev/null; fi
  local start=$SECONDS
  until stack_gone || (( SECONDS - start > 60 )); do sleep 2; done
  stack_gone || log "stack $PROJECT: containers or network still there after 60s"
  local vols; vols=$(docker volume ls -q --filter "label=com.docker.stack.namespace=$PROJECT")
  if [ -n "$vols" ]; then
    # shellcheck disable=SC2086 # one volume name a word
    docker volume rm $vols >/dev/null || log "could not remove volumes: $vols"
  fi
  rm -rf "$DIR/tokens"
}
swarm_logs() { # swarm_logs NODE [docker service logs options]
  local node=${1:?"usage: $0 swarm logs NODE (bootstrap, member1, ...)"}; shift
  docker service logs "$@" "${PROJECT}_$node"
}
dump_logs() { # the last lines of every node's log, for a failed scenario
  if [ "$MODE" = compose ]; then dc logs --tail 60; return; fi
  local node
  for node in bootstrap $(seq 1 "$(members)" | sed 's/^/member/'); do
    echo "=== $node"; swarm_logs "$node" --tail 60 --timestamps 2>&1 || true
  done
}
swarm_init() {
  if [ "$(swarm_state)" = active ]; then log "this engine is in a swarm already"; docker node ls; return 0; fi
  local addr=${SWARM_ADDR:-127.0.0.1}
  docker swarm init --advertise-addr "$addr"
  log "swarm initialised on $addr (SWARM_ADDR); undo: scripts/testnet.sh swarm leave"
}
swarm_leave() {
  swarm_down
  if [ "$(swarm_state)" != inactive ]; then docker swarm leave --force; fi
  # The bridge that `swarm init` made for the tasks' outside traffic; unused once out of
  # the swarm (kept if anything still uses it).
  docker network rm docker_gwbridge >/dev/null 2>&1 || true
  log "swarm: $(swarm_state)"
}

# --- the scenario runner ------------------------------------------------------------------
# tests/testnet/: ignored tests, one per scenario, that act on the testnet and check it
# through each node's API. They run in the debug test profile, which `cargo test
# --workspace` builds anyway (CI builds it just before the testnet), so a scenario adds no
# build there; cargo only checks that it is fresh.
RUNNER=(cargo test --quiet --workspace --locked --test testnet)
runner_build() {
  log "building the scenario runner (tests/testnet/)"
  "${RUNNER[@]}" --no-run
}
# runner TEST: one test of tests/testnet/main.rs against this testnet, which it learns of
# from these variables (tests/testnet/net.rs).
runner() {
  DEMLS_TESTNET_MODE=$MODE DEMLS_TESTNET_PROJECT=$PROJECT DEMLS_TESTNET_DIR="$PWD/$DIR" \
  DEMLS_TESTNET_MEMBERS="$(members)" DEMLS_TESTNET_CONV=$CONV DEMLS_TESTNET_BASE_PORT=$BASE_PORT \
  DEMLS_TESTNET_IMAGE=$IMAGE DEMLS_TESTNET_SCRIPT="$SELF" \
    "${RUNNER[@]}" -- --ignored --exact --nocapture --test-threads=1 "$1"
}

cmd_status() { runner status_table; }

# recreate NODES...: the compose file written again (with $BOOT_MODE) and NODES recreated
# from it, volumes kept. The runner's kill-bootstrap restarts members with another
# bootstrap this way, so that compose stays in this script.
cmd_recreate() {
  [ "$MODE" = compose ] || die "recreate is for compose mode"
  gen_compose "$(members)"
  dc up -d --no-deps "$@"
}

# run_scenario NAME: a fresh testnet of the size NAME needs, the runner's test for NAME,
# the logs kept on failure, the testnet down. Sets took[NAME] (seconds).
run_scenario() {
  local name=$1 n=${base:-$(members)} start=$SECONDS rc=0
  case "$name" in
    kill-bootstrap) (( n >= 5 )) || n=5 ;;
    split-brain) n=6; export BOOT_MODE=mesh ;;
  esac
  log "=== scenario $name"
  rm -f "$DIR/$name.log"
  cmd_down
  if ! cmd_up "$n"; then
    log "the testnet did not come up"; rc=1
  elif ! runner "${name//-/_}"; then
    rc=1
  fi
  unset BOOT_MODE
  took[$name]=$((SECONDS - start))
  if [ "$rc" = 0 ]; then
    log "=== $name: PASS (${took[$name]}s)"
  else
    log "=== $name: FAIL (${took[$name]}s)"; dump_logs >"$DIR/$name.log" 2>&1 || true
    log "last logs in $DIR/$name.log"
  fi
  cmd_down
  # Scenarios that need more members leave the default count as it was.
  [ -z "${base:-}" ] || echo "$base" >"$N_FILE"
  return $rc
}

if [ "$MODE" = swarm ]; then
  case "${1:-}" in
    init) swarm_init; exit ;;
    leave) swarm_leave; exit ;;
    up|status|events|cli) need_manager ;;
    logs) need_manager; swarm_logs "${2:-}" -f; exit ;;
    scenario)
      case "${2:-}" in
        all|basic|kill-steward) need_manager ;;
        partition|kill-bootstrap|split-brain)
          die "scenario $2 runs in compose mode only: it moves containers between networks at fixed addresses or restarts them with another bootstrap, which the swarm stack has no way to do (docs/TESTNET.md)" ;;
        *) echo "usage: $0 swarm scenario basic|kill-steward|all" >&2; exit 2 ;;
      esac ;;
  esac
fi
case "${1:-}" in
  up) cmd_up "${2:-4}" ;;
  compose) gen_compose "${2:-4}"; cat "$COMPOSE_FILE" ;;
  down) cmd_down ;;
  status) cmd_status ;;
  logs) dc logs -f ${2:-} ;;
  events) cli "${2:?node}" events ;;
  recreate) shift; cmd_recreate "$@" ;;
  cli) [ "$MODE" = swarm ] || { echo "usage: $0 swarm cli NODE ARGS... (compose: $BIN --api http://127.0.0.1:PORT)" >&2; exit 2; }
       node=${2:?node}; shift 2; cli "$node" "$@" ;;
  scenario)
    case "${2:-}" in
      all) if [ "$MODE" = swarm ]; then list=(basic kill-steward)
           else list=(basic kill-steward partition kill-bootstrap split-brain); fi ;;
      basic|kill-steward|partition|kill-bootstrap|split-brain) list=("$2") ;;
      *) echo "usage: $0 scenario basic|kill-steward|partition|kill-bootstrap|split-brain|all" >&2; exit 2 ;;
    esac
    ensure_image
    unset REBUILD
    # Built once here, so that no scenario's time includes a build.
    runner_build
    [ -f "$N_FILE" ] || gen_compose 4
    base=$(members)
    declare -A result took
    fails=0
    for s in "${list[@]}"; do
      if run_scenario "$s"; then result[$s]=PASS; else result[$s]=FAIL; fails=$((fails + 1)); fi
    done
    echo; echo "testnet summary:"
    for s in "${list[@]}"; do printf '  %-14s %s (%ss)\n' "$s" "${result[$s]}" "${took[$s]}"; done
    passed=$(( ${#list[@]} - fails ))
    echo "$passed passed, $fails failed"
    [ "$fails" = 0 ]
    ;;
  *) sed -n '2,17p' "$0"; exit 2 ;;
esac
