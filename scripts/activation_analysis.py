#!/usr/bin/env python3
"""Activation similarity vs cross-task gain for SmolLM2-135M on the paper's five targets, written as markdown.

  PYTHONPATH=python:build/gguf/pyext python3 scripts/activation_analysis.py --items 20 \\
      --records build/results/smollm2-135m.records.jsonl --out docs/results/activation-analysis.md

For every target, the first --items test items and every source: the paper's cross-task 1-shot prompt
(`totally-cross-sim`, paper style) is run once through the model; at every hidden layer (0 = embeddings ..
n_layers = final norm) the cosine of the mean hidden state over the source demonstration's input tokens (label
cut off) and over the target input tokens, and of the two groups' last tokens (crossicl.analysis). Joined with
the measured outcomes of the same model from --records (the runner's record format: records.jsonl of
`crossicl run examples/smollm2_full_grid.toml`, or of any run with paper-style zero-shot and cross-task cells):
pair level (gain = cross-task accuracy - zero-shot accuracy per (target, source), all items of the records) and
item level (correct or not). Pearson and Spearman with 95% percentile bootstrap intervals per layer. Then the
label-free source recommendation (crossicl.analysis.rank_sources) scored against SmolLM2's gains and against
the pack's published LLaMA-2 7B per-source gains (ARC-Challenge and financial_phrasebank; a different model).
Pooled states are cached under --cache, so a rerun only recomputes what changed.
"""
from __future__ import annotations

import argparse
import pathlib
import platform
import sys
import time

import numpy as np
import pandas as pd

import crossicl
from crossicl import analysis as A
from crossicl import records, results


def fmt_ci(v: float, lo: float, hi: float) -> str:
    return "n/a" if np.isnan(v) else f"{v:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def corr_table(c: pd.DataFrame, layers: list[int]) -> str:
    lines = ["| layer | Pearson r [95% CI] | Spearman rho [95% CI] |", "|---:|---|---|"]
    for _, r in c[c["layer"].isin(layers)].iterrows():
        lines.append(f"| {int(r.layer)} | {fmt_ci(r.pearson_r, r.pearson_lo, r.pearson_hi)} | "
                     f"{fmt_ci(r.spearman_rho, r.spearman_lo, r.spearman_hi)} |")
    return "\n".join(lines)


def within(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """Subtract the per-(layer, target) mean of each column: correlation within targets only."""
    out = df.copy()
    for c in cols:
        out[c] = out[c] - out.groupby(["layer", "target"])[c].transform("mean")
    return out


def as_fractions(g: pd.DataFrame) -> pd.DataFrame:
    """Accuracies and gains on a 0-1 scale, as this page reports them (crossicl.analysis gives percent and
    points); the correlations do not depend on the scale."""
    return g.assign(**{c: g[c] / 100.0 for c in ("acc", "acc_zero", "gain")})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pack", default="../shared/paper")
    ap.add_argument("--records", default="build/results/smollm2-135m.records.jsonl")
    ap.add_argument("--scorer", default="paper_eval", choices=list(records.SCORERS))
    ap.add_argument("--scoring", default="generate", choices=list(records.SCORING_PREFIXES),
                    help="which reading of the records' predictions gives the outcomes (decode.scoring of the run)")
    ap.add_argument("--items", type=int, default=20, help="test items per target for the similarities")
    ap.add_argument("--n-per-source", type=int, default=32, help="source inputs sampled for rank_sources")
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--cache", default="build/analysis-cache")
    ap.add_argument("--out", default="docs/results/activation-analysis.md")
    ap.add_argument("--plots", default="docs/results", help="folder for the PNGs ('' for none)")
    args = ap.parse_args()

    t0 = time.perf_counter()
    pack = crossicl.paper.Pack(args.pack)
    model_path = crossicl.models.smollm2_path()
    engine = crossicl.Engine(model_path, dtype=args.dtype, threads=args.threads)
    n_layers = engine.config.n_layers
    layers = list(range(n_layers + 1))
    rec = A.records_frame(results.by_scoring(records.load_records(args.records), args.scoring), scorer=args.scorer)
    gains = as_fractions(A.pair_gains(rec))
    items_tab = A.item_table(rec)

    # --- similarities of the cross-task prompts
    keys, prompts = [], []
    for t in pack.targets:
        for it in pack.target_items(t)[: args.items]:
            for s in pack.sources:
                keys.append({"target": t, "source": s, "id": it.id})
                prompts.append(pack.prompt({"target": t, "method": "totally-cross-sim", "source": s, "shots": 1,
                                            "seed": None, "id": it.id, "models": []}))
    print(f"{len(prompts)} prompts, {len(layers)} layers, model {model_path.name} ({args.dtype})", flush=True)
    res = A.activation_similarity(engine, prompts, layers=layers, tasks=pack.tasks, batch_size=args.batch,
                                  cache=args.cache)
    t_sim = time.perf_counter() - t0
    print(f"similarities done in {t_sim:.0f} s ({res.n_computed} computed)", flush=True)
    sim = res.to_frame(keys)

    # --- pair level: mean similarity over the items of a pair vs the pair's gain
    pair = sim.groupby(["layer", "target", "source"], as_index=False)[["similarity", "similarity_last"]].mean()
    pair = pair.merge(gains, on=["target", "source"], how="inner")
    kw = dict(n_resamples=args.resamples, seed=args.seed)
    c_pair = A.layer_correlations(pair, y="gain", **kw)
    c_pair_last = A.layer_correlations(pair, x="similarity_last", y="gain", **kw)
    pair_w = within(pair, ["similarity", "similarity_last", "gain"])
    c_pair_w = A.layer_correlations(pair_w, y="gain", **kw)
    # --- item level: similarity of the item's prompt vs whether it was answered correctly
    item = sim.merge(items_tab, on=["target", "source", "id"], how="inner")
    c_item = A.layer_correlations(item, y="correct", **kw)
    c_item_last = A.layer_correlations(item, x="similarity_last", y="correct", **kw)
    c_item_gain = A.layer_correlations(item.dropna(subset=["item_gain"]), y="item_gain", **kw)
    item_w = within(item, ["similarity", "correct"])
    c_item_w = A.layer_correlations(item_w, y="correct", **kw)

    # --- source recommendation without labels
    rng = np.random.default_rng(args.seed)
    pools, no_pool = {}, []
    for s in pack.sources:
        try:
            pool = pack.source_pool(s)
        except crossicl.LoadError:  # the pack leaves some source pools out (boolq)
            no_pool.append(s)
            continue
        pick = sorted(rng.choice(len(pool), size=min(args.n_per_source, len(pool)), replace=False))
        pools[s] = [pack.tasks.render_input(s, pool[i].fields) for i in pick]
    ranks = []
    for t in pack.targets:
        inputs = [it.extra["input"] for it in pack.target_items(t)[: args.items]]
        r = A.rank_sources(engine, inputs, pools, layers=layers, n_per_source=args.n_per_source, seed=args.seed,
                           batch_size=args.batch, cache=args.cache)
        ranks.append(r.assign(target=t))
    ranks = pd.concat(ranks, ignore_index=True)
    ev_smol = A.evaluate_ranking(ranks, gains)
    llama = as_fractions(A.paper_pair_gains(pathlib.Path(args.pack) / "golden" / "accuracy.csv", scorer=args.scorer))
    ev_llama = A.evaluate_ranking(ranks, llama)
    # The in-prompt pair similarity as a ranking too (it needs the prompts, still no labels).
    ev_prompt = A.evaluate_ranking(pair, gains)
    # Reference points: SmolLM2's own gains as a predictor of LLaMA-2's (how transferable source rankings are).
    both = gains.merge(llama, on=["target", "source"], suffixes=("_smol", "_llama"))
    wall = time.perf_counter() - t0

    # --- figures
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    figs = []
    if args.plots:
        import matplotlib
        matplotlib.use("Agg")
        pdir = pathlib.Path(args.plots)
        pdir.mkdir(parents=True, exist_ok=True)
        lc = pd.concat([c_pair.assign(level="pair"), c_pair_w.assign(level="pair within target"),
                        c_item.assign(level="item (correct)")])
        f = A.plot_layer_correlation(lc, stats_=("spearman",), hue="level",
                                     title="SmolLM2-135M: similarity vs outcome, Spearman per layer")
        f.savefig(pdir / "activation-layer-correlation.png", dpi=90)
        peak = A.peak_layer(c_pair)
        f2 = A.plot_similarity_vs_gain(pair, layer=peak,
                                       title=f"SmolLM2-135M: pair similarity vs gain (layer {peak})")
        f2.savefig(pdir / "activation-similarity-vs-gain.png", dpi=90)
        figs = ["activation-layer-correlation.png", "activation-similarity-vs-gain.png"]

    # --- markdown
    show = sorted(set(list(range(0, n_layers + 1, 3)) + [n_layers, A.peak_layer(c_pair), A.peak_layer(c_item)]))
    pk = {name: (A.peak_layer(c), c.set_index("layer").loc[A.peak_layer(c)])
          for name, c in [("pair", c_pair), ("pair_last", c_pair_last), ("pair_w", c_pair_w), ("item", c_item),
                          ("item_last", c_item_last), ("item_gain", c_item_gain), ("item_w", c_item_w)]}
    ev_s_mean = ev_smol.groupby("layer")["rho"].mean()
    ev_l_mean = ev_llama.groupby("layer")["rho"].mean()
    ev_p_mean = ev_prompt.groupby("layer")["rho"].mean()
    best_rank_layer = int(ev_s_mean.idxmax())
    L = []
    w = L.append
    w("# Activation similarity and cross-task gain: SmolLM2-135M-Instruct\n")
    w("Regenerate (one forward per prompt; pooled states are cached under --cache, so a rerun is fast):\n")
    w("```sh\nPYTHONPATH=python:build/dev/pyext python3 scripts/activation_analysis.py --items {} "
      "--n-per-source {} --scoring {} \\\n    --records {} --out {}\n```\n".format(
          args.items, args.n_per_source, args.scoring, args.records, args.out))
    w(f"Model `{model_path.name}` ({args.dtype}), {n_layers} blocks, hidden states 0 (embeddings) .. {n_layers} "
      f"(final norm). Prompts: the paper's cross-task 1-shot prompt (`totally-cross-sim`, paper style) of the "
      f"first {args.items} test items of each of the 5 targets x 10 sources = {len(prompts)} prompts, one forward "
      f"each. Similarity: cosine of the mean hidden state over the source demonstration's input tokens (label "
      f"cut after its `Label:`/`Answer:` cue) and over the target-input tokens; \"last\" uses the last token of "
      f"each group instead (the source cue's `:` and the prompt's final `:`). Outcomes: {args.records} "
      f"(scoring `{args.scoring}`, scorer `{args.scorer}`): gain = cross-task accuracy - zero-shot accuracy of the pair over all "
      f"{int(gains['n'].iloc[0])} recorded items; item outcome = correct (0/1). Intervals: 95% percentile "
      f"bootstrap, {args.resamples} resamples, seed {args.seed} (crossicl.analysis.correlate). "
      f"Python {platform.python_version()}, {platform.machine()}.\n")

    w("## Findings\n")

    def excl0(c, stat="spearman"):
        """Layers whose 95% interval of `stat` excludes 0, as 'layer (sign)'."""
        c = c.dropna(subset=[f"{stat}_lo"])
        return ", ".join(f"{int(r.layer)} ({'+' if r[f'{stat}_lo'] > 0 else '-'})" for _, r in c.iterrows()
                         if r[f"{stat}_lo"] > 0 or r[f"{stat}_hi"] < 0) or "none"
    g1 = pair[pair["layer"] == 0]
    se = np.sqrt(g1.acc * (1 - g1.acc) / g1.n + g1.acc_zero * (1 - g1.acc_zero) / g1.n).mean()
    w(f"- Layers whose 95% Spearman interval excludes 0 (sign): pair level pooled: {excl0(c_pair)}; pair level "
      f"within targets: {excl0(c_pair_w)}; pair level last token: {excl0(c_pair_last)}; item level (correct): "
      f"{excl0(c_item)}; item level within targets: {excl0(c_item_w)}.")
    w(f"- SmolLM2's gains are small and noisy: across the 50 pairs the gain has mean {g1.gain.mean():+.3f} and "
      f"SD {g1.gain.std():.3f}, while the binomial standard error of one pair's accuracy difference "
      f"({int(g1.n.iloc[0])} items each, zero-shot and cross-task, treated as independent) is about {se:.3f}. "
      f"Most of the spread between sources is sampling noise, which caps any correlation with it.")
    def s(name, stat="spearman_rho"):
        layer, r = pk[name]
        lo, hi = ("spearman_lo", "spearman_hi") if stat == "spearman_rho" else ("pearson_lo", "pearson_hi")
        return f"layer {layer}: {fmt_ci(r[stat], r[lo], r[hi])}"
    w(f"- Pair level (50 (target, source) pairs), similarity vs gain, Spearman peaks at {s('pair')}; Pearson "
      f"peaks at {s('pair', 'pearson_r')}. At the final norm (layer {n_layers}): "
      f"{fmt_ci(*c_pair.set_index('layer').loc[n_layers, ['spearman_rho', 'spearman_lo', 'spearman_hi']])}.")
    w(f"- The same within targets (target means of similarity and gain removed, so the link cannot come from "
      f"targets that are both easy and similar to everything): Spearman peaks at {s('pair_w')}.")
    w(f"- Last-token variant, pair level: Spearman peaks at {s('pair_last')}.")
    w(f"- Item level ({len(item) // len(layers)} prompts), similarity vs correct: Spearman peaks at "
      f"{s('item')}; within targets {s('item_w')}; last-token variant {s('item_last')}; vs per-item gain "
      f"(correct - zero-shot correct, -1/0/1) {s('item_gain')}.")
    w(f"- Label-free source ranking (rank_sources: each text embedded alone, mean-pooled; {args.n_per_source} "
      f"inputs per source; the first {args.items} target inputs): mean over the 5 targets of the Spearman "
      f"correlation between the ranking and SmolLM2's measured per-source gains is "
      f"{ev_s_mean.max():+.3f} at its best layer ({best_rank_layer}) and {ev_s_mean.loc[n_layers]:+.3f} at the "
      f"final norm; against the pack's LLaMA-2 7B gains (2 targets, a different model) "
      f"{ev_l_mean.loc[best_rank_layer]:+.3f} at layer {best_rank_layer}, best {ev_l_mean.max():+.3f} "
      f"(layer {int(ev_l_mean.idxmax())}). Sources without a pool in the pack, so not ranked: "
      f"{', '.join(no_pool) or 'none'}. The in-prompt pair similarity as a ranking: best mean rho "
      f"{ev_p_mean.max():+.3f} (layer {int(ev_p_mean.idxmax())}).")
    if len(both):
        from scipy import stats
        rr = [stats.spearmanr(g.gain_smol, g.gain_llama)[0] for _, g in both.groupby("target")]
        w(f"- For scale: SmolLM2's own measured gains rank the sources for LLaMA-2 7B with mean rho "
          f"{np.mean(rr):+.3f} over the 2 targets ({', '.join(f'{x:+.2f}' for x in rr)}).")
    w("- Each bootstrap interval is per layer; with "
      f"{len(layers)} layers examined, the peak layer is selected after the fact, so its interval is optimistic.\n")

    w("## Pair level: mean similarity of a (target, source) pair vs its gain\n")
    w("All five targets pooled:\n")
    w(corr_table(c_pair, show) + "\n")
    w("Within targets (per-target means removed):\n")
    w(corr_table(c_pair_w, show) + "\n")
    w("Last-token variant (layer 0 is n/a: both groups end in the same `:` token, whose embedding is the "
      "same, so the cosine is 1 for every prompt):\n")
    w(corr_table(c_pair_last, show) + "\n")
    w("## Item level: similarity of an item's prompt vs correct\n")
    w(corr_table(c_item, show) + "\n")
    w("Within targets:\n")
    w(corr_table(c_item_w, show) + "\n")
    w("## Per target, at the pair-level peak layer\n")
    peak = pk["pair"][0]
    pp = pair[pair["layer"] == peak]
    w("| target | zero-shot acc | mean gain | sources by similarity (high to low) | sources by gain (high to low) |")
    w("|---|---:|---:|---|---|")
    for t, g in pp.groupby("target"):
        w(f"| {t} | {g.acc_zero.iloc[0]:.2f} | {g.gain.mean():+.3f} | "
          f"{', '.join(g.sort_values('similarity', ascending=False).source)} | "
          f"{', '.join(g.sort_values('gain', ascending=False).source)} |")
    w("")
    w("## Source recommendation without labels (rank_sources)\n")
    w("Spearman rho between the ranking and the measured per-source gains, per target:\n")
    w("| layer | " + " | ".join(pack.targets) + " | mean (SmolLM2) | LLaMA-2 7B: ARC-C | LLaMA-2 7B: FPB |")
    w("|---:|" + "---:|" * (len(pack.targets) + 3))
    for layer in show:
        e = ev_smol[ev_smol.layer == layer].set_index("target")["rho"]
        el = ev_llama[ev_llama.layer == layer].set_index("target")["rho"]
        w(f"| {layer} | " + " | ".join(f"{e.get(t, np.nan):+.2f}" for t in pack.targets) +
          f" | {e.mean():+.3f} | {el.get('ARC-Challenge', np.nan):+.2f}"
          f" | {el.get('financial_phrasebank', np.nan):+.2f} |")
    w("")
    e = ev_smol[ev_smol.layer == best_rank_layer]
    w(f"Top-1 recommendation at layer {best_rank_layer}: gain of the top-ranked source vs the best and the mean "
      f"source (SmolLM2):\n")
    w("| target | top-1 source | its gain | best gain | mean gain |\n|---|---|---:|---:|---:|")
    for _, r in e.iterrows():
        top = ranks[(ranks.layer == best_rank_layer) & (ranks.target == r.target) & (ranks["rank"] == 1)].source.iloc[0]
        w(f"| {r.target} | {top} | {r.top1_gain:+.3f} | {r.best_gain:+.3f} | {r.mean_gain:+.3f} |")
    w("")
    w("The LLaMA-2 columns use the pack's published `totally-cross-sim` 1-shot accuracies of llama-2-7b "
      "(golden/accuracy.csv, 500 items, the only targets with per-source results in the pack); the similarities "
      "are SmolLM2's, so this checks whether SmolLM2's geometry ranks sources the way they helped a different, "
      "larger model.\n")
    if figs:
        w("## Figures\n")
        for f in figs:
            w(f"![{f}]({f})\n")
    w(f"Wall time of the run that wrote this page: {wall:.0f} s on {args.threads} threads of a shared 2-core "
      f"machine; similarities {t_sim:.0f} s, {res.n_computed} of {len(prompts)} prompts computed, the others "
      f"read from the cache.")
    out.write_text("\n".join(L) + "\n", encoding="utf-8")
    print(f"wrote {out} in {wall:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
