#!/usr/bin/env bash
# CI check of deploy/: every kustomization renders and every object in it passes schema
# validation, and the Grafana dashboard loads (deploy/check-dashboard.py).
#
#  1. `kubectl kustomize` renders each of KUSTOMIZATIONS (kubectl from Debian `kubernetes-client`
#     if missing); a kustomize Component (under components/) is rendered on top of base/.
#  2. `kubernetes-validate --strict` (PyPI; installed into a venv under ~/.cache) validates every
#     built-in kind against the Kubernetes 1.33 OpenAPI schemas, rejecting unknown fields.
#  3. kubernetes-validate has no schema for CRDs: it only warns on them, and would do the same
#     for a misspelt kind. So any warning fails this check, except for kinds listed in CRD_KINDS,
#     which are checked here against a small schema of the fields we use (ServiceMonitor:
#     monitoring.coreos.com/v1 — selector and endpoints[].port/path/interval, no others).
#  4. check-dashboard.py (jsonschema and promql-parser from the same venv) loads
#     grafana-dashboard.json: structure, datasource templating, PromQL that parses and names only
#     metrics the proxy exports.
#  Each step also proves it can fail, on a copy with a deliberate mistake.
#
#   VENV                 where the Python tools are installed (default ~/.cache/tidegate-deploy-venv)
#   KUBERNETES_VERSION   schema version to validate against (default 1.33)
set -euo pipefail
cd "$(dirname "$0")"
VENV=${VENV:-$HOME/.cache/tidegate-deploy-venv}
KUBERNETES_VERSION=${KUBERNETES_VERSION:-1.33}
CRD_KINDS="ServiceMonitor"
# `.` is base/ (deploy/kustomization.yaml points there); every kustomization under deploy/ must
# be listed here, which the loop below checks.
KUSTOMIZATIONS=". base overlays/ha overlays/kind overlays/tls components/pod-patch-policy"

if ! command -v kubectl >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client >/dev/null
fi
if [ ! -x "$VENV/bin/kubernetes-validate" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'kubernetes-validate==1.33.1'
fi
if ! "$VENV/bin/python" -c 'import promql_parser' 2>/dev/null; then
  "$VENV/bin/pip" install -q 'promql-parser==0.11.0'
fi

out=$(mktemp -d)
wrap=$PWD/.check-$$   # a Component's wrapper must sit beside base/ (kustomize wants relative paths)
trap 'rm -rf "$out" "$wrap"' EXIT
for k in $(find . -name kustomization.yaml -printf '%h\n' | sed 's|^\./||' | sort); do
  case " $KUSTOMIZATIONS " in *" $k "*) ;; *)
    echo "deploy/check.sh: $k/kustomization.yaml is not in KUSTOMIZATIONS" >&2; exit 1 ;;
  esac
done

# render DIR > FILE: a Component is rendered on top of base/ (kustomize cannot build one alone).
render() {
  if grep -q '^kind: Component' "$1/kustomization.yaml"; then
    mkdir -p "$wrap"
    printf 'resources: [../base]\ncomponents: [../%s]\n' "$1" > "$wrap/kustomization.yaml"
    kubectl kustomize "$wrap"
  else
    kubectl kustomize "$1"
  fi
}

# validate FILE: schema errors fail; warnings fail unless they are about a kind in CRD_KINDS.
validate() {
  "$VENV/bin/kubernetes-validate" --strict --quiet -k "$KUBERNETES_VERSION" "$1" > "$out/warnings" 2>&1 || return 1
  ! grep -v -E "Couldn't find schema for kind ($(echo "$CRD_KINDS" | tr ' ' '|')) " "$out/warnings" | grep -q .
}

# A copy with a deliberate mistake must fail, or the check proves nothing.
render . | sed '0,/^kind: Deployment$/s//kind: Deploymentt/' > "$out/broken.yaml"
if validate "$out/broken.yaml"; then
  echo "deploy/check.sh: a misspelt kind passed validation; the check is broken" >&2; exit 1
fi
for k in $KUSTOMIZATIONS; do
  name=${k//\//-}; [ "$k" != . ] || name=deploy
  file="$out/$name.yaml"
  render "$k" > "$file"
  validate "$file" || { cat "$out/warnings" >&2; echo "deploy/check.sh: $k: validation failed" >&2; exit 1; }
  echo "$k: $(grep -c '^kind:' "$file") objects rendered; every built-in one passed kubernetes-validate --strict ($KUBERNETES_VERSION)"
done

"$VENV/bin/python" - "$out"/*.yaml <<'PY'
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
for path in sys.argv[1:]:
    if path.endswith("/broken.yaml"):
        continue
    for doc in yaml.safe_load_all(open(path)):
        if doc and doc.get("kind") == "ServiceMonitor":
            jsonschema.validate(doc, service_monitor)
            n += 1
print(f"ServiceMonitor objects checked against the local schema: {n}")
PY

# The kind overlay names the image `cargo xtask image` makes: localhost/tidegate:<workspace version>.
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' ../Cargo.toml | head -1)
grep -q "newTag: $version$" overlays/kind/kustomization.yaml || {
  echo "deploy/check.sh: overlays/kind/kustomization.yaml must use newTag: $version" >&2; exit 1; }

"$VENV/bin/python" check-dashboard.py

echo "deploy/check.sh: ok"
