#!/usr/bin/env bash
# The main job: installs what is missing, builds, and starts the foxserve gRPC server on the
# default model (the CPU backend when no GPU is present). Arguments go to foxserve, e.g.
#   scripts/serve.sh --port 50051 --metrics-port 9400
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${FOXSERVE_BUILD_DIR:-build}"
scripts/install_deps.sh
scripts/build.sh
exec "$build_dir/server/foxserve" "$@"
