#!/usr/bin/env bash
# Issue 8 on the device machine (repository root; the server and fox_load with their libraries in
# .device/srv.tar.xz, the reference FoX package in .device/hfref, built or fetched here and
# carried), on a 760M-shaped FoX (Pro) with the decay mix (bench/make_fox_checkpoint.py):
#   1. foxserve --device cuda with ACP on (log eps -10) and off, the same closed-loop workloads:
#      W16k: 16 concurrent requests of 16384-token prompts, 128 new tokens;
#      W2k:  64 concurrent requests of 2048-token prompts, 256 new tokens;
#      greedy, with each request's output hash in the CSVs (ACP on and off must agree);
#   2. the reference Hugging Face model (bench/hf_reference.py) on the same two workloads;
#   3. an open-loop sweep of arrival rates on foxserve with ACP on (2k prompts, 256 new tokens).
#   4. (RUN_DETERMINISM=1) where greedy outputs may differ: 4 requests of 16k tokens alone
#      (concurrency 1) with ACP on and off, and the W2k workload twice with ACP off;
#   5. (RUN_SHIPPED=1) the same comparison on the shipped, trained model (models/), whose
#      logits are not near-ties: 8 requests alone and 8 at once (twice), ACP on and off;
#   6. (RUN_PLOTS=1) W16k with per-head ACP metrics, then bench/plot_results.py (needs matplotlib);
#   7. (RUN_CAPACITY=1) the KV capacity benchmark of ACP eviction at 16k and 32k tokens (issue 6).
# Logs, CSVs and JSON go to $OUT. SKIP_MAIN=1 (part 1), SKIP_HF=1, SKIP_SWEEP=1 leave parts out;
# SWEEP_RATES="2 4 ..." sets the open-loop arrival rates (requests/s).
set -uo pipefail
out="${OUT:-/tmp/out}"
mkdir -p "$out"
. bench/device_common.sh
TAIL="${TAIL:-8}"
srv=/tmp/srv
mkdir -p "$srv" && tar -xJf .device/srv.tar.xz -C "$srv" --strip-components=1
export LD_LIBRARY_PATH="$srv:$cublas"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/card.txt"
[ -d /tmp/fox760m ] || step checkpoint 120 python3 bench/make_fox_checkpoint.py --out /tmp/fox760m

port=50077
start_server() {  # name acp-flag [more foxserve flags; a later --model wins]
  "$srv/foxserve" --device cuda --model /tmp/fox760m --host 127.0.0.1 --port $port \
    --metrics-port 9377 --max-model-len 17000 --kv-cache-bytes 51539607552 \
    --max-batch-tokens 8192 --acp-log-eps "$2" "${@:3}" > "$out/server_$1.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 90); do grep -q "serving gRPC" "$out/server_$1.log" && return 0; sleep 1; done
  echo "server $1 did not start"; tail -5 "$out/server_$1.log"; return 1
}
stop_server() {  # name
  curl -s 127.0.0.1:9377/metrics | grep -E "^foxserve_(acp|kv|preempt)" > "$out/metrics_$1.txt"
  kill -TERM $server_pid; wait $server_pid
}
load() {  # name seconds fox_load-args...
  local name="$1" seconds="$2"
  shift 2
  TAIL=6 step "$name" "$seconds" "$srv/fox_load" --server 127.0.0.1:$port --seed 11 \
    --csv "$out/$name.csv" --json "$out/$name.json" "$@"
}

for acp in $([ -n "${SKIP_MAIN:-}" ] || echo on off); do
  flag=-10; [ $acp = off ] && flag=off
  start_server "acp_$acp" $flag || continue
  load "w16k_acp_$acp" 150 --mode closed --concurrency 16 --requests 16 --prompt-tokens 16384 \
    --new-tokens 128
  load "w2k_acp_$acp" 120 --mode closed --concurrency 64 --requests 64 --prompt-tokens 2048 \
    --new-tokens 256
  stop_server "acp_$acp"
done
# Greedy outputs, request by request (seed, generated count, hash of the ids).
for w in w16k w2k; do
  if [ -f "$out/${w}_acp_on.csv" ] && [ -f "$out/${w}_acp_off.csv" ]; then
    diff <(cut -d, -f1,5,9 "$out/${w}_acp_on.csv" | sort) \
         <(cut -d, -f1,5,9 "$out/${w}_acp_off.csv" | sort) > "$out/${w}_outputs.diff" \
      && echo "$w: greedy outputs identical with ACP on and off" \
      || echo "$w: greedy outputs differ ($(grep -c '^<' "$out/${w}_outputs.diff") requests)"
  fi
done

[ -n "${SKIP_HF:-}" ] || TAIL=6 step hf_reference 240 python3 bench/hf_reference.py \
  --ref-src .device/hfref --model /tmp/fox760m --workload 16x16384+128 --workload 64x2048+256 \
  --json "$out/hf_reference.json"

if [ -z "${SKIP_SWEEP:-}" ]; then
  start_server sweep -10 && {
    for rate in ${SWEEP_RATES:-2 4 8 12 16 24 32}; do
      load "open_rate_$rate" 60 --mode open --rate $rate --duration 15 --timeout 30 \
        --prompt-tokens 2048 --new-tokens 256
    done
    stop_server sweep
  }
fi

if [ -n "${RUN_CAPACITY:-}" ]; then
  # A 12 GiB KV budget: a 16k-token sequence needs about 2.3 GiB without eviction (5 fit), a 32k
  # one 4.6 GiB (2 fit); 2.4x and 3x that many requests are offered.
  TAIL=6 step capacity_16k 150 "$srv/capacity_bench" --device cuda --model /tmp/fox760m \
    --prompt-tokens 16384 --new-tokens 64 --requests 12 --kv-bytes 12884901888
  TAIL=6 step capacity_32k 150 "$srv/capacity_bench" --device cuda --model /tmp/fox760m \
    --prompt-tokens 32768 --new-tokens 64 --requests 6 --kv-bytes 12884901888
fi

same() {  # a b: the requests' (seed, generated count, id hash) in both CSVs
  diff <(cut -d, -f1,5,9 "$out/$1.csv" | sort) <(cut -d, -f1,5,9 "$out/$2.csv" | sort) > /dev/null \
    && echo "$1 = $2: identical greedy outputs" \
    || echo "$1 != $2: $(diff <(cut -d, -f1,5,9 "$out/$1.csv" | sort) \
                            <(cut -d, -f1,5,9 "$out/$2.csv" | sort) | grep -c '^<') requests differ"
}
if [ -n "${RUN_DETERMINISM:-}" ]; then
  for acp in on off; do
    flag=-10; [ $acp = off ] && flag=off
    start_server "det_$acp" $flag || continue
    load "alone_acp_$acp" 120 --mode closed --concurrency 1 --requests 4 --prompt-tokens 16384 \
      --new-tokens 64
    if [ $acp = off ]; then
      for run in a b; do
        load "w2k_off_$run" 60 --mode closed --concurrency 64 --requests 64 --prompt-tokens 2048 \
          --new-tokens 256
      done
    fi
    stop_server "det_$acp"
  done
  same alone_acp_on alone_acp_off
  same w2k_off_a w2k_off_b
fi

if [ -n "${RUN_SHIPPED:-}" ]; then
  for acp in on off; do
    flag=-10; [ $acp = off ] && flag=off
    start_server "shipped_$acp" $flag --model models/fox-pro-shakespeare --max-model-len 2048 \
      || continue
    load "shipped_alone_$acp" 60 --mode closed --concurrency 1 --requests 8 \
      --prompt-tokens 1024:1536 --new-tokens 128
    load "shipped_batch_$acp" 60 --mode closed --concurrency 8 --requests 8 \
      --prompt-tokens 1024:1536 --new-tokens 128
    # The same batch again on the same server: how far batching alone moves greedy outputs.
    load "shipped_batch2_$acp" 60 --mode closed --concurrency 8 --requests 8 \
      --prompt-tokens 1024:1536 --new-tokens 128
    stop_server "shipped_$acp"
  done
  same shipped_alone_on shipped_alone_off
  same shipped_batch_on shipped_batch_off
  same shipped_alone_on shipped_batch_on
  same shipped_batch_on shipped_batch2_on
  same shipped_batch_off shipped_batch2_off
fi

if [ -n "${RUN_PLOTS:-}" ]; then
  start_server per_head -10 --metrics-per-head on && {
    load w16k_per_head 150 --mode closed --concurrency 16 --requests 16 --prompt-tokens 16384 \
      --new-tokens 128
    curl -s 127.0.0.1:9377/metrics > "$out/metrics_per_head.txt"
    stop_server per_head
  }
  step plots 60 python3 bench/plot_results.py --data bench/results/issue8.json \
    --metrics "$out/metrics_per_head.txt" --out "$out"
fi
