#!/usr/bin/env bash
# On the device machine (repository root; binaries and their libraries in .device/bin, the
# server's in .device/srv.tar.xz, built here and carried): the CUDA backend test, the KV capacity
# benchmark of ACP eviction at 16k and 32k tokens (issue 6), and the gRPC server under load with
# ACP on and off (issue 8), all on a 760M-shaped FoX (Pro) with the decay mix. Logs go to $OUT.
set -uo pipefail
out="${OUT:-/tmp/out}"
mkdir -p "$out"
mkdir -p /work && [ -e /work/main ] || ln -s "$PWD" /work/main
cublas="$(dirname "$(find / -name 'libcublasLt.so.13' -not -path '*/proc/*' 2>/dev/null | head -1)")"
srv=/tmp/srv
mkdir -p "$srv" && tar -xJf .device/srv.tar.xz -C "$srv" --strip-components=1
export LD_LIBRARY_PATH=".device/bin:$srv:$cublas"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/card.txt"
step() {  # name seconds command...
  local name="$1" seconds="$2"
  shift 2
  echo "=== $name"
  local t0=$SECONDS
  timeout "$seconds" "$@" > "$out/$name.txt" 2>&1
  echo "exit $? after $((SECONDS - t0)) s" >> "$out/$name.txt"
  tail -n "${TAIL:-8}" "$out/$name.txt"
}
[ -d /tmp/fox760m ] || step checkpoint 120 python3 bench/make_fox_checkpoint.py --out /tmp/fox760m
# A 12 GiB KV budget: a 16k-token sequence needs about 2.3 GiB without eviction (5 fit), a 32k one
# 4.6 GiB (2 fit); 2.4x and 3x that many requests are offered.
TAIL=6 step capacity_16k 200 .device/bin/capacity_bench --device cuda --model /tmp/fox760m \
  --prompt-tokens 16384 --new-tokens 64 --requests 12 --kv-bytes 12884901888
TAIL=6 step capacity_32k 240 .device/bin/capacity_bench --device cuda --model /tmp/fox760m \
  --prompt-tokens 32768 --new-tokens 64 --requests 6 --kv-bytes 12884901888

serve() {  # name acp-flag
  local name="$1" acp="$2" port=50077
  "$srv/foxserve" --device cuda --model /tmp/fox760m --host 127.0.0.1 --port $port \
    --metrics-port 9377 --max-model-len 16384 --kv-cache-bytes 34359738368 \
    --max-batch-tokens 8192 --acp-log-eps "$acp" > "$out/server_$name.log" 2>&1 &
  local pid=$!
  for _ in $(seq 120); do grep -q "serving gRPC" "$out/server_$name.log" && break; sleep 1; done
  TAIL=14 step "load_$name" 150 "$srv/fox_load" --server 127.0.0.1:$port --mode closed \
    --concurrency 16 --requests 32 --prompt-tokens 2048:4096 --new-tokens 128 --seed 11 \
    --json "$out/load_$name.json"
  curl -s 127.0.0.1:9377/metrics | grep -E "^foxserve_(acp|kv)" > "$out/metrics_$name.txt"
  kill -TERM $pid; wait $pid
}
[ -n "${SKIP_SERVER:-}" ] || { serve acp_on -10; serve acp_off off; }
