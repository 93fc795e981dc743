"""Where each thread's time goes in batch-1 decode (issue 21): `perf record` over greedy decodes of SmolLM2-135M,
samples split by thread (the calling thread, the others) and by what they ran.

  PYTHONPATH=python:build/<dir>/pyext python3 benchmarks/thread_split.py [--dtype bfloat16] [--quantize int8]
      [--threads 2] [--tokens 256] [--calls 2] [--top 12]

Needs Linux `perf` (perf_event_paranoid <= 2) and symbols in the extension. pybind11 strips a Release extension
after linking (a POST_BUILD step); a stripped one shows every kernel as [unknown] under "alone". To keep them:
  sed -i 's#POST_BUILD = .*/strip .*#POST_BUILD = :#' build/<dir>/build.ninja
  rm build/<dir>/pyext/crossicl/_crossicl*.so && ninja -C build/<dir>
(cmake's next regeneration of build.ninja restores the strip). The window starts after a first warm-up call, so
it holds the timed calls only: decode steps plus their 8-token prefills.

Columns, as shares of each thread's samples in the window:
  kernels    the matrix-vector kernels (gemv_rows_*, gemv_cols_*)
  attention  the decode-step attention loop (attend_cpu, weigh_values)
  openmp     libgomp: waiting for work, or at the join of a parallel region
  team wait  a decode step's team (detail/engine_team.h): waiting for a job, or for the others at a job's end
  streaming  a waiting team thread streaming the next product's weights towards its core
  alone      everything else: for the calling thread the work no other thread shares (norms, RoPE, quantisation,
             ATen's dispatch and allocations, the greedy step)
"""
from __future__ import annotations

import argparse
import collections
import json
import pathlib
import subprocess
import sys
import tempfile
import time

PROMPT = [1, 450, 4996, 17354, 1701, 29916, 432, 17204]  # token ids, as in profile_decode.py


def worker(args) -> None:
    import crossicl

    eng = crossicl.Engine(crossicl.models.smollm2_path(), dtype=args.dtype, quantize=args.quantize,
                          threads=args.threads, cache_bytes=0)
    gen = lambda n: eng.generate([PROMPT], max_new_tokens=n, stop=[], stop_at_eos=False)  # noqa: E731
    gen(4)
    t0 = time.clock_gettime(time.CLOCK_MONOTONIC)
    p0 = time.perf_counter()
    for _ in range(args.calls):
        gen(args.tokens)
    rate = args.calls * args.tokens / (time.perf_counter() - p0)
    t1 = time.clock_gettime(time.CLOCK_MONOTONIC)
    pathlib.Path(args.window).write_text(json.dumps(dict(start=t0, end=t1, tokens_per_s=rate)))


def classify(sym: str, dso: str) -> str:
    if "gemv_rows" in sym or "gemv_cols" in sym:
        return "kernels"
    if "attend_cpu" in sym or "weigh_values" in sym:
        return "attention"
    if "libgomp" in dso:
        return "openmp"
    if sym.endswith("(anonymous namespace)::stream"):
        return "streaming"
    if "Team::" in sym:
        return "team wait"
    return "alone"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--quantize", default="none", choices=["none", "int8"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=256, help="tokens per timed call")
    ap.add_argument("--calls", type=int, default=2, help="timed calls")
    ap.add_argument("--top", type=int, default=12, help="symbols listed under each role's 'alone'")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--window", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        data, window = pathlib.Path(tmp) / "perf.data", pathlib.Path(tmp) / "window.json"
        cmd = [sys.executable, __file__, "--worker", "--window", str(window), "--dtype", args.dtype, "--quantize",
               args.quantize, "--threads", str(args.threads), "--tokens", str(args.tokens), "--calls",
               str(args.calls)]
        rec = subprocess.run(["perf", "record", "-q", "-k", "CLOCK_MONOTONIC", "-o", str(data), "--", *cmd],
                             capture_output=True, text=True)
        if rec.returncode != 0 or not window.exists():
            raise SystemExit(f"perf record failed (exit {rec.returncode}):\n{rec.stderr[-3000:]}")
        w = json.loads(window.read_text())
        script = subprocess.run(["perf", "script", "-i", str(data), "-F", "pid,tid,time,ip,sym,dso"],
                                capture_output=True, text=True)
    counts: collections.Counter = collections.Counter()
    totals: collections.Counter = collections.Counter()
    alone = {"calling thread": collections.Counter(), "other threads": collections.Counter()}
    for line in script.stdout.splitlines():
        f = line.split()
        if len(f) < 4 or "/" not in f[0]:
            continue
        pid, tid = f[0].split("/")
        t = float(f[1].rstrip(":"))
        if not w["start"] <= t <= w["end"]:
            continue
        role = "calling thread" if pid == tid else "other threads"
        sym, dso = " ".join(f[3:-1]), f[-1]
        kind = classify(sym, dso)
        counts[(role, kind)] += 1
        totals[role] += 1
        if kind == "alone":
            alone[role][sym[:100]] += 1
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; dtype {args.dtype}, quantize {args.quantize}, "
          f"{args.threads} threads; {args.calls} x {args.tokens} tokens at {w['tokens_per_s']:.1f} tokens/s "
          f"(under perf)")
    kinds = ("kernels", "attention", "openmp", "team wait", "streaming", "alone")
    print("\n| thread | samples | " + " | ".join(kinds) + " |")
    print("|---|---:|" + "---:|" * len(kinds))
    for role in ("calling thread", "other threads"):
        n = totals[role]
        if n:
            print(f"| {role} | {n} | " + " | ".join(f"{100 * counts[(role, k)] / n:.1f} %" for k in kinds) + " |")
    for role in ("calling thread", "other threads"):
        if totals[role]:
            print(f"\n{role}, alone, by symbol:")
            for sym, n in alone[role].most_common(args.top):
                print(f"  {100 * n / totals[role]:5.2f} %  {sym}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
