#!/usr/bin/env bash
# Packs binaries built here for the device machine (bench/run_device_*.sh): each binary and the
# shared libraries it needs that a stock Ubuntu with CUDA lacks (Debian's Abseil, gRPC, protobuf,
# prometheus-cpp, ...), into DEST. glibc, libstdc++ and the CUDA libraries come from the device.
# A BINARY may be a shared library too (libfoxserve_sentencepiece.so, which foxserve opens with
# dlopen, so ldd of foxserve does not list it or its libsentencepiece).
#   bench/pack_device.sh DEST BINARY...
set -euo pipefail
dest="$1"
shift
mkdir -p "$dest"
for bin in "$@"; do
  cp -f "$bin" "$dest/"
  ldd "$bin" | awk '$3 ~ /^\// {print $3}' | while read -r lib; do
    case "$(basename "$lib")" in
      libc.so*|libm.so*|libstdc++*|libgcc_s*|ld-linux*|libpthread*|libdl.so*|librt.so*) ;;
      libcuda*|libcublas*|libnvidia*) ;;
      *) cp -fL "$lib" "$dest/" ;;
    esac
  done
done
