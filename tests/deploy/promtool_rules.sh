#!/usr/bin/env bash
# promtool on the alerts: `check rules` lints the PrometheusRule's spec, `test rules` runs the unit
# tests of alerts_test.yaml (each alert fires and stays quiet), alert_coverage.mjs checks that every
# alert has both. Usage: promtool_rules.sh EXTRACTED_DIR (what extract_monitoring.mjs wrote)
set -euo pipefail
out="$1"
here="$(cd "$(dirname "$0")" && pwd)"
if ! command -v promtool >/dev/null 2>&1; then
  echo "FAIL: promtool not found. Install it with scripts/install_deps.sh (Debian: apt-get install prometheus)" >&2
  exit 1
fi
echo "$(promtool --version 2>&1 | head -1)"
promtool check rules "$out/rules.yaml"
# rule_files in the test file are relative to it: run it next to the extracted rules.
cp "$here/alerts_test.yaml" "$out/alerts_test.yaml"
(cd "$out" && promtool test rules alerts_test.yaml)
node "$here/alert_coverage.mjs" "$out/queries.json" "$here/alerts_test.yaml"
