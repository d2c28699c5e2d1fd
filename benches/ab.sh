#!/usr/bin/env bash
# Same-run A/B of two tidegate builds beside HAProxy: is a change worse than the tree before it?
# Three echo backends on 127.0.0.1, HAProxy and both tidegates running at once (one worker each
# unless WORKERS says otherwise), then ROUNDS rounds in a rotated order of upgrades (`wsbench
# handshakes`, CPU per 1,000 and upgrades/s) and 4 KiB echoes (`wsbench throughput`, CPU per
# million). Prints every run, then per target the median and min–max of each figure and its
# ratio to HAProxy's median, then the medians of the rounds' own ratios (new/old, old/HAProxy,
# new/HAProxy): CPU figures on this machine spread ±10–15 % from run to run (benches/README.md,
# "Same-run A/B"), so judge over 6 or more rounds, and by the paired ratios.
#
#   bash benches/ab.sh OLD NEW [ROUNDS]     OLD, NEW: tidegate binaries; ROUNDS default 8
#
# Options (environment): WORKERS (1), HS_MAX (10000 upgrades per run), TP_MESSAGES (100000),
# LAT_TIME (off; e.g. 10s: each round also sends 2,000 small messages a second over 100
# WebSockets through each target for that long, `wsbench latency`, and reports p99 and p99.9).
# An older build of the tree: `git worktree add /tmp/old REV`, then in it
# `cargo build --release -p tidegate-proxy --bin tidegate` with a target directory of its own.
# Every process it starts is stopped by PID on exit; every load is bounded in count and time.
set -euo pipefail

if [[ $# -lt 2 || $1 == -h || $1 == --help ]]; then
  sed -n '2,14p' "$0"
  exit 2
fi
OLD=$1 NEW=$2 ROUNDS=${3:-8}
WORKERS=${WORKERS:-1} HS_MAX=${HS_MAX:-10000} TP_MESSAGES=${TP_MESSAGES:-100000}
LAT_TIME=${LAT_TIME:-}
for bin in "$OLD" "$NEW"; do
  "$bin" proxy --help >/dev/null 2>&1 || { echo "ab.sh: $bin is not a runnable tidegate" >&2; exit 2; }
done
command -v haproxy >/dev/null || { echo "ab.sh: haproxy not installed (apt-get install haproxy)" >&2; exit 2; }
source "$(dirname "${BASH_SOURCE[0]}")/run.sh"
bench_setup ab

mapfile -t PORTS < <("$WSBENCH" free-ports --count 8)
BACKENDS=("${PORTS[@]:0:3}")
for port in "${BACKENDS[@]}"; do
  RUST_LOG=warn start "$NEW" echo-backend --listen "127.0.0.1:$port"
  up "$port"
done
# HAProxy configured as in peers.sh (benches/haproxy.sh).
CAP=4000
source "$ROOT/benches/haproxy.sh"
haproxy_conf "${PORTS[3]}" >"$WORK/haproxy.cfg"
start haproxy -db -f "$WORK/haproxy.cfg"
declare -A PORT PID
PORT[haproxy]=${PORTS[3]} PID[haproxy]=$STARTED
tidegate() { # NAME BINARY PORT ADMIN
  local args=(proxy --listen "127.0.0.1:$3" --admin-listen "127.0.0.1:$4" --threads "$WORKERS")
  local b
  for b in "${BACKENDS[@]}"; do args+=(--backend "127.0.0.1:$b"); done
  RUST_LOG=warn start "$2" "${args[@]}" --max-connections-per-backend "$CAP"
  PORT[$1]=$3 PID[$1]=$STARTED
}
tidegate old "$OLD" "${PORTS[4]}" "${PORTS[5]}"
tidegate new "$NEW" "${PORTS[6]}" "${PORTS[7]}"
for name in haproxy old new; do up "${PORT[$name]}"; done

field() { grep -o "\"$1\":[0-9.]*" | cut -d: -f2; }
ORDER=(haproxy old new)
echo "round target cpu_ms_per_1k_upgrades upgrades_per_s cpu_s_per_million_4KiB p99_us p999_us"
for round in $(seq "$ROUNDS"); do
  shift_by=$((round % 3))
  for name in "${ORDER[@]:$shift_by}" "${ORDER[@]:0:$shift_by}"; do
    hs=$("$WSBENCH" handshakes --url "ws://127.0.0.1:${PORT[$name]}/" --duration 10s --max "$HS_MAX" --pid "${PID[$name]}")
    tp=$("$WSBENCH" throughput --url "ws://127.0.0.1:${PORT[$name]}/" --connections 16 --size 4096 \
      --messages "$TP_MESSAGES" --pid "${PID[$name]}")
    p99=- p999=-
    if [[ -n $LAT_TIME ]]; then
      lat=$("$WSBENCH" latency --url "ws://127.0.0.1:${PORT[$name]}/" --connections 100 \
        --rate 2000 --duration "$LAT_TIME" | tail -1)
      p99=$(field p99_us <<<"$lat") p999=$(field p999_us <<<"$lat")
    fi
    printf '%s %s %s %s %s %s %s\n' "$round" "$name" "$(field cpu_ms_per_1k <<<"$hs")" \
      "$(field per_s <<<"$hs" | head -1)" "$(field cpu_s_per_million <<<"$tp")" "$p99" "$p999"
  done
done | tee "$WORK/runs.txt"

python3 - "$WORK/runs.txt" "$WORKERS" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l[0].isdigit()]
cols = [(2, "CPU per 1,000 upgrades (ms)"), (3, "upgrades/s"), (4, "CPU per million 4 KiB echoes (s)")]
if all(r[5] != "-" for r in rows):
    cols += [(5, "round trip p99, 100 connections (µs)"), (6, "round trip p99.9, 100 connections (µs)")]
med = {(t, c): statistics.median(float(r[c]) for r in rows if r[1] == t)
       for t in ("haproxy", "old", "new") for c, _ in cols}
print(f"\n{len(rows) // 3} rounds, {sys.argv[2]} worker(s): median (min–max), × HAProxy's median")
for c, label in cols:
    cells = []
    for t in ("haproxy", "old", "new"):
        v = [float(r[c]) for r in rows if r[1] == t]
        cells.append(f"{t} {med[(t, c)]:.2f} ({min(v):.2f}–{max(v):.2f}) {med[(t, c)] / med[('haproxy', c)]:.2f}×")
    print(f"{label}: " + "; ".join(cells))
# The machine drifts from round to round more than two builds differ; within a round the three
# run back to back, so a round's own ratios cancel the drift.
print("\nPer round, paired: median (min–max) of the round's ratio, and in how many rounds it is below 1")
for c, label in cols:
    by = {}
    for r in rows:
        by.setdefault(r[0], {})[r[1]] = float(r[c])
    cells = []
    for a, b in (("new", "old"), ("old", "haproxy"), ("new", "haproxy")):
        q = [v[a] / v[b] for v in by.values() if v.get(b)]
        cells.append(f"{a}/{b} {statistics.median(q):.3f} ({min(q):.2f}–{max(q):.2f}), "
                     f"{sum(x < 1 for x in q)} of {len(q)} below 1")
    print(f"{label}: " + "; ".join(cells))
EOF
