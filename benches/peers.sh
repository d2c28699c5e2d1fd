#!/usr/bin/env bash
# Side-by-side WebSocket reverse proxies on 127.0.0.1: tidegate, HAProxy and NGINX, each with one
# worker, least-connections over the same 3 echo backends with a per-backend cap, measured with
# `wsbench` (benches/src/bin/wsbench.rs). What each figure means: benches/README.md.
#
#   bash benches/peers.sh                      full run (3 interleaved repeats, ~10 min)
#   QUICK=1 bash benches/peers.sh              sanity run (1 repeat, small counts, ~2 min)
#   TLS=1 bash benches/peers.sh                the same proxies terminating TLS (wss://): idle
#                                              memory, handshakes with an ECDSA P-256 and an RSA
#                                              2048 certificate, 4 KiB echoes (~8 min; QUICK=1 too)
#
# Options (flags or environment):
#   --backend-cmd 'CMD {port}' | BACKEND_CMD   echo backend command; {port} is replaced
#                                              (default: tidegate echo-backend, else wsbench echo)
#   --no-tidegate-build | BUILD_TIDEGATE=0     use an existing tidegate binary, do not build it
#   TIDEGATE=path                              tidegate binary (default $CARGO_TARGET_DIR/release/tidegate)
#   REPEATS, STEPS, HOLD, HS_TIME, LAT_TIME, LAT_CONNS, TP_MESSAGES
#                                              scenario sizes (defaults below; LAT_CONNS is a
#                                              list, 100,5000)
#   WORKERS=2                                  worker threads of HAProxy (nbthread) and tidegate
#                                              (--threads); default 1. With more than 1, NGINX is
#                                              left out (its workers are processes, and one is
#                                              measured): run WORKERS=1 then WORKERS=2 for the
#                                              1 -> 2 workers rows
#   PRIORITY=-10                               renice the run (after the build) to shield it from
#                                              other work on the machine (needs root)
#
# Every process it starts is stopped by PID on exit. Every load is bounded in count and time.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export RUST_LOG=${RUST_LOG:-warn}   # tidegate and its echo backend: warnings only
QUICK=${QUICK:-0}
TLS=${TLS:-0}
WORKERS=${WORKERS:-1}
BUILD_TIDEGATE=${BUILD_TIDEGATE:-1}
BACKEND_CMD=${BACKEND_CMD:-}
while [[ $# -gt 0 ]]; do
  case $1 in
    --backend-cmd) BACKEND_CMD=$2; shift 2 ;;
    --no-tidegate-build) BUILD_TIDEGATE=0; shift ;;
    -h | --help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "peers.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
TIDEGATE=${TIDEGATE:-$TARGET_DIR/release/tidegate}
WSBENCH=$TARGET_DIR/release/wsbench

# Scenario sizes. The per-backend cap (CAP) x 3 backends stays above the largest idle step so the
# cap is configured on every proxy but never the thing measured.
if [[ $QUICK == 1 ]]; then
  : "${REPEATS:=1}" "${STEPS:=500,2000}" "${HOLD:=1s}" "${HS_TIME:=2s}" "${LAT_TIME:=3s}" "${TP_MESSAGES:=50000}"
  OUT_DIR=$ROOT/benches/results/tmp OUT_NAME=peers-quick
else
  : "${REPEATS:=3}" "${STEPS:=1000,5000,9900}" "${HOLD:=3s}" "${HS_TIME:=10s}" "${LAT_TIME:=10s}" "${TP_MESSAGES:=1000000}"
  OUT_DIR=$ROOT/benches/results OUT_NAME=peers
fi
[[ $TLS == 1 ]] && OUT_NAME=$OUT_NAME-tls
# Latency runs with each of LAT_CONNS connections (comma-separated), sharing LAT_RATE msg/s.
: "${LAT_CONNS:=100,5000}"
CAP=4000 HS_MAX=20000 LAT_RATE=2000 TP_CONNS=16 TP_SIZE=4096

ulimit -n 20000 || { echo "peers.sh: cannot set ulimit -n 20000 (hard limit $(ulimit -Hn))" >&2; exit 1; }

WORK=$(mktemp -d /tmp/tidegate-peers.XXXXXX)
PIDS=()
cleanup() {
  local status=$? pid f
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ $status != 0 ]]; then
    for f in "$WORK"/*.log; do
      [[ -s $f ]] && { echo "--- last lines of $f" >&2; tail -5 "$f" >&2; }
    done
    echo "peers.sh: failed (exit $status); configs and logs kept in $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

log() { printf '[peers %s] %s\n' "$(date +%T)" "$*" >&2; }

# start NAME CMD...: runs CMD in the background, logging to $WORK/NAME.log; sets STARTED.
start() {
  local name=$1; shift
  "$@" >"$WORK/$name.log" 2>&1 &
  STARTED=$!
  PIDS+=("$STARTED")
}

# stop PID: TERM, up to 5 s to exit, then KILL.
stop() {
  local pid=$1 i
  kill "$pid" 2>/dev/null || true
  for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  local kept=() p
  for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || kept+=("$p"); done
  PIDS=("${kept[@]}")
}

# wait_ws PORT NAME [SCHEME]: waits up to 15 s until one WebSocket round trip through PORT
# succeeds (SCHEME ws, the default, or wss).
wait_ws() {
  local port=$1 name=$2 scheme=${3:-ws} i
  for i in $(seq 150); do
    if "$WSBENCH" --ca "$WORK/certs/ca.pem" handshakes --url "$scheme://127.0.0.1:$port/" --duration 1s --concurrency 1 --max 1 \
      2>/dev/null | grep -q '"handshakes":1,'; then return 0; fi
    sleep 0.1
  done
  log "$name on port $port never accepted a WebSocket; its log:"; tail -20 "$WORK/$name.log" >&2
  exit 1
}

free_ports() { "$WSBENCH" free-ports --count "$1"; }

build() {
  log "building wsbench (release)"
  (cd "$ROOT" && cargo build --release -q -p tidegate-benches --bin wsbench)
  if [[ $BUILD_TIDEGATE == 1 ]]; then
    log "building tidegate (release)"
    # A failed build must not measure whatever binary an older build left behind.
    (cd "$ROOT" && cargo build --release -q -p tidegate-proxy) || {
      log "tidegate build failed: fix it, or measure an existing binary with --no-tidegate-build TIDEGATE=path"
      exit 1
    }
    if BUILT_FROM=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null); then
      git -C "$ROOT" diff --quiet HEAD -- . ':!benches/results' 2>/dev/null || BUILT_FROM="$BUILT_FROM+dirty"
    fi
  fi
  TIDEGATE_OK=0
  if [[ -x $TIDEGATE ]] && "$TIDEGATE" proxy --help >/dev/null 2>&1; then TIDEGATE_OK=1; fi
  if [[ $TIDEGATE_OK == 0 ]]; then
    log "SKIPPING tidegate: no runnable '$TIDEGATE proxy' (build it, or set TIDEGATE=path)"
  fi
}

install_peers() {
  if ! command -v haproxy >/dev/null || ! command -v nginx >/dev/null; then
    log "installing haproxy and nginx from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy nginx >/dev/null
  fi
}

start_backends() {
  if [[ -z $BACKEND_CMD ]]; then
    if [[ $TIDEGATE_OK == 1 ]] && "$TIDEGATE" echo-backend --help >/dev/null 2>&1; then
      BACKEND_CMD="$TIDEGATE echo-backend --listen 127.0.0.1:{port}"
    else
      BACKEND_CMD="$WSBENCH echo --listen 127.0.0.1:{port}"
    fi
  fi
  log "backends: $BACKEND_CMD"
  mapfile -t BACKENDS < <(free_ports 3)
  local i port
  for i in 0 1 2; do
    port=${BACKENDS[$i]}
    start "backend$i" bash -c "exec ${BACKEND_CMD//\{port\}/$port}"
    wait_ws "$port" "backend$i"
  done
}

# haproxy_conf PORT [KIND], shared with ab.sh.
source "$ROOT/benches/haproxy.sh"

# nginx_conf PORT [KIND]: with KIND (ecdsa, rsa), the server terminates TLS.
nginx_conf() {
  local port=$1 kind=${2:-} i listen tls=""
  listen="127.0.0.1:$port"
  if [[ -n $kind ]]; then
    listen="$listen ssl"
    tls="ssl_certificate $WORK/certs/$kind.crt; ssl_certificate_key $WORK/certs/$kind.key;"
  fi
  cat <<EOF
worker_processes 1;
worker_rlimit_nofile 20000;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log error;
# Above the fd limit on purpose: once free connections fall below worker_connections/16, nginx
# closes connections still waiting for their request (handshakes in flight) to reuse them
# ("worker_connections are not enough, reusing connections"). 9,900 tunnels use 19,800, so
# 20000 would reset handshakes near the top step; the fd limit (20000) is the real bound.
events { worker_connections 24000; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx-tmp;
    proxy_temp_path $WORK/nginx-tmp;
    fastcgi_temp_path $WORK/nginx-tmp;
    uwsgi_temp_path $WORK/nginx-tmp;
    scgi_temp_path $WORK/nginx-tmp;
    map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }
    upstream be {
        zone be 64k;
        least_conn;
EOF
  for i in 0 1 2; do echo "        server 127.0.0.1:${BACKENDS[$i]} max_conns=$CAP;"; done
  cat <<EOF
    }
    server {
        listen $listen;
        $tls
        location / {
            proxy_pass http://be;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection \$connection_upgrade;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
        }
    }
}
EOF
}

# tidegate_conf PORT ADMIN KIND: tidegate's config file for TLS with the KIND certificate.
tidegate_conf() {
  local i
  echo "listen: 127.0.0.1:$1"
  echo "admin_listen: 127.0.0.1:$2"
  echo "threads: $WORKERS"
  echo "max_connections_per_backend: $CAP"
  echo "backends:"
  echo "  static:"
  for i in 0 1 2; do echo "    - 127.0.0.1:${BACKENDS[$i]}"; done
  echo "tls: {cert_file: $WORK/certs/$3.crt, key_file: $WORK/certs/$3.key}"
}

# start_proxy NAME [KIND]: starts the proxy on free ports, terminating TLS with the KIND
# certificate if given; sets PROXY_PORT, PROXY_URL, PROXY_PID (what to stop) and MEASURE_PID
# (whose RSS and CPU are read: the NGINX worker, otherwise the proxy itself).
start_proxy() {
  local name=$1 kind=${2:-} scheme=ws args i port admin ports
  [[ -n $kind ]] && scheme=wss
  mapfile -t ports < <(free_ports 2)
  port=${ports[0]} admin=${ports[1]} PROXY_PORT=${ports[0]}
  case $name in
    haproxy)
      haproxy_conf "$port" "$kind" >"$WORK/haproxy.cfg"
      start haproxy haproxy -db -f "$WORK/haproxy.cfg"
      PROXY_PID=$STARTED MEASURE_PID=$STARTED ;;
    nginx)
      mkdir -p "$WORK/nginx-tmp"
      nginx_conf "$port" "$kind" >"$WORK/nginx.conf"
      start nginx nginx -p "$WORK" -e "$WORK/nginx-error.log" -c "$WORK/nginx.conf" -g 'daemon off;'
      PROXY_PID=$STARTED
      wait_ws "$port" nginx "$scheme"
      MEASURE_PID=$(pgrep -P "$PROXY_PID" | head -1) ;;
    tidegate)
      args=(proxy --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin")
      for i in 0 1 2; do args+=(--backend "127.0.0.1:${BACKENDS[$i]}"); done
      args+=(--max-connections-per-backend "$CAP")
      if "$TIDEGATE" proxy --help 2>&1 | grep -q -- '--threads'; then args+=(--threads "$WORKERS"); fi
      if [[ -n $kind ]]; then
        tidegate_conf "$port" "$admin" "$kind" >"$WORK/tidegate.yaml"
        args=(proxy --config "$WORK/tidegate.yaml")
      fi
      start tidegate "$TIDEGATE" "${args[@]}"
      PROXY_PID=$STARTED MEASURE_PID=$STARTED ;;
  esac
  wait_ws "$port" "$name" "$scheme"
  PROXY_URL="$scheme://127.0.0.1:$port/"
}

# record TARGET REPEAT [VARIANT]: wraps each JSON line of stdin as a record of the results file;
# VARIANT (e.g. the certificate's key type) tells apart runs of one scenario.
record() {
  local line variant=""
  [[ -n ${3:-} ]] && variant=",\"variant\":\"$3\""
  while IFS= read -r line; do
    printf '{"target":"%s","repeat":%d%s,"result":%s}\n' "$1" "$2" "$variant" "$line" | tee -a "$RESULTS" >&2
  done
}

# idle_run NAME REPEAT [KIND]: the idle steps, in a fresh proxy process of their own (over TLS
# with the KIND certificate if given).
idle_run() {
  local name=$1 rep=$2 kind=${3:-}
  start_proxy "$name" "$kind"
  log "$name #$rep: idle $STEPS (pid $MEASURE_PID) $kind"
  "$WSBENCH" --ca "$WORK/certs/ca.pem" idle --url "$PROXY_URL" --connections "$STEPS" \
    --pid "$MEASURE_PID" --hold "$HOLD" | record "$name" "$rep"
  stop "$PROXY_PID"
}

# tls_repeat REP: over TLS, per proxy: the idle steps (ECDSA certificate), then handshakes with
# each certificate kind in a fresh process, with 4 KiB echoes after the ECDSA handshakes.
tls_repeat() {
  local rep=$1 name kind
  local -a order
  mapfile -t order < <(proxies_for "$rep")
  for name in "${order[@]}"; do idle_run "$name" "$rep" ecdsa; done
  for kind in ecdsa rsa; do
    for name in "${order[@]}"; do
      start_proxy "$name" "$kind"
      log "$name #$rep: TLS handshakes ($kind)"
      "$WSBENCH" --ca "$WORK/certs/ca.pem" handshakes --url "$PROXY_URL" --duration "$HS_TIME" \
        --max "$HS_MAX" --pid "$MEASURE_PID" | record "$name" "$rep" "$kind"
      if [[ $kind == ecdsa ]]; then
        log "$name #$rep: throughput over TLS"
        "$WSBENCH" --ca "$WORK/certs/ca.pem" throughput --url "$PROXY_URL" \
          --connections "$TP_CONNS" --size "$TP_SIZE" --messages "$TP_MESSAGES" \
          --pid "$MEASURE_PID" | record "$name" "$rep"
      fi
      stop "$PROXY_PID"
    done
  done
}

# repeat REP: idle per proxy, then with every proxy running (fresh, idle while not measured) one
# scenario at a time across all of them, so each scenario's figures are taken close together.
repeat() {
  local rep=$1 name
  local -a order
  mapfile -t order < <(proxies_for "$rep")
  for name in "${order[@]}"; do idle_run "$name" "$rep"; done
  declare -A url pid measure
  for name in "${order[@]}"; do
    start_proxy "$name"
    url[$name]="ws://127.0.0.1:$PROXY_PORT/" pid[$name]=$PROXY_PID measure[$name]=$MEASURE_PID
  done
  for name in "${order[@]}"; do
    log "$name #$rep: handshakes"
    "$WSBENCH" handshakes --url "${url[$name]}" --duration "$HS_TIME" --max "$HS_MAX" \
      --pid "${measure[$name]}" | record "$name" "$rep"
  done
  log "direct #$rep: latency baseline"
  run_latency "ws://127.0.0.1:${BACKENDS[0]}/" | record direct "$rep"
  for name in "${order[@]}"; do
    log "$name #$rep: latency"
    run_latency "${url[$name]}" | record "$name" "$rep"
  done
  for name in "${order[@]}"; do
    log "$name #$rep: throughput"
    "$WSBENCH" throughput --url "${url[$name]}" --connections "$TP_CONNS" --size "$TP_SIZE" \
      --messages "$TP_MESSAGES" --pid "${measure[$name]}" | record "$name" "$rep"
  done
  for name in "${order[@]}"; do stop "${pid[$name]}"; done
}

# run_latency URL: one latency run per connection count of LAT_CONNS, a JSON line each.
run_latency() {
  local conns
  for conns in ${LAT_CONNS//,/ }; do
    "$WSBENCH" latency --url "$1" --connections "$conns" --rate "$LAT_RATE" --duration "$LAT_TIME"
  done
}

# Proxies in a rotated order each repeat, so none is always measured first or last.
proxies_for() {
  local rep=$1 list=(haproxy) i n
  [[ $WORKERS == 1 ]] && list+=(nginx)
  [[ $TIDEGATE_OK == 1 ]] && list+=(tidegate)
  n=${#list[@]}
  for i in $(seq 0 $((n - 1))); do echo "${list[$(((i + rep) % n))]}"; done
}

# tree_commit: ", built from commit C" (C+dirty with changes outside benches/results) when this
# run built the binary; read at the build, before the run writes its results.
BUILT_FROM=""
tree_commit() { [[ -n $BUILT_FROM ]] && echo ", built from commit $BUILT_FROM"; return 0; }

versions() {
  echo "- machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -r)"
  echo "- $(haproxy -v | head -1 | cut -d' ' -f1-3); nginx $(nginx -v 2>&1 | cut -d/ -f2)"
  if [[ $TIDEGATE_OK == 1 ]]; then
    echo "- tidegate: $("$TIDEGATE" --version 2>/dev/null || echo unknown)$(tree_commit)"
  else
    echo "- tidegate: pending: run after the proxy lands (no runnable binary at $TIDEGATE)"
  fi
  echo "- client: $("$WSBENCH" --version), $(rustc --version)"
  echo "- backends: \`${BACKEND_CMD//$ROOT\//}\`"
}

report() {
  local md=$OUT_DIR/$OUT_NAME.md
  {
    echo "# tidegate vs HAProxy vs NGINX: WebSocket proxy side by side$([[ $TLS == 1 ]] && echo ', terminating TLS')"
    echo
    echo "Generated by \`$([[ $QUICK == 1 ]] && echo 'QUICK=1 ')$([[ $TLS == 1 ]] && echo 'TLS=1 ')bash benches/peers.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC')."
    echo "Median of $REPEATS interleaved repeat(s); ×: ratio to HAProxy; ±: half the min–max range."
    echo "Raw records: \`${RESULTS#"$ROOT"/}\`. Load average at start: $LOAD_START; at end: $(cut -d' ' -f1-3 /proc/loadavg);" \
      "niceness $(ps -o ni= -p $$ | tr -d ' ')."
    echo
    versions
    if [[ $TLS == 1 ]]; then
      echo "- TLS: the proxies terminate wss:// with a test CA's certificate for 127.0.0.1 (ECDSA P-256," \
        "or RSA 2048 where a row says so); the client trusts the CA, offers ALPN http/1.1 and" \
        "never resumes a session (every handshake is a full one)"
    fi
    echo "- one worker each; least connections over 3 echo backends, cap $CAP per backend;" \
      "idle steps $STEPS (hold $HOLD); handshakes ${HS_TIME}/max $HS_MAX, 32 in flight;" \
      "latency with $LAT_CONNS conns at $LAT_RATE msg/s for $LAT_TIME, 32 B; throughput $TP_CONNS conns," \
      "$TP_MESSAGES x $TP_SIZE B, window 32"
    echo
    "$WSBENCH" table --input "$RESULTS"
  } >"$md"
  cat "$md"
  log "wrote ${md#"$ROOT"/}"
}

main() {
  LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
  install_peers
  build
  if [[ -n ${PRIORITY:-} ]]; then renice -n "$PRIORITY" -p $$ >/dev/null; fi
  mkdir -p "$OUT_DIR"
  RESULTS=$OUT_DIR/$OUT_NAME.jsonl
  : >"$RESULTS"
  "$WSBENCH" certs --out "$WORK/certs"
  start_backends
  local rep
  for rep in $(seq "$REPEATS"); do
    log "repeat $rep/$REPEATS"
    if [[ $TLS == 1 ]]; then tls_repeat "$rep"; else repeat "$rep"; fi
  done
  report
}

main
