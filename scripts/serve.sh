#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs the model on the CPU.
# Arguments go to foxserve-cli generate.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${FOXSERVE_BUILD_DIR:-build}"
scripts/install_deps.sh
scripts/build.sh
if [ "$#" -eq 0 ]; then
  set -- --model tests/data/golden/fox-pro-tiny --input-ids 1,2,3,4,5 --max-new-tokens 16 --print-ids
fi
exec "$build_dir/server/foxserve-cli" generate "$@"
