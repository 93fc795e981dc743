#!/usr/bin/env bash
# Builds and runs crossicl's libFuzzer targets (clang: libFuzzer + AddressSanitizer + UBSan; no torch needed).
#
#   tests/fuzz/run_fuzz.sh [--build-only] TARGET|all
#
# For each target: build tests/fuzz/fuzz_<target>.cpp with the sources tests/fuzz/fuzz_lib.sh lists, replay the
# committed crashers of tests/fuzz/regressions/<target>/, then fuzz for ${FUZZ_SECONDS:-20} seconds from a corpus
# seeded with inputs made from the shared data (tests/fuzz/make_seeds.py), with tests/fuzz/dicts/<target>.dict.
# Targets: gguf safetensors config llama2c tokenizer_json jsonl tasks template. Exit status 0 = no crash found;
# a crashing input is left under build/fuzz/artifacts/<target>/ (move it into tests/fuzz/regressions/<target>/
# once fixed). Environment: FUZZ_SECONDS, FUZZ_OUT (default build/fuzz), FUZZ_CXX, CROSSICL_TEST_DATA.
set -euo pipefail
source "$(dirname "$0")/fuzz_lib.sh"

build_only=0
if [ "${1:-}" = "--build-only" ]; then
  build_only=1
  shift
fi
which="${1:-all}"
if [ "$which" = all ]; then
  targets=("${FUZZ_TARGETS[@]}")
else
  fuzz_known "$which"
  targets=("$which")
fi

status=0
for t in "${targets[@]}"; do
  fuzz_build "$t"
  [ $build_only = 1 ] && continue
  fuzz_seed "$t"
  fuzz_replay "$t" || { status=1; continue; }
  fuzz_args "$t"
  fuzz_dirs "$t"
  log="$fuzz_out/artifacts/$t/run.log"
  if "$fuzz_out/fuzz_$t" "${FUZZ_DIRS[@]}" "${FUZZ_ARGS[@]}" -max_total_time="${FUZZ_SECONDS:-20}" >"$log" 2>&1; then
    echo "fuzz_$t: no crash; $(grep -m1 -o 'stat::number_of_executed_units: [0-9]*' "$log" | cut -d' ' -f2) executions"
  else
    tail -n 60 "$log"
    echo "fuzz_$t: CRASH (input under $fuzz_out/artifacts/$t/, log $log)"
    status=1
  fi
done
exit $status
