#!/usr/bin/env bash
# Runs tidegate's Kubernetes tests (proxy/tests/kube_api.rs, marked #[ignore]) against a real,
# throw-away kube-apiserver: builds it if needed (cached in ~/.cache after the first 3–8 min),
# starts etcd + kube-apiserver on 127.0.0.1, runs the tests one at a time, and stops both
# processes by PID whatever happens.
#
#   K8S_SCRIPTS   directory of build-kube-apiserver.sh / start-kube-apiserver.sh
#                 (default: ../shared/k8s beside the repository)
#   CARGO_TARGET_DIR, CARGO flags: as usual.  Extra arguments go to the test binary
#   (e.g. a test name filter).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
K8S_SCRIPTS=${K8S_SCRIPTS:-$ROOT/../shared/k8s}
[ -x "$K8S_SCRIPTS/start-kube-apiserver.sh" ] || {
  echo "k8s-tests.sh: no start-kube-apiserver.sh in $K8S_SCRIPTS (set K8S_SCRIPTS)" >&2; exit 1; }

KUBE_APISERVER=$("$K8S_SCRIPTS/build-kube-apiserver.sh" | tail -1)
export KUBE_APISERVER
STATE_DIR=$(mktemp -d "${TMPDIR:-/tmp}/tidegate-k8s.XXXXXX")
export STATE_DIR
cleanup() { [ -x "$STATE_DIR/stop.sh" ] && "$STATE_DIR/stop.sh" >&2; }
trap cleanup EXIT
KUBECONFIG_PATH=$("$K8S_SCRIPTS/start-kube-apiserver.sh" | tail -1)
export TIDEGATE_TEST_KUBECONFIG=$KUBECONFIG_PATH
echo "kube-apiserver up; kubeconfig $TIDEGATE_TEST_KUBECONFIG" >&2

cd "$ROOT"
export RUST_LOG=${RUST_LOG:-warn}   # the proxy logs at info by default: keep the test list readable
cargo test -p tidegate-proxy --test kube_api -- --ignored --test-threads 1 "$@"
