#!/usr/bin/env bash
# CI check of the kustomize base: it renders, and every object in it passes schema validation.
#
#  1. `kubectl kustomize deploy/` renders (kubectl from Debian `kubernetes-client` if missing).
#  2. `kubernetes-validate --strict` (PyPI; installed into a venv under ~/.cache) validates every
#     built-in kind against the Kubernetes 1.33 OpenAPI schemas, rejecting unknown fields.
#  3. kubernetes-validate has no schema for CRDs: it only warns on them, and would do the same
#     for a misspelt kind. So any warning fails this check, except for kinds listed in CRD_KINDS,
#     which are checked here against a small schema of the fields we use (ServiceMonitor:
#     monitoring.coreos.com/v1 — selector and endpoints[].port/path/interval, no others).
#
#   VENV                 where kubernetes-validate is installed (default ~/.cache/tidegate-deploy-venv)
#   KUBERNETES_VERSION   schema version to validate against (default 1.33)
set -euo pipefail
cd "$(dirname "$0")"
VENV=${VENV:-$HOME/.cache/tidegate-deploy-venv}
KUBERNETES_VERSION=${KUBERNETES_VERSION:-1.33}
CRD_KINDS="ServiceMonitor"

if ! command -v kubectl >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client >/dev/null
fi
if [ ! -x "$VENV/bin/kubernetes-validate" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'kubernetes-validate==1.33.1'
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
kubectl kustomize . > "$out/all.yaml"
echo "rendered $(grep -c '^kind:' "$out/all.yaml") objects"
# A copy with a deliberate mistake must fail, or the check proves nothing.
sed 's/^kind: PodDisruptionBudget/kind: PodDisruptionBudgett/' "$out/all.yaml" > "$out/broken.yaml"

# validate FILE: schema errors fail; warnings fail unless they are about a kind in CRD_KINDS.
validate() {
  "$VENV/bin/kubernetes-validate" --strict --quiet -k "$KUBERNETES_VERSION" "$1" > "$out/warnings" 2>&1 || return 1
  ! grep -v -E "Couldn't find schema for kind ($(echo "$CRD_KINDS" | tr ' ' '|')) " "$out/warnings" | grep -q .
}
if validate "$out/broken.yaml"; then
  echo "deploy/check.sh: a misspelt kind passed validation; the check is broken" >&2; exit 1
fi
validate "$out/all.yaml" || { cat "$out/warnings" >&2; echo "deploy/check.sh: validation failed" >&2; exit 1; }
echo "every built-in object passed kubernetes-validate --strict ($KUBERNETES_VERSION)"

"$VENV/bin/python" - "$out/all.yaml" <<'PY'
import sys, yaml, jsonschema
strict = lambda props, required=(): {"type": "object", "additionalProperties": False,
                                     "properties": props, "required": list(required)}
labels = {"type": "object", "additionalProperties": {"type": "string"}}
service_monitor = strict({
    "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "ServiceMonitor"},
    "metadata": strict({"name": {"type": "string"}, "namespace": {"type": "string"},
                        "labels": labels}, ["name"]),
    "spec": strict({
        "selector": strict({"matchLabels": labels}, ["matchLabels"]),
        "endpoints": {"type": "array", "minItems": 1, "items": strict({
            "port": {"type": "string"}, "path": {"type": "string", "pattern": "^/"},
            "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"}}, ["port"])},
    }, ["selector", "endpoints"]),
}, ["apiVersion", "kind", "metadata", "spec"])
n = 0
for doc in yaml.safe_load_all(open(sys.argv[1])):
    if doc and doc.get("kind") == "ServiceMonitor":
        jsonschema.validate(doc, service_monitor)
        n += 1
print(f"ServiceMonitor objects checked against the local schema: {n}")
PY
echo "deploy/check.sh: ok"
