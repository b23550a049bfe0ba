#!/usr/bin/env bash
# Lints deploy/Dockerfile offline (no Docker engine here) with two linters from the npm registry:
# dockerfilelint (best-practice rules: apt-get habits, tags, ports, arguments) and dockerfile-utils
# (the parser behind the VS Code Docker language server: syntax and instruction validity, current
# syntax such as ARG before FROM). Then dockerfile_policy.mjs checks what the image must keep.
# Usage: dockerfile_lint.sh SOURCE_DIR   ($FOXSERVE_DEPLOY_NODE_MODULES: the npm install)
set -euo pipefail
src="$1"
here="$(cd "$(dirname "$0")" && pwd)"
bin="${FOXSERVE_DEPLOY_NODE_MODULES:?set by CTest}/.bin"
for tool in dockerfilelint dockerfile-utils; do
  if [ ! -x "$bin/$tool" ]; then
    echo "FAIL: $bin/$tool is missing: run scripts/test.sh, which installs the deploy test tools from npm" >&2
    exit 1
  fi
done
dockerfile="$src/deploy/Dockerfile"
# A broken Dockerfile must fail both linters, or they are not doing their job.
bad="$(mktemp)"
trap 'rm -f "$bad"' EXIT
printf 'FROM ubuntu\nEXPOSE 99999\nUSER\n' >"$bad"
if "$bin/dockerfilelint" "$bad" >/dev/null 2>&1; then echo "FAIL: dockerfilelint accepted a broken Dockerfile" >&2; exit 1; fi
if "$bin/dockerfile-utils" lint "$bad" >/dev/null 2>&1; then echo "FAIL: dockerfile-utils accepted a broken Dockerfile" >&2; exit 1; fi
echo "dockerfilelint $(node -p "require('$bin/../dockerfilelint/package.json').version")"
"$bin/dockerfilelint" "$dockerfile"
echo "dockerfile-utils $(node -p "require('$bin/../dockerfile-utils/package.json').version") lint"
"$bin/dockerfile-utils" lint "$dockerfile"
echo "dockerfile-utils: no problems"
node "$here/dockerfile_policy.mjs" "$dockerfile" "$src/scripts/install_deps.sh"
