"""Cosine top-4 of 2,500 queries against a 10,000 x 384 unit-norm pool: crossicl.CosineTopK vs NumPy.

NumPy baseline: one matrix product (OpenBLAS sgemm, [2500, 10000] float32 scores), np.argpartition for the 4
best of each row, then a sort of those 4. crossicl: blocked exact search, never materialising the scores.
Both run in this process on the same data (seeded); the time is the best of --repeats runs, and the ids of
both are compared.

Peak memory is measured in a fresh subprocess per method, after the pool and the queries exist:
* rss_delta: the peak resident set during one selection minus the resident set just before it (Linux
  /proc/self/status VmHWM, reset through /proc/self/clear_refs right before the call), i.e. everything the
  method allocates and touches, C++ scratch and BLAS buffers included; ru_maxrss is reported as a fallback
  where /proc is missing (it cannot be reset, so data generation may mask the delta there);
* traced: tracemalloc's peak of Python/NumPy allocations during the selection (NumPy reports its array buffers
  to tracemalloc; crossicl's C++ scratch is not visible there, only in rss_delta).

Usage: PYTHONPATH=python:build/<dir>/pyext python3 benchmarks/bench_select.py [--repeats 5]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc

import numpy as np

N_POOL, N_QUERIES, DIM, K = 10_000, 2_500, 384, 4


def make_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)

    def unit(n: int) -> np.ndarray:
        x = np.empty((n, DIM), dtype=np.float32)
        for i in range(0, n, 1000):  # chunks keep the float32 temporaries small
            block = rng.standard_normal((min(1000, n - i), DIM), dtype=np.float32)
            block /= np.linalg.norm(block, axis=1, keepdims=True)
            x[i:i + len(block)] = block
        return x

    return unit(N_POOL), unit(N_QUERIES)


def numpy_topk(pool: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = queries @ pool.T                                   # [q, n] float32 (pool rows are unit-norm)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]       # [q, k] unordered
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)            # descending score, then lower id
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(part_scores, order, axis=1)


def crossicl_topk(pool: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    import crossicl

    return crossicl.CosineTopK(pool).select(queries, k)


METHODS = {"numpy": numpy_topk, "crossicl": crossicl_topk}


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def measure_memory(method: str) -> dict:
    """Runs in a fresh subprocess: peak memory of one selection beyond the data."""
    import crossicl  # noqa: F401  (both: the module's own memory stays out of the delta)

    pool, queries = make_data()
    METHODS[method](pool, queries[:10], K)  # first-call costs (thread pools, BLAS buffers) outside the delta
    use_hwm = _reset_peak_rss() and _status_kib("VmHWM") is not None
    base = _status_kib("VmRSS") if use_hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    METHODS[method](pool, queries, K)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak = _status_kib("VmHWM") if use_hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"rss_delta_mib": (peak - base) / 1024, "traced_peak_mib": traced_peak / 2**20,
            "rss_source": "VmHWM" if use_hwm else "ru_maxrss"}


def best_time(fn, repeats: int) -> tuple[float, tuple[np.ndarray, np.ndarray]]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--measure-memory", choices=sorted(METHODS), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure_memory:
        print(json.dumps(measure_memory(args.measure_memory)))
        return

    import crossicl

    pool, queries = make_data()
    sel = crossicl.CosineTopK(pool)  # built once, as a caller would (inverse norms: a [10000] vector)
    sel.select(queries[:10], K)      # warm-up (thread pool start)
    numpy_topk(pool, queries[:10], K)
    t_numpy, (ids_np, scores_np) = best_time(lambda: numpy_topk(pool, queries, K), args.repeats)
    t_ours, (ids_ours, scores_ours) = best_time(lambda: sel.select(queries, K), args.repeats)
    same = int((ids_np == ids_ours).all(axis=1).sum())
    max_diff = float(np.abs(scores_np - scores_ours).max())

    env = dict(os.environ)
    mem = {}
    for m in METHODS:
        res = subprocess.run([sys.executable, __file__, "--measure-memory", m], capture_output=True, text=True,
                             env=env, check=True)
        mem[m] = json.loads(res.stdout.strip().splitlines()[-1])

    print(f"cosine top-{K}: {N_QUERIES} queries x pool {N_POOL} x {DIM} (float32, unit-norm, seed 0), "
          f"{os.cpu_count()} CPUs, best of {args.repeats}")
    print(f"  numpy (matmul + argpartition + sort of {K}): {t_numpy * 1e3:8.1f} ms   "
          f"peak rss +{mem['numpy']['rss_delta_mib']:.1f} MiB, traced {mem['numpy']['traced_peak_mib']:.1f} MiB")
    print(f"  crossicl.CosineTopK.select:                 {t_ours * 1e3:8.1f} ms   "
          f"peak rss +{mem['crossicl']['rss_delta_mib']:.1f} MiB, traced {mem['crossicl']['traced_peak_mib']:.1f} MiB")
    print(f"  (rss from {mem['numpy']['rss_source']}; numpy's traced peak = its [q, n] score, negated copy and "
          f"argpartition index arrays)")
    print(f"  speed-up numpy/crossicl: {t_numpy / t_ours:.2f}x")
    print(f"  same ids: {same}/{N_QUERIES} queries; max |score difference| {max_diff:.2e}")
    if same != N_QUERIES:
        sys.exit("crossicl and numpy disagree on the ids")


if __name__ == "__main__":
    main()
