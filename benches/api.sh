#!/usr/bin/env bash
# API benchmark of `jitsi-scaler serve` on loopback (see docs/benchmarks.md, "API benchmark").
#
#   benches/api.sh            # wrk -t1 -c32 -d10s per case
#   DURATION=30s benches/api.sh
#   ONLY_ACKED=1 DURATION=3s benches/api.sh   # only the store.min_replicas_acked 0 / 1 rows
#
# Builds --release, starts a fake Jicofo (python3 http.server serving a static stats file) and
# three `serve` processes: ASAP auth with an empty ledger, auth.mode = "none", and ASAP auth
# with 10 000 seeded ledger entries. Measures GET /scaler/min (admin token), idle remove-me
# with and without token verification (answer `keep`: at the floor, the steady state of
# gateways asking every minute), GET /scaler/status with 10 000 entries, the resident memory
# of each `serve` under its load, and one policy tick (cargo bench --bench tick). Then the cost
# of durable answers: a Redis primary with one replica (redis-server, apt when missing) and two
# `serve` on it, store.min_replicas_acked 0 and 1, loaded side by side in one run with accepted
# remove-me requests (each a store write; with 1, also a WAIT for the replica).
# Only 127.0.0.1 is used. Installs wrk (apt) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
THREADS=1
CONNECTIONS=32
ENTRIES=10000

need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if ((${#need[@]})); then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

cargo build --release --locked --quiet
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/jitsi-scaler

work=$(mktemp -d)
pids=()
cleanup() {
  # Servers started in a command substitution are only known by their pid files.
  for f in "$work"/*.pid; do [ -f "$f" ] && pids+=("$(cat "$f")"); done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/asap.key" 2>/dev/null
openssl pkey -pubout -in "$work/asap.key" -out "$work/asap.pem"
ADMIN=$("$BIN" token --key "$work/asap.key" --sub scaler --ttl 30m)
# An instance token: a gateway naming itself by its address (auth.instance_binding = "address").
INSTANCE=$("$BIN" token --key "$work/asap.key" --sub gw-bench --ttl 30m)
# Distinct instance tokens, as real gateways send (a fresh token per request).
POOL=${POOL:-2000}
for i in $(seq "$POOL"); do
  "$BIN" token --key "$work/asap.key" --sub "gw-bench-$i" --ttl 30m
done >"$work/tokens"

# Fake Jicofo: two static stats files (total 10, 2 available; 10 000 with 2 available).
mkdir -p "$work/jicofo"
echo '{"sip_jibri_detector":{"count":10,"available":2},"jibri_detector":{"count":0,"available":0}}' >"$work/jicofo/small"
echo "{\"sip_jibri_detector\":{\"count\":$ENTRIES,\"available\":2}}" >"$work/jicofo/big"
JPORT=$(free_port)
python3 -m http.server --bind 127.0.0.1 "$JPORT" --directory "$work/jicofo" >/dev/null 2>&1 &
pids+=($!)

# start NAME AUTH_MODE STATS_FILE [ENTRIES]: starts serve, prints its port; pid in $work/NAME.pid
start() {
  local name=$1 mode=$2 stats=$3 entries=${4:-0} port
  port=$(free_port)
  mkdir -p "$work/$name/data"
  if [ "$entries" -gt 0 ]; then
    python3 benches/seed_state.py "$work/$name/data/state.json" "$entries"
  fi
  cat >"$work/$name/scaler.toml" <<TOML
listen = "127.0.0.1:$port"
data_dir = "$work/$name/data"
[policy]
tick = "15s"
[jicofo]
[[jicofo.shards]]
name = "bench"
url = "http://127.0.0.1:$JPORT/$stats"
[lifecycle.foreman]
nodes = ["http://127.0.0.1:9"]
user = "bench"
token = "bench"
[auth]
mode = "$mode"
public_key_file = "$work/asap.pem"
remove_rate_per_minute = 1000000000
remove_burst = 1000000000
${EXTRA:-}
TOML
  "$BIN" serve --config "$work/$name/scaler.toml" >/dev/null 2>"$work/$name/log" &
  echo $! >"$work/$name.pid"
  pids+=($!)
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break
    sleep 0.1
  done
  echo "$port"
}

mem() { # pid -> "VmRSS / VmHWM" in MB
  awk '/^VmRSS/ {r = $2} /^VmHWM/ {h = $2} END {printf "%.1f / %.1f", r / 1024, h / 1024}' "/proc/$1/status"
}

results=()
# run LABEL PID URL SCRIPT TOKEN [TOKENS_FILE]
run() {
  local label=$1 pid=$2 url=$3 script=$4 token=$5 tokens=${6:-} out rps p50 p99 codes
  out=$(TOKEN="$token" TOKENS="$tokens" wrk -t$THREADS -c$CONNECTIONS -d"$DURATION" --latency -s "benches/$script" "$url")
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  codes=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  results+=("$(printf '| %s | %s | %s | %s | %s | %s |' "$label" "$rps" "$p50" "$p99" "${codes:-0}" "$(mem "$pid")")")
}

# The store.min_replicas_acked rows: a Redis primary and its replica, two `serve` on them.
acked_rows() {
  local rp rr p0 p1
  rp=$(free_port); rr=$(free_port)
  mkdir -p "$work/redis-p" "$work/redis-r"
  redis-server --bind 127.0.0.1 --port "$rp" --save "" --appendonly yes --dir "$work/redis-p" >/dev/null 2>&1 &
  pids+=($!)
  redis-server --bind 127.0.0.1 --port "$rr" --save "" --appendonly yes --dir "$work/redis-r" \
    --replicaof 127.0.0.1 "$rp" >/dev/null 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    redis-cli -p "$rr" INFO replication 2>/dev/null | grep -q master_link_status:up && break
    sleep 0.1
  done
  for acked in 0 1; do
    EXTRA="[store]
backend = \"redis\"
redis_url = \"redis://127.0.0.1:$rp/0\"
key_prefix = \"bench-acked-$acked\"
min_replicas_acked = $acked" start "acked$acked" none small >"$work/acked$acked.port"
  done
  p0=$(cat "$work/acked0.port"); p1=$(cat "$work/acked1.port")
  test "$(curl -s -X POST -d '{"host":"gw-check","reason":"expired"}' "http://127.0.0.1:$p1/scaler/remove")" = accepted
  run "POST /scaler/remove expired (accepted: a store write), Redis + 1 replica, min_replicas_acked 0" \
    "$(cat "$work/acked0.pid")" "http://127.0.0.1:$p0/scaler/remove" accept.lua ""
  run "POST /scaler/remove expired (accepted: a store write), Redis + 1 replica, min_replicas_acked 1" \
    "$(cat "$work/acked1.pid")" "http://127.0.0.1:$p1/scaler/remove" accept.lua ""
}

print_results() {
  echo
  echo "## API benchmark results ($(date -u +%Y-%m-%d), $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo))"
  echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency; serve built --release"
  echo
  echo "| case | requests/s | p50 | p99 | non-2xx | VmRSS / VmHWM after (MB) |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${results[@]}"
}

if [ -n "${ONLY_ACKED:-}" ]; then
  acked_rows
  print_results
  exit 0
fi

PA=$(start asap asap small)
PN=$(start none none small)
PS=$(start status asap big "$ENTRIES")
A=$(cat "$work/asap.pid"); N=$(cat "$work/none.pid"); S=$(cat "$work/status.pid")

# Sanity: the answers the benchmark expects.
test "$(curl -s -H "Authorization: Bearer $ADMIN" "http://127.0.0.1:$PA/scaler/min")" = 2
test "$(curl -s -X POST -H "Authorization: Bearer $INSTANCE" -d '{"host":"127.0.0.1","reason":"idle"}' "http://127.0.0.1:$PA/scaler/remove")" = keep
test "$(curl -s -X POST -d '{"host":"127.0.0.1","reason":"idle"}' "http://127.0.0.1:$PN/scaler/remove")" = keep
idle_a=$(mem "$A")

run "GET /scaler/min, admin token" "$A" "http://127.0.0.1:$PA/scaler/min" get.lua "$ADMIN"
run "GET /scaler/min, auth.mode = none" "$N" "http://127.0.0.1:$PN/scaler/min" get.lua ""
run "POST /scaler/remove idle, one token, verified" "$A" "http://127.0.0.1:$PA/scaler/remove" post.lua "$INSTANCE"
run "POST /scaler/remove idle, $POOL distinct tokens, verified" "$A" "http://127.0.0.1:$PA/scaler/remove" post.lua "" "$work/tokens"
run "POST /scaler/remove idle, auth.mode = none" "$N" "http://127.0.0.1:$PN/scaler/remove" post.lua ""
idle_s=$(mem "$S")
run "GET /scaler/status, $ENTRIES entries" "$S" "http://127.0.0.1:$PS/scaler/status" get.lua "$ADMIN"
acked_rows

echo
echo "## API benchmark results ($(date -u +%Y-%m-%d), $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo))"
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION --latency; serve built --release; before the load, VmRSS / VmHWM: $idle_a MB (empty ledger), $idle_s MB ($ENTRIES entries)"
echo
echo "| case | requests/s | p50 | p99 | non-2xx | VmRSS / VmHWM after (MB) |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${results[@]}"
echo
echo "status body: $(curl -s -H "Authorization: Bearer $ADMIN" "http://127.0.0.1:$PS/scaler/status" | wc -c) bytes"
[ -n "${SKIP_TICK:-}" ] && exit 0
echo
echo "## Policy tick (cargo bench --bench tick)"
cargo bench --locked --quiet --bench tick 2>/dev/null | grep -v '^$'
