"""Prefill and decode speed of crossicl.Engine vs HF transformers on the same random weights, same process.

The model has SmolLM2-135M's shape (hidden 576, intermediate 1536, 30 layers, 9 heads, 3 kv heads,
vocab 49152, tied embeddings, rope_theta 100000), randomly initialised and saved as an HF directory in float32.

  PYTHONPATH=python:build/<dir>/pyext python3 benchmarks/bench_engine.py [--threads 2] [--prompt 512] [--decode 64]

Prefill: one prompt of --prompt tokens, logits of the last position only (crossicl generate with
max_new_tokens=1; HF forward with logits_to_keep=1). Decode: batch 1, greedy; tokens/s from the difference between
generating 1 + --decode tokens and 1 token from a short prompt. Best of --repeat runs each.
"""
from __future__ import annotations

import argparse
import pathlib
import tempfile
import time

import torch

import crossicl

SMOLLM2_135M = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, vocab_size=49152, max_position_embeddings=2048, rms_norm_eps=1e-5,
                    tie_word_embeddings=True, rope_theta=100000.0)


def best(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--decode", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where to save the random model (default: a temp dir)")
    args = ap.parse_args()

    import transformers
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(args.threads)
    kw = dict(SMOLLM2_135M)
    theta = kw.pop("rope_theta")
    if int(transformers.__version__.split(".")[0]) >= 5:
        kw["rope_parameters"] = {"rope_type": "default", "rope_theta": theta}
    else:
        kw["rope_theta"] = theta
    torch.manual_seed(0)
    hf = LlamaForCausalLM(LlamaConfig(**kw)).eval()

    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(args.dir or tmp)
        hf.save_pretrained(str(path))
        eng = crossicl.Engine(str(path), threads=args.threads)
        g = torch.Generator().manual_seed(1)
        prompt = torch.randint(3, 49152, (args.prompt,), generator=g).tolist()
        short = prompt[:8]
        n_dec = args.decode

        # warm-up both
        eng.generate([short], max_new_tokens=2, stop=[], stop_at_eos=False)
        with torch.inference_mode():
            hf(torch.tensor([short]), logits_to_keep=1)

        def cx_prefill():
            eng.generate([prompt], max_new_tokens=1, stop=[], stop_at_eos=False)

        def cx_gen(n):
            return lambda: eng.generate([short], max_new_tokens=n, stop=[], stop_at_eos=False)

        def hf_prefill():
            with torch.inference_mode():
                hf(torch.tensor([prompt]), logits_to_keep=1)

        def hf_gen(n):
            def run():
                with torch.inference_mode():
                    hf.generate(torch.tensor([short]), max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                pad_token_id=0)
            return run

        cx_p = best(cx_prefill, args.repeat)
        hf_p = best(hf_prefill, args.repeat)
        cx_d = best(cx_gen(1 + n_dec), args.repeat) - best(cx_gen(1), args.repeat)
        hf_d = best(hf_gen(1 + n_dec), args.repeat) - best(hf_gen(1), args.repeat)

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, threads {args.threads}, "
          f"model SmolLM2-135M shape (random, float32)")
    print(f"{'':10s} {'crossicl':>12s} {'HF':>12s} {'ratio':>8s}")
    cx_pt, hf_pt = args.prompt / cx_p, args.prompt / hf_p
    cx_dt, hf_dt = n_dec / cx_d, n_dec / hf_d
    print(f"{'prefill':10s} {cx_pt:10.1f}/s {hf_pt:10.1f}/s {cx_pt / hf_pt:7.2f}x   ({args.prompt}-token prompt)")
    print(f"{'decode':10s} {cx_dt:10.1f}/s {hf_dt:10.1f}/s {cx_dt / hf_dt:7.2f}x   (batch 1, {n_dec} tokens)")


if __name__ == "__main__":
    main()
