"""Candidate int8 GEMMs for W8A8 linear layers on SmolLM2-135M's layer shapes, against float32 torch.mm in the
same process.

  python3 benchmarks/int8_gemm.py [--threads 2] [--rows 256,512,1024] [--reps 7]

Shapes (fused as crossicl holds them): qkv 576 -> 960, o 576 -> 576, gate+up 576 -> 3072, down 1536 -> 576,
LM head 576 -> 49152. Candidates:

- f32 mm:          torch.mm(x, w.t()), float32 (the baseline)
- _int_mm:         torch._int_mm(xq, wq.t()) int8 x int8 -> int32 (oneDNN on the CPU); K must be a multiple of 8
                   and N of 8 on CUDA, any shape on the CPU
- _int_mm+scale:   the same plus the int32 -> float32 rescale by the per-token and per-channel scales
- w8a8 full:       per-token dynamic quantisation of x + _int_mm + rescale (what one linear costs)
- int8pack (W8A16): torch._weight_int8pack_mm(x float32, w int8 [N, K], scales [N]) (weight-only int8)
- fbgemm dynamic:  torch.ops.quantized.linear_dynamic (fbgemm, per-tensor activation scale, per-channel weights)

Each figure is the median of --reps timed calls after a warm-up; rates in GOP/s (2 M N K per call), ratios against
the f32 mm of the same shape measured in the same run. The machine may be shared: compare within one run.
"""
from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import torch

SHAPES = [("qkv", 576, 960), ("o", 576, 576), ("gate+up", 576, 3072), ("down", 1536, 576), ("lm_head", 576, 49152)]


def median_seconds(fn: Callable[[], object], reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def quant_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8: scale = max|x| / 127, q = round(x / scale)."""
    s = x.abs().amax(1, keepdim=True).clamp_min(1e-30) / 127
    return torch.round(x / s).clamp_(-127, 127).to(torch.int8), s


def candidates(x: torch.Tensor, w: torch.Tensor) -> dict[str, Callable[[], object]]:
    wq, ws = quant_rows(w)  # [N, K] int8, [N, 1]
    wkn = wq.t().contiguous()  # [K, N] row-major (the default operand is [N, K] row-major, transposed)
    xq, xs = quant_rows(x)
    wsr = ws.view(1, -1)
    out: dict[str, Callable[[], object]] = {
        "f32 mm": lambda: torch.mm(x, w.t()),
        "_int_mm": lambda: torch._int_mm(xq, wq.t()),
        "_int_mm (w [K, N])": lambda: torch._int_mm(xq, wkn),
        "_int_mm+scale": lambda: torch._int_mm(xq, wq.t()).to(torch.float32).mul_(xs).mul_(wsr),
        "w8a8 full": lambda: (lambda q: torch._int_mm(q[0], wq.t()).to(torch.float32).mul_(q[1]).mul_(wsr))(
            quant_rows(x)),
    }
    if hasattr(torch, "_weight_int8pack_mm"):
        sc = ws.view(-1).contiguous()
        out["int8pack (W8A16)"] = lambda: torch._weight_int8pack_mm(x, wq, sc)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # quantized tensors are deprecated in torch 2.13
            qw = torch.quantize_per_channel(w, ws.view(-1).double(), torch.zeros(w.size(0), dtype=torch.long), 0,
                                            torch.qint8)
        packed = torch.ops.quantized.linear_prepack(qw, None)
        out["fbgemm dynamic"] = lambda: torch.ops.quantized.linear_dynamic(x, packed, False)
    except (RuntimeError, AttributeError) as e:
        print(f"fbgemm dynamic unavailable: {e}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rows", default="256,512,1024", help="token rows M, comma-separated")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--no-head", action="store_true", help="skip the LM head shape (the slowest)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} threads, median of {args.reps}")
    print(f"{'shape':<9}{'M':>6}  {'candidate':<20}{'ms':>9}{'GOP/s':>9}{'x f32':>8}")
    for name, k, n in SHAPES:
        if args.no_head and name == "lm_head":
            continue
        w = torch.randn(n, k) * 0.05
        for m in (int(r) for r in args.rows.split(",")):
            x = torch.randn(m, k)
            base = None
            for cand, fn in candidates(x, w).items():
                sec = median_seconds(fn, args.reps)
                base = base or sec
                print(f"{name:<9}{m:>6}  {cand:<20}{sec * 1e3:>9.3f}{2 * m * n * k / sec / 1e9:>9.1f}"
                      f"{base / sec:>7.2f}x")


if __name__ == "__main__":
    main()
