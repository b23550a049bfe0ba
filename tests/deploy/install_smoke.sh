#!/usr/bin/env bash
# The image without Docker: installs the build with `cmake --install` (cmake/FoxserveInstall.cmake)
# into a scratch prefix, then runs exactly the Dockerfile's ENTRYPOINT + CMD with its ENV, paths
# moved into that prefix, and checks that the server serves the shipped model's SentencePiece
# tokenizer from the installed module (text in, text out, through foxserve-cli), and that SIGTERM
# drains and exits 0.
# Usage: install_smoke.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src="$1"
build="$2"
here="$(cd "$(dirname "$0")" && pwd)"
scratch="$(mktemp -d)"
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -rf "$scratch"
}
trap cleanup EXIT

mapfile -t plan < <(node "$here/dockerfile_entrypoint.mjs" "$src/deploy/Dockerfile")
image_prefix="${plan[0]}"
prefix="$scratch$image_prefix"
cmake --install "$build" --prefix "$prefix" --component server >"$scratch/install.log"
for f in bin/foxserve bin/foxserve-cli lib/foxserve/libfoxserve_sentencepiece.so \
         share/foxserve/models/fox-pro-shakespeare/config.json \
         share/foxserve/models/fox-pro-shakespeare/model.safetensors \
         share/foxserve/models/fox-pro-shakespeare/tokenizer.model; do
  [ -e "$prefix/$f" ] || { echo "FAIL: cmake --install did not install $f" >&2; exit 1; }
done
if ldd "$prefix/bin/foxserve" "$prefix/lib/foxserve/libfoxserve_sentencepiece.so" | grep "not found"; then
  echo "FAIL: installed binaries miss shared libraries" >&2
  exit 1
fi

# ENV lines, then "--", then the command; every image path moves into the scratch prefix.
env_args=()
cmd=()
seen_sep=0
for item in "${plan[@]:1}"; do
  item="${item//$image_prefix/$prefix}"
  if [ "$item" = "--" ] && [ "$seen_sep" -eq 0 ]; then seen_sep=1; continue; fi
  if [ "$seen_sep" -eq 0 ]; then env_args+=("$item"); else cmd+=("$item"); fi
done
port="$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
# Later flags win: keep the image's command, move it onto loopback and a free port.
cmd+=(--host 127.0.0.1 --port "$port" --metrics-port -1 --threads 2 --drain-timeout 5)
echo "running: ${env_args[*]} ${cmd[*]}"
env -i PATH=/usr/bin:/bin HOME="$scratch" "${env_args[@]}" "${cmd[@]}" >"$scratch/server.log" 2>&1 &
pid=$!

cli="$prefix/bin/foxserve-cli"
answer=""
for _ in $(seq 1 120); do
  if ! kill -0 "$pid" 2>/dev/null; then
    cat "$scratch/server.log" >&2
    echo "FAIL: the server exited before serving" >&2
    exit 1
  fi
  if answer="$("$cli" generate --server "127.0.0.1:$port" --prompt "ROMEO:" --max-new-tokens 8 2>&1)"; then
    break
  fi
  answer=""
  sleep 0.5
done
[ -n "$answer" ] || { cat "$scratch/server.log" >&2; echo "FAIL: no answer from the installed server" >&2; exit 1; }
echo "generated: $answer"
if ! grep -q "$prefix/lib/foxserve/libfoxserve_sentencepiece.so" "/proc/$pid/maps"; then
  echo "FAIL: the server did not load the installed SentencePiece module" >&2
  exit 1
fi
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=""
cat "$scratch/server.log"
[ "$rc" -eq 0 ] || { echo "FAIL: foxserve exited $rc after SIGTERM" >&2; exit 1; }
echo "install smoke: ok"
