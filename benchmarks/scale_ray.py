"""How a grid scales on Ray workers, and how many workers one driver can feed, against the local executor in the
same run.

  PYTHONPATH=python:build/<dir>/pyext python3 benchmarks/scale_ray.py [--items 16] [--workers 1,2]

The grid: stories260K on the paper pack, 5 targets x (zero-shot + cross-task from 4 sources), paper prompts,
published demos, 6 new tokens, label scores, batches of 8. Each run starts from an empty run folder; a Ray run's
time starts once its actors are up, and includes loading the model in each; the Ray instance is started once.

1. Engine runs: --items items per target, by the local executor (one engine, 1 thread), then by Ray with
   --workers workers (one engine of 1 thread each): prompts/s, ratio to the local run.
2. Waiting engine: --wait-items items per target and an engine that takes --wait-ms per batch without using a
   CPU (as a GPU call would), locally and on 1, 2 and 4 workers (half a CPU each): what the pool's scheduling
   gives where the machine's cores are not the limit.
3. The driver's own limit: --stub-items items per target and an engine that answers at once, locally (planning,
   scoring and writing records alone) and on 2 workers (plus Ray's round trips). Its records/s is the most one
   driver absorbs; divided by one worker's prompts/s of step 1, the workers it can keep busy on that model.

Every run's records are checked against the local run's of the same step (same keys; same predictions).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import secrets
import shutil
import sys
import tempfile
import time

# Before ray is imported: no usage stats, the instance on 127.0.0.1 only, a token of its own.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(16))

import crossicl  # noqa: E402
from crossicl.executors import LocalExecutor  # noqa: E402
from crossicl.ray_executor import RayExecutor  # noqa: E402

SHARED = pathlib.Path(os.environ.get("CROSSICL_TEST_DATA", pathlib.Path(__file__).resolve().parents[2] / "shared"))


def grid(out: pathlib.Path, items: int) -> dict:
    stories = SHARED / "models" / "stories260K"
    return {"name": "scale", "out": str(out), "data": {"pack": str(SHARED / "paper"), "items": items},
            "models": [{"name": "stories260K", "path": str(stories / "stories260K.bin"),
                        "tokenizer": str(stories / "tok512.model"), "threads": 1}],
            "grid": {"methods": ["zero-shot", "cross-task"], "sources": ["ARC-Easy", "ag_news", "sst2", "mnli"]},
            "selection": {"selector": "published"}, "prompt": {"style": "paper"},
            "decode": {"max_new_tokens": 6, "batch": 8, "truncation": "left", "label_scores": True}}


class _Answer:
    text, truncated, finish_reason = " A", 0, "length"


class _Score:
    sum = -1.0


class _Tokenizer:
    def encode_batch(self, prompts):
        return [[1] * (1 + len(p) // 4) for p in prompts]


class StubEngine:
    """Answers every prompt after ``wait`` seconds per batch (0: at once), using no CPU meanwhile."""
    tokenizer = _Tokenizer()

    def __init__(self, wait: float):
        self.wait = wait

    def clear_cache(self):
        pass

    def generate(self, ids, **_):
        time.sleep(self.wait)
        return [_Answer() for _ in ids]

    def score_batch(self, prompts, conts, **_):
        return [[_Score() for _ in c] for c in conts]


class StubOpener:
    def __init__(self, wait: float = 0.0):
        self.wait = wait

    def __call__(self, spec):
        return StubEngine(self.wait)


def timed_run(cfg: dict, executor) -> tuple[float, list[dict]]:
    exp = crossicl.Experiment(cfg)
    if isinstance(executor, RayExecutor):
        executor.start(wait=True)  # the actors' start is not the run's speed
    t0 = time.perf_counter()
    exp.run(progress=False, executor=executor)
    seconds = time.perf_counter() - t0
    recs = [json.loads(x) for x in (exp.out / "records.jsonl").read_text(encoding="utf-8").split("\n") if x]
    return seconds, recs


def same(recs: list[dict], ref: list[dict]) -> bool:
    def key(r):
        return crossicl.records.record_key(r)
    a = {key(r): (r["pred"], r["correct_paper_eval"]) for r in recs}
    return len(recs) == len(ref) and a == {key(r): (r["pred"], r["correct_paper_eval"]) for r in ref}


def step(title: str, unit: str, tmp: pathlib.Path, items: int, runs: list[tuple[str, object]]) -> list[float]:
    """Runs the grid with each (name, executor) in turn (a RayExecutor is closed after its run), prints a table
    with the ratio of each rate to the first run's; returns the rates."""
    print(f"\n{title}")
    print(f"{'executor':<36} {unit + 's':>8} {'seconds':>8} {unit + 's/s':>10} {'ratio':>6}  records = first's")
    rates, ref = [], None
    for i, (name, executor) in enumerate(runs):
        seconds, recs = timed_run(grid(tmp / f"{title[:5]}-{i}", items), executor)
        if isinstance(executor, RayExecutor):
            executor.close()
        ref = recs if ref is None else ref
        rates.append(len(recs) / seconds)
        print(f"{name:<36} {len(recs):>8} {seconds:>8.2f} {rates[-1]:>10.1f} {rates[-1] / rates[0]:>6.2f}  "
              f"{same(recs, ref)}")
    return rates


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=16, help="test items per target of the engine runs")
    ap.add_argument("--workers", default="1,2", help="Ray worker counts of the engine runs")
    ap.add_argument("--wait-items", type=int, default=40, help="test items per target of the waiting-engine runs")
    ap.add_argument("--wait-ms", type=float, default=50.0, help="the waiting engine's time per batch")
    ap.add_argument("--stub-items", type=int, default=200, help="test items per target of the driver-limit runs")
    args = ap.parse_args()
    import ray

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="crossicl-scale-"))
    t0 = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, _temp_dir=str(tmp / "ray"), logging_level="ERROR",
             log_to_driver=False)
    print(f"Ray {ray.__version__} up in {time.perf_counter() - t0:.1f} s; {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}; python {sys.version.split()[0]}")
    workers = [int(x) for x in args.workers.split(",")]
    engine = step("1. engine runs (stories260K)", "prompt", tmp, args.items,
                  [("local, 1 engine x 1 thread", LocalExecutor())]
                  + [(f"ray, {w} worker(s) x 1 thread", RayExecutor(workers=w)) for w in workers])
    wait = StubOpener(args.wait_ms / 1000)
    step(f"2. waiting engine ({args.wait_ms:.0f} ms per batch of 8, no CPU)", "prompt", tmp, args.wait_items,
         [("local", LocalExecutor(opener=wait))]
         + [(f"ray, {w} worker(s)", RayExecutor(workers=w, cpus_per_worker=0.5, opener=wait)) for w in (1, 2, 4)])
    driver = step("3. the driver's limit (an engine that answers at once)", "record", tmp, args.stub_items,
                  [("local", LocalExecutor(opener=StubOpener())),
                   ("ray, 2 workers", RayExecutor(workers=2, opener=StubOpener()))])
    if 1 in workers:
        per_worker = engine[1 + workers.index(1)]
        print(f"\none stories260K worker: {per_worker:.1f} prompts/s; one driver absorbs {driver[1]:.0f} records/s "
              f"through Ray: about {driver[1] / per_worker:.0f} such workers per driver at full load")
    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
