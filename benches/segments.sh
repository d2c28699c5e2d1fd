#!/usr/bin/env bash
# TCP segments per upgrade through a tidegate build: one echo backend, the proxy (one worker),
# and `wsbench handshakes` (each upgrade a client connect, the upgrade, the close frames and the
# closes of both legs), counted system-wide by `nstat` (TcpOutSegs, TcpActiveOpens) around the
# run. On loopback every segment's send and receipt run in its sender's system call, so the
# proxy pays for each one it sends (benches/README.md, "Where an upgrade's CPU goes").
#
#   bash benches/segments.sh BIN [UPGRADES]     BIN: a tidegate binary; UPGRADES default 5000
#
# The count is of the whole machine: run it on a quiet one. Every process it starts is stopped by
# PID on exit; the load is bounded in count and time.
set -euo pipefail

if [[ $# -lt 1 || $1 == -h || $1 == --help ]]; then
  sed -n '2,11p' "$0"
  exit 2
fi
BIN=$1 UPGRADES=${2:-5000}
"$BIN" proxy --help >/dev/null 2>&1 || { echo "segments.sh: $BIN is not a runnable tidegate" >&2; exit 2; }
command -v nstat >/dev/null || { echo "segments.sh: nstat not installed (apt-get install iproute2)" >&2; exit 2; }
source "$(dirname "${BASH_SOURCE[0]}")/run.sh"
bench_setup segments
mapfile -t PORTS < <("$WSBENCH" free-ports --count 3)
RUST_LOG=warn start "$BIN" echo-backend --listen "127.0.0.1:${PORTS[0]}"
RUST_LOG=warn start "$BIN" proxy --listen "127.0.0.1:${PORTS[1]}" --admin-listen "127.0.0.1:${PORTS[2]}" \
  --backend "127.0.0.1:${PORTS[0]}" --max-connections-per-backend 5000
PROXY=$STARTED
up "${PORTS[1]}"
URL="ws://127.0.0.1:${PORTS[1]}/"

nstat -n >/dev/null
run=$("$WSBENCH" handshakes --url "$URL" --duration 30s --max "$UPGRADES" --concurrency 8 --pid "$PROXY")
counts=$(nstat TcpOutSegs TcpActiveOpens)
done=$(grep -o '"handshakes":[0-9]*' <<<"$run" | cut -d: -f2)
segs=$(awk '$1 == "TcpOutSegs" { print $2 }' <<<"$counts")
opens=$(awk '$1 == "TcpActiveOpens" { print $2 }' <<<"$counts")
echo "$run"
awk -v d="$done" -v s="$segs" -v o="$opens" 'BEGIN {
  printf "%d upgrades: %d TCP segments (%.2f per upgrade), %d active opens (%.2f per upgrade)\n",
    d, s, s / d, o, o / d }'
