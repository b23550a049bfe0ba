# Sourced by bench/run_device_*.sh on the device machine: where its cuBLASLt lives, and step(),
# which runs one named part with a time limit and keeps its log.
#   needs: $out (the log folder); sets: $cublas (the folder of libcublasLt.so.13)
cublas="$(dirname "$(find / -name 'libcublasLt.so.13' -not -path '*/proc/*' 2>/dev/null | head -1)")"

step() {  # name seconds command...  (TAIL: how many lines of the log to echo)
  local name="$1" seconds="$2"
  shift 2
  echo "=== $name"
  local t0=$SECONDS
  timeout "$seconds" "$@" > "$out/$name.txt" 2>&1
  echo "exit $? after $((SECONDS - t0)) s" >> "$out/$name.txt"
  tail -n "${TAIL:-6}" "$out/$name.txt"
}
