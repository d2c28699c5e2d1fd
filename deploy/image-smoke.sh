#!/usr/bin/env bash
# Container smoke test of tidegate's image (.ci/run runs it when podman can be installed).
#
#  1. `cargo xtask image` builds the image (or IMAGE=ref names one already in the store), and
#     `check-config` validates this test's config inside it;
#  2. one podman pod, its ports published on 127.0.0.1 only, holds an echo-backend container and
#     a proxy container from that same image, both as uid 65532 with a read-only root filesystem
#     (no tmpfs either), every capability dropped and no new privileges; the proxy runs the
#     image's default command with its config mounted from one read-only file;
#  3. from the host: the processes' uids (read in /proc), a write to the root filesystem is
#     refused, then image-smoke-client.py: /healthz, /readyz, /metrics, and a WebSocket from the
#     host through the proxy to the echo container and back, counted live and then released;
#  4. SIGTERM: the proxy must exit by itself, status 0, within shutdown_delay + grace_period +
#     shutdown_timeout (+ 2 s) — with nothing open, right after shutdown_delay — and the echo
#     backend within 2 s;
#  5. the image's size.
# Everything it creates is named tidegate-smoke-PID-… and removed on exit, whatever happens.
# Exit 0 only when every check passed.
#
#   IMAGE              an image already built (default: build it with `cargo xtask image`)
#   CARGO_TARGET_DIR   as for cargo; the podman configuration is in $CARGO_TARGET_DIR/podman
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
DELAY=1 GRACE=3 SHUTDOWN=2   # the proxy's shutdown_delay, grace_period, shutdown_timeout (s)
started=$(date +%s)

if [ -z "${IMAGE:-}" ]; then
  IMAGE=$(cd "$ROOT" && cargo xtask image | tail -1)
fi
export CONTAINERS_CONF=$TARGET/podman/containers.conf
export CONTAINERS_STORAGE_CONF=$TARGET/podman/storage.conf

name=tidegate-smoke-$$-$RANDOM
work=$(mktemp -d "${TMPDIR:-/tmp}/tidegate-smoke.XXXXXX")
cleanup() {
  podman pod rm --force --ignore --time 0 "$name" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
passed=0
ok() { passed=$((passed + 1)); echo "ok: $*"; }
fail() {
  echo "FAIL: $*"
  for c in proxy echo; do
    echo "--- podman logs $name-$c (last 20 lines)"
    podman logs --tail 20 "$name-$c" 2>&1 || true
  done
  echo "image smoke: $passed passed, 1 failed"
  exit 1
}

# Two free ports on 127.0.0.1 (held together while both are chosen).
read -r TRAFFIC ADMIN < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')

cat > "$work/config.yaml" <<EOF
listen: 0.0.0.0:8080
admin_listen: 0.0.0.0:9090
log_format: json
backends:
  static: [127.0.0.1:9000]
max_connections_per_backend: 10
eject_for: 1s
shutdown_delay: ${DELAY}s
grace_period: ${GRACE}s
shutdown_timeout: ${SHUTDOWN}s
EOF
chmod 0644 "$work/config.yaml"
mount=(--volume "$work/config.yaml:/etc/tidegate/config.yaml:ro")
locked=(--read-only --read-only-tmpfs=false --cap-drop all --security-opt no-new-privileges)

out=$(podman run --rm --network none "${locked[@]}" "${mount[@]}" "$IMAGE" \
  check-config /etc/tidegate/config.yaml 2>&1) || fail "check-config in the image: $out"
ok "check-config in the image accepts the mounted config"

podman pod create --name "$name" \
  --publish "127.0.0.1:$TRAFFIC:8080" --publish "127.0.0.1:$ADMIN:9090" >/dev/null
podman run --detach --pod "$name" --name "$name-echo" "${locked[@]}" "$IMAGE" \
  echo-backend --listen 127.0.0.1:9000 >/dev/null
podman run --detach --pod "$name" --name "$name-proxy" "${locked[@]}" "${mount[@]}" \
  "$IMAGE" >/dev/null

for c in proxy echo; do
  pid=$(podman inspect --format '{{.State.Pid}}' "$name-$c")
  uid=$(awk '/^Uid:/ {print $2 ":" $3 ":" $4 ":" $5}' "/proc/$pid/status")
  [ "$uid" = "65532:65532:65532:65532" ] || fail "$c runs as uid $uid, not 65532"
  ok "$c (host pid $pid) runs as uid 65532, not root"
done
# As uid 0 inside (who owns /usr/local/bin), so only a read-only mount can refuse it.
if out=$(podman exec --user 0 "$name-proxy" touch /usr/local/bin/probe 2>&1); then
  fail "the proxy container could write to its root filesystem"
fi
case $out in *"Read-only file system"*) ;; *) fail "write to / refused, but not as read-only: $out" ;; esac
ok "the root filesystem is read-only ($(echo "$out" | tail -1))"

python3 "$ROOT/deploy/image-smoke-client.py" --traffic "127.0.0.1:$TRAFFIC" \
  --admin "127.0.0.1:$ADMIN" --backend 127.0.0.1:9000 --timeout 30 | tee "$work/client.out" \
  || fail "the host-side client (above)"
passed=$((passed + $(grep -c '^ok:' "$work/client.out")))

# wait_exit CONTAINER SECONDS: polls until it has exited; prints the elapsed milliseconds.
wait_exit() {
  local t0 deadline status
  t0=$(date +%s%N)
  deadline=$((t0 + $2 * 1000000000))
  while status=$(podman inspect --format '{{.State.Status}}' "$1") && [ "$status" != exited ]; do
    [ "$(date +%s%N)" -lt "$deadline" ] || return 1
    sleep 0.1   # poll interval, bounded by the deadline
  done
  echo $((($(date +%s%N) - t0) / 1000000))
}
budget=$((DELAY + GRACE + SHUTDOWN + 2))
podman kill --signal TERM "$name-proxy" >/dev/null
ms=$(wait_exit "$name-proxy" "$budget") || fail "the proxy still runs ${budget}s after SIGTERM"
code=$(podman inspect --format '{{.State.ExitCode}}' "$name-proxy")
[ "$code" = 0 ] || fail "the proxy exited with status $code after SIGTERM"
[ "$ms" -lt $(((DELAY + GRACE) * 1000)) ] || fail "the proxy waited out the grace period with nothing open (${ms} ms)"
ok "SIGTERM: the proxy exited 0 after ${ms} ms (shutdown_delay ${DELAY}s; nothing was open)"
podman kill --signal TERM "$name-echo" >/dev/null
ms=$(wait_exit "$name-echo" 2) || fail "the echo backend still runs 2s after SIGTERM"
code=$(podman inspect --format '{{.State.ExitCode}}' "$name-echo")
[ "$code" = 0 ] || fail "the echo backend exited with status $code after SIGTERM"
ok "SIGTERM: the echo backend exited 0 after ${ms} ms"

size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
echo "image $IMAGE: $((size / 1000000)) MB ($size bytes); smoke test $(($(date +%s) - started)) s"
echo "image smoke: $passed passed, 0 failed"
