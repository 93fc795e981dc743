"""crossicl.Engine on a CUDA GPU next to HF transformers on the same GPU and weights: parity, then speed.

  python3 benchmarks/cuda_engine.py [--layers 30]

1. Parity: a random tiny GQA LLaMA saved as an HF dir; crossicl on cuda vs HF on cuda (f32 logits, 32 greedy
   tokens, hidden states of every layer), and crossicl cuda vs crossicl cpu.
2. Speed: a random LLaMA of SmolLM2-135M's shape in bf16: prefill tokens/s (batch of 16 prompts x 512 tokens)
   and greedy decode tokens/s at batch 1 and 16, crossicl vs HF (one generate call), same process.
Needs torch with CUDA and transformers; exits 2 when no GPU is visible.

Status (2026-11-28): not yet run to completion. On the lent H200 image (Python 3.12, torch 2.11+cu130, Debian
bookworm Eigen/fmt/nlohmann/sentencepiece packages unpacked beside it) the package built but `import crossicl`
segfaulted while creating the extension module; the cause is not established. CPU/CUDA agreement of the engine
sources was checked there once with a throw-away C++ driver instead.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "python"))
import crossicl  # noqa: E402
from hf_fixtures import save_random_llama  # noqa: E402


def sync():
    torch.cuda.synchronize()


def parity(tmp: pathlib.Path) -> None:
    d = tmp / "tiny"
    hf = save_random_llama(d, num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False,
                           rope_theta=500000.0).cuda()
    gpu = crossicl.Engine(d, device="cuda")
    cpu = crossicl.Engine(d, device="cpu")
    rng = np.random.default_rng(0)
    ids = [int(x) for x in rng.integers(3, 128, size=64)]
    with torch.no_grad():
        out = hf(torch.tensor([ids], device="cuda"), output_hidden_states=True)
    ref = out.logits[0].float().cpu().numpy()
    ours = gpu.logits(ids)
    print(f"parity f32: max|logits cuda - HF cuda| = {np.abs(ours - ref).max():.2e}, "
          f"max|cuda - cpu| = {np.abs(ours - cpu.logits(ids)).max():.2e}")
    hs = gpu.hidden_states([ids], layers=list(range(len(out.hidden_states))), pooling="none")[0]
    ref_hs = np.stack([h[0].float().cpu().numpy() for h in out.hidden_states])
    print(f"parity f32: max|hidden states - HF| over {len(out.hidden_states)} layers = {np.abs(hs - ref_hs).max():.2e}")
    with torch.no_grad():
        gen = hf.generate(torch.tensor([ids[:8]], device="cuda"), max_new_tokens=32, do_sample=False)
    g = gpu.generate([ids[:8]], max_new_tokens=32, stop=[], stop_at_eos=False)[0].token_ids
    print(f"parity: 32 greedy tokens identical to HF: {g == gen[0, 8:].tolist()}; "
          f"to crossicl cpu: {g == cpu.generate([ids[:8]], max_new_tokens=32, stop=[], stop_at_eos=False)[0].token_ids}")


def speed(tmp: pathlib.Path, layers: int) -> None:
    d = tmp / "smol"
    shape = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=layers, num_attention_heads=9,
                 num_key_value_heads=3, vocab_size=49152, max_position_embeddings=2048, tie_word_embeddings=True,
                 rope_theta=100000.0)
    hf = save_random_llama(d, dtype=torch.bfloat16, **shape).to(device="cuda", dtype=torch.bfloat16)
    eng = crossicl.Engine(d, device="cuda", dtype="bfloat16", max_batch_tokens=8192)
    rng = np.random.default_rng(1)
    prompts = [[int(x) for x in rng.integers(3, 49152, size=512)] for _ in range(16)]

    def best(fn, n=3):
        fn()
        times = []
        for _ in range(n):
            sync()
            t = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t)
        return min(times)

    t_cx = best(lambda: eng.generate(prompts, max_new_tokens=1, stop=[], stop_at_eos=False))
    batch = torch.tensor(prompts, device="cuda")
    with torch.no_grad():
        t_hf = best(lambda: hf(batch, use_cache=False))
    tok = 16 * 512
    print(f"prefill 16x512 bf16: crossicl {tok / t_cx:,.0f} tok/s, HF forward {tok / t_hf:,.0f} tok/s, "
          f"ratio {t_hf / t_cx:.2f}x")
    for bs in (1, 16):
        short = [p[:32] for p in prompts[:bs]]
        n_new = 64
        t_cx = best(lambda: eng.generate(short, max_new_tokens=n_new, stop=[], stop_at_eos=False), 2)
        sb = torch.tensor(short, device="cuda")
        with torch.no_grad():
            t_hf = best(lambda: hf.generate(sb, max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False), 2)
        print(f"decode batch {bs} (32-token prompt + {n_new} tokens, bf16): crossicl {bs * n_new / t_cx:,.0f} tok/s, "
              f"HF generate {bs * n_new / t_hf:,.0f} tok/s, ratio {t_hf / t_cx:.2f}x")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=30)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device visible", file=sys.stderr)
        return 2
    print(f"device {torch.cuda.get_device_name()}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        parity(pathlib.Path(tmp))
        speed(pathlib.Path(tmp), args.layers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
