#!/usr/bin/env bash
# On the device machine (from the repository root, with the binaries and their libraries in
# .device/bin, built here and carried): every GPU test, compute-sanitizer on the attention and
# backend tests, the attention benchmark against SDPA and the reference Triton kernel, and the
# end-to-end engine benchmark on a 760M-shaped FoX (Pro). Logs go to $OUT.
set -uo pipefail
out="${OUT:-/tmp/out}"
mkdir -p "$out"
# The test binaries look for the repository where it was built.
mkdir -p /work && [ -e /work/main ] || ln -s "$PWD" /work/main
. bench/device_common.sh
export LD_LIBRARY_PATH=".device/bin:$cublas"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/card.txt"
step gpu_tests 300 bash -c 'for t in rms_norm_cuda_test gemm_cuda_test top_candidates_cuda_test \
  paged_attention_cuda_test cuda_backend_test; do .device/bin/$t || echo "FAILED: $t"; done'
# The reference runs on attention_bench's per-head decay times (the share of skippable tiles
# depends on the draw).
TAIL=40 step attention_bench 200 .device/bin/attention_bench --decode-chunks auto,16,32 \
  --taus-out "$out/taus.txt"
[ -n "${SKIP_REFERENCE:-}" ] || TAIL=20 step attention_reference 150 python3 bench/attention_reference.py --ref-dir .device/ref --taus "$out/taus.txt"
step sanitizer 150 compute-sanitizer --tool memcheck --error-exitcode 1 \
  .device/bin/paged_attention_cuda_test --gtest_filter='*Mma*:*Wgmma*:*Tma*'
step sanitizer_backend 240 compute-sanitizer --tool memcheck --error-exitcode 1 \
  .device/bin/cuda_backend_test
step checkpoint 120 python3 bench/make_fox_checkpoint.py --out /tmp/fox760m
# The engine with ACP on and off (engine_bench runs both), at 2k and 16k tokens.
for shape in 2048x64 16384x16; do
  TAIL=4 step engine_bench_$shape 300 .device/bin/engine_bench --device cuda --model /tmp/fox760m \
    --prompt-tokens "${shape%x*}" --decode-tokens 32 --batch "${shape#*x}" --repeats 1
done
