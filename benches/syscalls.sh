#!/usr/bin/env bash
# System calls per upgrade of a proxy: one echo backend, the proxy (one worker), and `wsbench
# handshakes` (each upgrade a client connect, the upgrade, the close frames and the closes of
# both legs, 8 in flight), with `strace -c -f` attached to the proxy for UPGRADES upgrades after
# a 2 s warm-up. Prints strace's table and each call's count per upgrade. strace slows the proxy
# several times over, so its times say little; the counts do not depend on the load.
#
#   bash benches/syscalls.sh BIN|haproxy [UPGRADES]     BIN: a tidegate binary; UPGRADES 4000
#
# HAProxy runs with benches/haproxy.sh's config (one thread). Every process it starts is
# stopped by PID on exit; the load is bounded in count and time.
set -euo pipefail

if [[ $# -lt 1 || $1 == -h || $1 == --help ]]; then
  sed -n '2,11p' "$0"
  exit 2
fi
TARGET=$1 UPGRADES=${2:-4000}
if [[ $TARGET == haproxy ]]; then
  command -v haproxy >/dev/null || { echo "syscalls.sh: haproxy not installed (apt-get install haproxy)" >&2; exit 2; }
else
  "$TARGET" proxy --help >/dev/null 2>&1 || { echo "syscalls.sh: $TARGET is not a runnable tidegate" >&2; exit 2; }
fi
command -v strace >/dev/null || { echo "syscalls.sh: strace not installed (apt-get install strace)" >&2; exit 2; }
source "$(dirname "${BASH_SOURCE[0]}")/run.sh"
bench_setup syscalls
mapfile -t PORTS < <("$WSBENCH" free-ports --count 3)
ECHO=$TARGET
[[ $TARGET == haproxy ]] && ECHO=${CARGO_TARGET_DIR:-$ROOT/target}/release/tidegate
[[ -x $ECHO ]] || (cd "$ROOT" && cargo build --release -q -p tidegate-proxy --bin tidegate)
RUST_LOG=warn start "$ECHO" echo-backend --listen "127.0.0.1:${PORTS[0]}"
if [[ $TARGET == haproxy ]]; then
  # haproxy_conf reads these.
  BACKENDS=("${PORTS[0]}" "${PORTS[0]}" "${PORTS[0]}") CAP=5000 WORKERS=1
  source "$ROOT/benches/haproxy.sh"
  haproxy_conf "${PORTS[1]}" >"$WORK/haproxy.cfg"
  start haproxy -db -f "$WORK/haproxy.cfg"
else
  RUST_LOG=warn start "$TARGET" proxy --listen "127.0.0.1:${PORTS[1]}" --admin-listen "127.0.0.1:${PORTS[2]}" \
    --backend "127.0.0.1:${PORTS[0]}" --max-connections-per-backend 5000
fi
PROXY=$STARTED
up "${PORTS[1]}"
URL="ws://127.0.0.1:${PORTS[1]}/"

"$WSBENCH" handshakes --url "$URL" --duration 2s --concurrency 8 >/dev/null
strace -c -f -p "$PROXY" -o "$WORK/strace.txt" 2>/dev/null &
STRACE=$!
PIDS+=("$STRACE")
# strace reports each thread it attaches to in /proc/PID/status as TracerPid.
for _ in $(seq 100); do
  grep -q "^TracerPid:[[:space:]]*$STRACE" "/proc/$PROXY/status" && break
  sleep 0.05
done
run=$("$WSBENCH" handshakes --url "$URL" --duration 60s --max "$UPGRADES" --concurrency 8)
kill -INT "$STRACE"
wait "$STRACE" 2>/dev/null || true
done=$(grep -o '"handshakes":[0-9]*' <<<"$run" | cut -d: -f2)
echo "$run"
cat "$WORK/strace.txt"
awk -v d="$done" '
  # strace -c rows: % time, seconds, usecs/call, calls, [errors,] syscall.
  NF >= 5 && $1 ~ /^[0-9.]+$/ && $NF != "total" {
    printf "%-14s %8.2f per upgrade\n", $NF, $4 / d; sum += $4 }
  END { printf "%-14s %8.2f per upgrade (%d upgrades)\n", "all", sum / d, d }' "$WORK/strace.txt"
