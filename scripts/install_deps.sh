#!/usr/bin/env bash
# Installs the Debian packages foxserve builds and tests with, skipping those already present.
# Needs root (or sudo) only when something is missing. Arguments name more packages to install
# the same way (scripts/sanitize.sh adds clang-14 and its runtimes).
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libsentencepiece-dev sentencepiece prometheus-cpp-dev
  libgtest-dev libgmock-dev nlohmann-json3-dev libicu-dev
  python3
  prometheus
)
# Node.js runs the independent GPT-2 tokenizer the tests compare against; keep a newer one
# that is already installed rather than replacing it with Debian's.
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)
# The deployment tests (tests/deploy) render the Kubernetes manifests with `kubectl kustomize`
# and run Prometheus and promtool (the prometheus package, above). Debian's kubectl comes in
# kubernetes-client; a kubectl already installed (such as the Google Cloud SDK's, which owns
# /usr/bin/kubectl and would conflict with it) is kept: the manifests render with both.
command -v kubectl >/dev/null 2>&1 || packages+=(kubernetes-client)
packages+=("$@")

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install_deps: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
