#!/usr/bin/env bash
# The reliability stage of CI (issue 9; .ci/run runs it after scripts/test.sh): builds with
# sanitizers (clang-14, CMakePresets.json) and
#   asan  - runs every cpu test under AddressSanitizer + UndefinedBehaviorSanitizer (+ LeakSanitizer),
#           the soak included (30 s)
#   tsan  - runs the scheduler, KV block manager, threaded-engine and server tests (server, SIGTERM,
#           security, fault, and a 30 s soak) under ThreadSanitizer (tests/sanitizers/tsan.supp
#           holds the suppressions, with reasons)
#   fuzz  - runs each libFuzzer target of tests/fuzz (built by the asan preset) for a bounded
#           number of executions from its committed corpus, two at a time on 2 cores; a crash
#           fails the stage and leaves the input in build-asan/fuzz/artifacts/
# Usage: scripts/sanitize.sh [asan|tsan|fuzz|all]...   (default: all). Every stage named runs even
# when an earlier one failed (the fuzz stage needs the asan build, and is skipped when that build
# failed); the exit status is 1 if any failed. Installs what is missing: scripts/install_deps.sh
# plus clang-14, libclang-rt-14-dev (the sanitizer and libFuzzer runtimes) and llvm-14
# (llvm-symbolizer, for readable reports). Wall times (2 cores, from scratch): tests/sanitizers/README.md.
# Bounds (environment): FOXSERVE_FUZZ_RUNS executions per target (default: the per-target list
# below, 10 to 25 s each), FOXSERVE_FUZZ_MAX_SECONDS hard cap per target (default 50).
# Longer, local runs: FOXSERVE_FUZZ_RUNS=-1 FOXSERVE_FUZZ_MAX_SECONDS=600 scripts/sanitize.sh fuzz
# Each run draws a random libFuzzer seed, printed in the summary; FOXSERVE_FUZZ_SEED=N repeats one.
set -euo pipefail
cd "$(dirname "$0")/.."
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(all)
jobs="$(nproc)"
started=$SECONDS

log() { echo "sanitize: $*"; }

for stage in "${stages[@]}"; do
  case "$stage" in
    asan|tsan|fuzz|all) ;;
    *) echo "usage: $0 [asan|tsan|fuzz|all]..." >&2; exit 2 ;;
  esac
done

scripts/install_deps.sh clang-14 libclang-rt-14-dev llvm-14

# Runs a step and logs its wall time ("sanitize: time asan-build 256 s"); keeps its exit status.
timings=()
timed() {
  local name="$1" t0=$SECONDS rc=0
  shift
  "$@" || rc=$?
  local line="$name $((SECONDS - t0)) s$([ "$rc" -eq 0 ] || echo " (FAILED, exit $rc)")"
  timings+=("$line")
  log "time $line"
  return "$rc"
}

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

# (These functions run in `||` context, where set -e does not apply: every step checks.)
build_asan() {
  cmake --preset asan >/dev/null && cmake --build --preset asan -j "$jobs" && npm_for build-asan
}

build_tsan() {
  cmake --preset tsan >/dev/null && cmake --build --preset tsan -j "$jobs"
}

asan_build_failed=0
stage_asan() {
  log "ASan+UBSan build (build-asan)"
  timed asan-build build_asan || { asan_build_failed=1; return 1; }
  log "ASan+UBSan tests"
  rm -f build-asan/soak_summary.txt
  timed asan-tests ctest --preset asan -j "$jobs"
}

stage_tsan() {
  log "TSan build (build-tsan)"
  timed tsan-build build_tsan || return 1
  log "TSan tests"
  rm -f build-tsan/soak_summary.txt
  timed tsan-tests no_aslr ctest --preset tsan -j "$jobs"
}

fuzz_targets=(safetensors model_config bpe_tokenizer sentencepiece stream_decoder generate_request)
# Executions per target: 10 to 25 s each under ASan+UBSan on one core of the CI machine.
declare -A default_runs=(
  [safetensors]=200000 [model_config]=300000 [bpe_tokenizer]=80000 [sentencepiece]=150000
  [stream_decoder]=150000 [generate_request]=400000)
fuzz_out=build-asan/fuzz

# Fuzzes one target; its log goes to $fuzz_out/<target>.log, one summary line to <target>.summary.
fuzz_one() {
  local target="$1"
  local runs="${FOXSERVE_FUZZ_RUNS:-${default_runs[$target]}}"
  local seconds="${FOXSERVE_FUZZ_MAX_SECONDS:-50}"
  # New inputs go to a scratch corpus; the committed seeds are only read.
  local work="$fuzz_out/corpus/$target"
  mkdir -p "$work"
  local dict=()
  [ -f "tests/fuzz/dicts/$target.dict" ] && dict=("-dict=tests/fuzz/dicts/$target.dict")
  local logfile="$fuzz_out/$target.log"
  log "fuzzing $target: up to $runs executions, at most $seconds s"
  local seed=()
  [ -n "${FOXSERVE_FUZZ_SEED:-}" ] && seed=("-seed=$FOXSERVE_FUZZ_SEED")
  local rc=0 t0=$SECONDS
  ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1:alloc_dealloc_mismatch=0" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    "build-asan/tests/fuzz/${target}_fuzzer" "${dict[@]}" "${seed[@]}" -runs="$runs" \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2560 -max_len=4096 \
      -print_final_stats=1 -artifact_prefix="$fuzz_out/artifacts/$target-" \
      "$work" "tests/fuzz/corpus/$target" >"$logfile" 2>&1 || rc=$?
  local execs slowest cov corpus used_seed
  used_seed="$(sed -n 's/^INFO: Seed: *//p' "$logfile" | head -1)"
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$logfile" | tail -1)"
  slowest="$(sed -n 's/^stat::slowest_unit_time_sec: *//p' "$logfile" | tail -1)"
  cov="$(grep -o 'cov: [0-9]*' "$logfile" | tail -1 | cut -d' ' -f2)"
  corpus="$(grep -o 'corp: [0-9]*' "$logfile" | tail -1 | cut -d' ' -f2)"
  echo "$target executions=${execs:-?} seconds=$((SECONDS - t0)) cov=${cov:-?}" \
       "corpus=${corpus:-?} slowest_unit_s=${slowest:-?} seed=${used_seed:-?} exit=$rc" \
       >"$fuzz_out/$target.summary"
}

run_fuzz() {
  if [ ! -x build-asan/tests/fuzz/safetensors_fuzzer ]; then
    cmake --preset asan >/dev/null || return 1
    cmake --build --preset asan -j "$jobs" --target "${fuzz_targets[@]/%/_fuzzer}" || return 1
  fi
  mkdir -p "$fuzz_out/artifacts"
  rm -f "$fuzz_out"/*.summary
  # One fuzzer per core.
  for target in "${fuzz_targets[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
    fuzz_one "$target" &
  done
  wait
  local summary="$fuzz_out/summary.txt" failed=0
  : >"$summary"
  for target in "${fuzz_targets[@]}"; do
    local line
    line="$(cat "$fuzz_out/$target.summary" 2>/dev/null || echo "$target exit=? (no summary)")"
    echo "$line" | tee -a "$summary"
    if [[ "$line" != *" exit=0" ]]; then
      failed=1
      tail -60 "$fuzz_out/$target.log"
    fi
  done
  log "fuzz summary in $summary"
  return "$failed"
}

stage_fuzz() {
  if [ "$asan_build_failed" -ne 0 ]; then
    log "fuzz skipped: the asan build failed"
    return 1
  fi
  timed fuzz run_fuzz
}

failed=()
for stage in "${stages[@]}"; do
  if [ "$stage" = all ]; then
    for s in asan tsan fuzz; do "stage_$s" || failed+=("$s"); done
  else
    "stage_$stage" || failed+=("$stage")
  fi
done

# The soak's figures (the fuzzers' are above), for the CI log; each stage removes its old one.
for dir in build-asan build-tsan; do
  if [ -f "$dir/soak_summary.txt" ]; then log "$dir $(cat "$dir/soak_summary.txt")"; fi
done
log "timings:"
for t in "${timings[@]}"; do log "  $t"; done
log "done in $((SECONDS - started)) s"
if [ ${#failed[@]} -gt 0 ]; then
  log "FAILED: ${failed[*]}"
  exit 1
fi
