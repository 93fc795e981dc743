#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer run: builds crossicl with CROSSICL_SANITIZE=address,undefined in
# ${1:-build/asan}, then runs ctest (all but the libFuzzer targets, which are sanitized builds of their own, and
# the install-package test) and the engine, tokenizer, parser and selector pytest files against the sanitized
# module. Any sanitizer report stops the program, so exit status 0 means none was found.
#   bash scripts/sanitize.sh [build-dir]      (about 25 min on 2 cores; CROSSICL_TEST_DATA as for the tests)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
out=${1:-build/asan}
export CROSSICL_TEST_DATA=${CROSSICL_TEST_DATA:-$PWD/../shared}
launcher=()
if command -v ccache >/dev/null 2>&1; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache); fi
cmake -S . -B "$out" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCROSSICL_BUILD_TESTS=ON -DCROSSICL_BUILD_PYTHON=ON \
  -DCROSSICL_INSTALL=OFF -DCROSSICL_SANITIZE=address,undefined "${launcher[@]}" >/dev/null
cmake --build "$out" -j"${JOBS:-2}"

# Leaks are not checked: Python and torch keep allocations alive until exit by design.
# allocator_may_return_null: an impossible allocation throws bad_alloc (MemoryError), as the tests expect, not abort.
export ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ctest --test-dir "$out" --output-on-failure -j"${JOBS:-2}" -E '^fuzz_'

# The interpreter is not instrumented, so the ASan runtime is preloaded for the sanitized module.
asan_rt=$(${CXX:-g++} -print-file-name=libasan.so)
ubsan_rt=$(${CXX:-g++} -print-file-name=libubsan.so)
tests=()
for f in tests/python/test_{engine,engine_cache,engine_gguf,engine_hf,engine_threads,gil,gguf,gguf_tokenizer,select,hardening_inputs,hardening_files}.py; do
  [ -f "$f" ] && tests+=("$f")
done
LD_PRELOAD="$asan_rt $ubsan_rt" PYTHONPATH="python:$out/pyext" CROSSICL_SANITIZED=1 \
  $PY -m pytest -q -p no:cacheprovider "${tests[@]}"
echo "sanitize.sh: no sanitizer report (ctest + ${#tests[@]} pytest files)"
