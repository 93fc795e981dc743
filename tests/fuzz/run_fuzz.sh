#!/usr/bin/env bash
# Builds the GGUF parser fuzz target with clang (libFuzzer + AddressSanitizer + UBSan) and runs it for
# ${FUZZ_SECONDS:-60} seconds from a corpus seeded with real GGUF files. Exit status 0 = no crash found.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:-$root/build/fuzz}"
data="${CROSSICL_TEST_DATA:-$root/../shared}"
CXX=${FUZZ_CXX:-$(command -v clang++-14 || command -v clang++)}
mkdir -p "$out/corpus"
"$CXX" -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -DFMT_HEADER_ONLY=1 -I"$root/include" \
  "$root/tests/fuzz/fuzz_gguf.cpp" "$root/src/engine/gguf.cpp" "$root/src/engine/gguf_quants.cpp" \
  -o "$out/fuzz_gguf"
for f in "$data/models/stories260K/stories260K.gguf" "$data/models/llama2/ggml-vocab-llama-spm.gguf"; do
  [ -f "$f" ] && head -c 65536 "$f" > "$out/corpus/$(basename "$f").head"
done
"$out/fuzz_gguf" "$out/corpus" -max_total_time="${FUZZ_SECONDS:-60}" -max_len=65536 -rss_limit_mb=2048 \
  -print_final_stats=1 2>&1 | tail -n 15
