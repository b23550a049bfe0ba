#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs every test (ctest). GPU tests
# skip with a printed reason when no GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${FOXSERVE_BUILD_DIR:-build}"
scripts/install_deps.sh
scripts/build.sh
# The independent GPT-2 BPE implementation the tokenizer tests compare against.
if [ ! -f "$build_dir/npm/node_modules/gpt-3-encoder/Encoder.js" ]; then
  npm install --no-save --no-package-lock --no-audit --no-fund --prefix "$build_dir/npm" \
    gpt-3-encoder@1.1.4
fi
# Offline checkers of the deployment tests (tests/deploy): Kubernetes API schemas, Dockerfile
# linters, a YAML parser. Their own folder: a second `npm install --no-save` into build/npm would
# remove gpt-3-encoder. Reinstalled when tests/deploy/npm-packages.txt changes.
deploy_npm="$build_dir/npm-deploy"
if ! cmp -s tests/deploy/npm-packages.txt "$deploy_npm/packages.txt"; then
  mapfile -t deploy_packages < <(grep -v '^\s*$' tests/deploy/npm-packages.txt)
  npm install --no-save --no-package-lock --no-audit --no-fund --prefix "$deploy_npm" \
    "${deploy_packages[@]}"
  cp tests/deploy/npm-packages.txt "$deploy_npm/packages.txt"
fi
cd "$build_dir"
ctest --output-on-failure -j "$(nproc)" "$@"
