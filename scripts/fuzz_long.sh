#!/usr/bin/env bash
# Long fuzzing runs: each target of tests/fuzz (or the ones named) for MINUTES minutes (default 10), one after the
# other, then a table of executions and crashes per target.
#
#   scripts/fuzz_long.sh [-m MINUTES] [TARGET...]
#
# libFuzzer stops at the first crash; the run is then restarted from the grown corpus until the target's time is
# spent, so one target can report several crashes (each input is under build/fuzz/artifacts/<target>/: crash-*,
# leak-*, timeout-*, oom-*); "distinct" counts them by what failed and where, so that one bug found again and
# again counts once. Logs: build/fuzz/long/<target>.log. Environment as tests/fuzz/run_fuzz.sh (FUZZ_OUT,
# FUZZ_CXX, CROSSICL_TEST_DATA). Exit status 0 = no crash in any target.
set -euo pipefail
source "$(dirname "$0")/../tests/fuzz/fuzz_lib.sh"

minutes=10
if [ "${1:-}" = "-m" ]; then
  minutes=$2
  shift 2
fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${FUZZ_TARGETS[@]}")
for t in "${targets[@]}"; do fuzz_known "$t"; done

mkdir -p "$fuzz_out/long"
rows=()
signatures=()
any_crash=0
for t in "${targets[@]}"; do
  fuzz_build "$t"
  fuzz_seed "$t"
  fuzz_args "$t"
  fuzz_dirs "$t"
  log="$fuzz_out/long/$t.log"
  : >"$log"
  execs=0 crashes=0 runs=0
  deadline=$(($(date +%s) + minutes * 60))
  while left=$((deadline - $(date +%s))); [ $left -gt 0 ]; do
    runs=$((runs + 1))
    echo "=== run $runs of fuzz_$t: $left s left ($(date -Is))" >>"$log"
    rc=0
    "$fuzz_out/fuzz_$t" "${FUZZ_DIRS[@]}" "${FUZZ_ARGS[@]}" -max_total_time=$left >"$fuzz_out/long/$t.run.log" 2>&1 \
      || rc=$?
    cat "$fuzz_out/long/$t.run.log" >>"$log"
    n=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$fuzz_out/long/$t.run.log" | tail -n1 | cut -d' ' -f2)
    execs=$((execs + ${n:-0}))
    if [ $rc -ne 0 ]; then
      crashes=$((crashes + 1))
      # What failed and where: the first report line, then the first frame in crossicl's sources (digits
      # masked, so that one bug met with other values counts once).
      what=$(grep -m1 -E 'what\(\):|runtime error:|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)' \
        "$fuzz_out/long/$t.run.log" | sed -E 's/^.*(what\(\):|runtime error:|ERROR:)/\1/; s/[0-9]+/N/g')
      where=$(grep -m1 -oE "$fuzz_root/(src|include)/[^ ]+:[0-9]+" "$fuzz_out/long/$t.run.log" || true)
      signatures+=("fuzz_$t: $what @ ${where#$fuzz_root/}")
      grep -m1 'Test unit written' "$fuzz_out/long/$t.run.log" | sed "s/^/fuzz_$t: /"
    fi
  done
  [ $crashes -gt 0 ] && any_crash=1
  distinct=$(printf '%s\n' "${signatures[@]}" | grep "^fuzz_$t: " | sort -u | grep -c . || true)
  rows+=("$(printf '%-20s %8s %14s %8s %9s' "fuzz_$t" "${minutes}m" "$execs" "$crashes" "$distinct")")
  echo "fuzz_$t: $execs executions, $crashes crash(es) ($distinct distinct) in $minutes min, $runs run(s); log $log"
done

printf '\n%-20s %8s %14s %8s %9s\n' target time executions crashes distinct
for r in "${rows[@]}"; do echo "$r"; done
if [ ${#signatures[@]} -gt 0 ]; then
  echo "distinct crashes:"
  printf '%s\n' "${signatures[@]}" | sort | uniq -c
fi
echo "crash inputs: $fuzz_out/artifacts/<target>/"
exit $any_crash
