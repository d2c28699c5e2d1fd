# Sourced by ab.sh, segments.sh and syscalls.sh: what each needs to run proxies beside each other.
#
# bench_setup NAME: sets ROOT (the repository) and WSBENCH (built in release), raises the
# descriptor limit, makes WORK (a temp dir) and an EXIT trap that stops every PID in PIDS and
# removes WORK. start CMD...: runs CMD in the background, its output in WORK, its PID appended
# to PIDS and kept in STARTED. up PORT: waits up to 15 s for one WebSocket upgrade through PORT,
# and exits the script if none answers.
bench_setup() {
  BENCH=$1
  ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  WSBENCH=${CARGO_TARGET_DIR:-$ROOT/target}/release/wsbench
  (cd "$ROOT" && cargo build --release -q -p tidegate-benches --bin wsbench)
  ulimit -n 20000
  WORK=$(mktemp -d "/tmp/tidegate-$BENCH.XXXXXX")
  PIDS=()
  trap bench_cleanup EXIT
}

bench_cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}

start() { "$@" >"$WORK/$(basename "$1").$RANDOM.log" 2>&1 & PIDS+=("$!"); STARTED=$!; }

up() {
  local i
  for i in $(seq 150); do
    "$WSBENCH" handshakes --url "ws://127.0.0.1:$1/" --duration 1s --max 1 --concurrency 1 2>/dev/null |
      grep -q '"handshakes":1,' && return 0
    sleep 0.1
  done
  echo "$BENCH.sh: nothing answers WebSockets on port $1" >&2
  exit 1
}
