#!/usr/bin/env bash
# Renders every kustomization under deploy/k8s offline (`kubectl kustomize`) into OUT_DIR, one
# file per kustomization (base.yaml, overlays_cpu.yaml, ...), for the schema and policy checks.
# Usage: render_manifests.sh SOURCE_DIR OUT_DIR
set -euo pipefail
src="$1"
out="$2"
if ! command -v kubectl >/dev/null 2>&1; then
  echo "FAIL: kubectl not found. Install it with scripts/install_deps.sh (Debian: apt-get install kubernetes-client)" >&2
  exit 1
fi
echo "kubectl: $(kubectl version --client 2>/dev/null | head -1)"
rm -rf "$out"
mkdir -p "$out"
count=0
while IFS= read -r kfile; do
  dir="$(dirname "$kfile")"
  rel="${dir#"$src/deploy/k8s/"}"
  name="${rel//\//_}"
  # Deprecation warnings (bases, patchesJson6902 on newer kubectl) go to stderr; errors fail.
  if ! kubectl kustomize "$dir" >"$out/$name.yaml" 2>"$out/$name.stderr"; then
    cat "$out/$name.stderr" >&2
    echo "FAIL: kubectl kustomize $dir" >&2
    exit 1
  fi
  docs="$(grep -c '^kind:' "$out/$name.yaml" || true)"
  echo "rendered $rel: $docs objects"
  [ "$docs" -gt 0 ] || { echo "FAIL: $rel rendered nothing" >&2; exit 1; }
  count=$((count + 1))
done < <(find "$src/deploy/k8s" -name kustomization.yaml | sort)
# base, the two overlays and the Prometheus Adapter configuration.
if [ "$count" -lt 4 ]; then
  echo "FAIL: expected at least 4 kustomizations under deploy/k8s, found $count" >&2
  exit 1
fi
