"""Sections of ``crossicl report`` for a run that read its predictions several ways (decode.scoring with
"label" and "label_calibrated", crossicl.records.SCORING_PREFIXES): per scoring, accuracy per cell with Wilson
intervals, the headline gain, the authors' pooled paired t-test per source, the pseudo-label table and a heatmap;
then a comparison with the paper's LLaMA-2 7B figures, written from the numbers.

A stopped run (decode.order = "items" leaves every cell with its first items) is reported on the items that
every cell of a target has, so that all the cells of a target are compared on the same items.
"""
from __future__ import annotations

import json
import math
import pathlib
from typing import Any

from . import _crossicl, paper, plots
from .results import CROSS_METHODS, by_scoring, headline_gain, pooled_ttest, scorings_in, summary

SCORING_NAMES = {
    "generate": "greedy answer (first line of 10 generated tokens)",
    "label": "arg-max label, summed log-prob of the label's tokens",
    "label_first": "arg-max label, log-prob of the label's first token (the paper's force_decode)",
    "calibrated": "arg-max label after contextual calibration (summed log-prob)",
    "calibrated_first": "arg-max label after contextual calibration (first token)",
}

PAPER_7B = {"headline_gain": 106.31, "significant_sources": "all 10",
            "pseudo_k4_seed0": {"ARC-Challenge": (51.2, 51.6), "financial_phrasebank": (60.48, 75.25)}}
"""LLaMA-2 7B in the paper's published files (fixture README section 12, golden/accuracy.csv; Eval scorer): the
headline gain in percent, the sources whose pooled t-test is significant, and (pseudo-label, gold-label) 4-shot
accuracy at seed 0 on the two golden targets."""

PSEUDO_METHODS = ("zero-shot", "in-task", "pseudo-label", "pseudo-label-true")


def common_items(df):
    """The records of the items that every cell of their (model, target) has, and how many items that is per
    target ({target: n}). A complete run is returned whole."""
    import pandas as pd
    keep = []
    counts = {}
    for (_, target), g in df.groupby(["model", "target"], sort=True):
        cells = g.groupby(["method", g["source"].fillna(""), "k", g["seed"].fillna(-1)])["id"]
        shared = set.intersection(*[set(ids) for _, ids in cells])
        keep.append(g[g["id"].isin(shared)])
        counts[target] = len(shared)
    return pd.concat(keep) if keep else df.iloc[:0], counts


def _label(row) -> str:
    if row.method in CROSS_METHODS:
        return f"cross-task <- {row.source}"
    return row.method if row.k in (0, 1) or row.method == "in-task" else f"{row.method} (k={row.k})"


def _cell_table(s) -> list[str]:
    """Cells x targets with "accuracy [lo, hi]", and the mean over targets."""
    targets = sorted(s["target"].unique())
    s = s.assign(_row=[_label(r) for r in s.itertuples()])
    order = list(dict.fromkeys(sorted(s["_row"], key=lambda x: (not x.startswith("zero"), x.startswith("cross"), x))))
    lines = ["| cell | " + " | ".join(targets) + " | mean |", "|:---|" + "---:|" * (len(targets) + 1)]
    for row in order:
        sub = s[s["_row"] == row].groupby("target").agg(acc=("accuracy", "mean"), lo=("ci_lo", "mean"),
                                                         hi=("ci_hi", "mean"))
        cells = [f"{sub.acc[t]:.1f} [{sub.lo[t]:.1f}, {sub.hi[t]:.1f}]" if t in sub.index else "" for t in targets]
        mean = sub.acc.mean() if len(sub) == len(targets) else math.nan
        lines.append(f"| {row} | " + " | ".join(cells) + f" | {'' if math.isnan(mean) else f'{mean:.1f}'} |")
    return lines


def _test_set_sizes(run: pathlib.Path) -> dict[str, int]:
    """Test items per target of the run's data (its config.json: the pack's targets, after data.skip_items and
    data.items), so a report of a stopped run says how much of each test set it covers; {} when unknown."""
    try:
        config = json.loads((run / "config.json").read_text(encoding="utf-8"))
        pack_dir = config["data"]["pack"]
        if not pack_dir:
            return {}
        pack = paper.Pack(pack_dir)
        skip, n = int(config["data"].get("skip_items", 0)), int(config["data"].get("items", 0))
        return {t: len(pack.target_items(t)[skip:][: n or None]) for t in pack.targets}
    except (OSError, ValueError, KeyError, TypeError, RuntimeError):
        return {}


def _chance(n_labels: dict[str, int]) -> list[str]:
    return [f"{t}: {100 / n:.1f}" for t, n in sorted(n_labels.items())]


def scoring_sections(df, out: pathlib.Path, run: pathlib.Path, *, scorer: str = "paper_eval",
                     image_prefix: str = "") -> tuple[list[str], list[pathlib.Path]]:
    """(markdown lines, files written) of the scoring sections; nothing for a run that only generated."""
    modes = scorings_in(df)
    if modes == ["generate"]:
        return [], []
    d, counts = common_items(df)
    models = sorted(d["model"].unique())
    cross = next((m for m in CROSS_METHODS if m in set(d["method"])), None)
    n_labels = {r["target"]: len(r["label_logprobs"]) for _, r in d.drop_duplicates("target").iterrows()}
    md = ["## Scorings", "",
          "Each prompt's prediction read five ways (records: `<prefix>pred`, `<prefix>correct_<scorer>`):", ""]
    md += [f"- `{m}`: {SCORING_NAMES[m]}" for m in modes]
    sizes = _test_set_sizes(run)
    md += ["", "Items per target used below (those every cell of the target has): "
           + ", ".join(f"{t} {n}" + (f" of {sizes[t]}" if t in sizes else "") for t, n in counts.items())
           + f" ({len(d)} of {len(df)} records). Chance "
           "(one label at random, %): " + ", ".join(_chance(n_labels)) + ".", ""]
    written: list[pathlib.Path] = []
    heads, tests, pseudo, chance = [], {}, [], []
    for mode in modes:
        dm = by_scoring(d, mode)
        s = summary(dm, scorer=scorer)
        chance.append((mode, len(above_chance(s, n_labels)), len(s)))
        md += [f"### Accuracy per cell: `{mode}`", "", f"{SCORING_NAMES[mode]}; scorer `{scorer}`; accuracy "
               "[Wilson 95% interval], percent.", ""] + _cell_table(s) + [""]
        for m in models:
            if cross is None or "zero-shot" not in set(dm["method"]):
                continue
            try:
                h = headline_gain(dm, scorer=scorer, model=m, method=cross, k=1)
            except ValueError:
                continue
            sm = s[s["model"] == m]
            a0 = sm[sm["method"] == "zero-shot"]["accuracy"].mean()
            ac = sm[(sm["method"] == cross) & (sm["k"] == 1)].groupby("target")["accuracy"].mean().mean()
            heads.append((mode, m, a0, ac, 100 * h))
            tests[(mode, m)] = pooled_ttest(dm, scorer=scorer, method=cross, model=m)
        p_rows = s[s["method"].isin(PSEUDO_METHODS)]
        if {"pseudo-label", "pseudo-label-true"} <= set(p_rows["method"]):
            pseudo.append((mode, p_rows))
        if cross is not None:
            fig = plots.plot_heatmap(dm, method=cross, k=1, scorer=scorer, title=f"scoring: {mode}")
            written.append(plots.save_figure(fig, out / f"heatmap_{mode}.png"))
    md += _same_reading_lines(d, modes)
    md += _headline_lines(heads) + _ttest_lines(tests) + _pseudo_lines(pseudo, run, models, scorer)
    md += ["### Per-source heatmaps", ""]
    md += [f"![{mode}]({image_prefix}heatmap_{mode}.png)" for mode in modes if cross is not None] + [""]
    md += _paper_lines(heads, tests, pseudo, chance)
    return md, written


def _same_reading_lines(d, modes: list[str]) -> list[str]:
    """A note when the first-token and summed label readings predict the same label on every record (every label
    of the label spaces is one token after label_prefix)."""
    pairs = [("label", "label_first"), ("calibrated", "calibrated_first")]
    same = [(a, b) for a, b in pairs if a in modes and b in modes
            and (by_scoring(d, a)["pred"] == by_scoring(d, b)["pred"]).all()]
    if not same:
        return []
    names = ", ".join(f"`{a}` = `{b}`" for a, b in same)
    return [f"The first-token and summed readings predict the same label on every record ({names}): each label is "
            "one token here.", ""]


def _headline_lines(heads: list[tuple]) -> list[str]:
    md = ["### Headline gain per scoring", "",
          "(A_cross - A_zero) / A_zero, A_zero = mean over targets of zero-shot, A_cross = mean over targets of the "
          f"mean over sources of 1-shot cross-task (the paper: LLaMA-2 7B {PAPER_7B['headline_gain']:+.1f}%, Eval "
          "scorer).", "", "| scoring | model | A_zero | A_cross | gain |", "|:---|:---|---:|---:|---:|"]
    md += [f"| {mode} | {m} | {a0:.2f} | {ac:.2f} | {g:+.1f}% |" for mode, m, a0, ac, g in heads]
    return md + [""]


def _ttest_lines(tests: dict) -> list[str]:
    if not tests:
        return []
    md = ["### Paired t-tests per source", "",
          "The authors' test: 1-shot cross-task from the source against zero-shot, one-tailed paired t-test over the "
          "concatenated 0/1 correctness of the items of all targets. Gain in points; * p < 0.05.", ""]
    keys = list(tests)
    sources = sorted(set().union(*[set(t["source"]) for t in tests.values()]))
    md += ["| source | " + " | ".join(f"{mode} ({m})" if len({k[1] for k in keys}) > 1 else mode
                                      for mode, m in keys) + " |", "|:---|" + "---:|" * len(keys)]
    for src in sources:
        cells = []
        for k in keys:
            r = tests[k][tests[k]["source"] == src]
            if r.empty:
                cells.append("")
                continue
            r = r.iloc[0]
            star = "*" if r.p < 0.05 else ""
            cells.append(f"{r.gain:+.1f} (p {r.p:.2g}){star}")
        md.append(f"| {src} | " + " | ".join(cells) + " |")
    return md + [""]


def _pseudo_lines(pseudo: list[tuple], run: pathlib.Path, models: list[str], scorer: str) -> list[str]:
    if not pseudo:
        return []
    md = ["### Pseudo-label ICL", "",
          "In-task ICL whose k demonstrations are pool rows labelled by the majority vote of this model's cross-task "
          "1-shot predictions (pseudo-label), against the same rows with gold labels (pseudo-label-true); accuracy, "
          "percent.", ""]
    targets = sorted(pseudo[0][1]["target"].unique())
    md += ["| scoring | method | " + " | ".join(targets) + " | mean |", "|:---|:---|" + "---:|" * (len(targets) + 1)]
    for mode, s in pseudo:
        for method in PSEUDO_METHODS:
            sub = s[s["method"] == method].groupby("target")["accuracy"].mean()
            if sub.empty:
                continue
            k = int(s[s["method"] == method]["k"].max())
            cells = [f"{sub[t]:.1f}" if t in sub.index else "" for t in targets]
            md.append(f"| {mode} | {method}{f' (k={k})' if method.startswith('pseudo') else ''} | "
                      + " | ".join(cells) + f" | {sub.mean():.1f} |")
    for m in models:
        path = run / f"pseudo_labels.{m}.json"
        if path.is_file():
            table = json.loads(path.read_text(encoding="utf-8"))
            parts = []
            for t, rows in table.items():
                hits = sum(bool(_crossicl.exact_match(r["label"], r["gold"], scorer)) for r in rows if r["gold"])
                empty = sum(r["label"] == "" for r in rows)
                labels = sorted({r["label"] for r in rows})
                parts.append(f"{t} {hits}/{len(rows)} ({empty} empty; votes {', '.join(repr(x) for x in labels[:4])}"
                             f"{', ...' if len(labels) > 4 else ''})")
            md += ["", f"Pseudo-labels that match gold under `{scorer}` ({m}): " + "; ".join(parts) + "."]
    return md + [""]


def _paper_lines(heads: list[tuple], tests: dict, pseudo: list[tuple], chance: list[tuple]) -> list[str]:
    """What agrees with the paper and what does not, stated from the numbers above."""
    if not heads:
        return []
    md = ["### Against the paper", ""]
    md.append("- Cells above chance (Wilson 95% lower bound over 100 / labels): "
              + ", ".join(f"{n} of {total} (`{mode}`)" for mode, n, total in chance) + ".")
    best = max(heads, key=lambda h: h[4])
    pos = [h for h in heads if h[4] > 0]
    md.append(f"- Headline gain: the paper reports {PAPER_7B['headline_gain']:+.1f}% for LLaMA-2 7B. Here it is "
              + ", ".join(f"{g:+.1f}% ({mode})" for mode, _, _, _, g in heads)
              + f"; cross-task beats zero-shot on average under {len(pos)} of {len(heads)} scorings"
              + (f", most under `{best[0]}`." if pos else "."))
    for (mode, m), t in tests.items():
        sig = t[(t["p"] < 0.05) & (t["gain"] > 0)]["source"].tolist()
        neg = t[t["gain"] < 0]["source"].tolist()
        order = t.sort_values("gain")
        md.append(f"- Sources significantly better than zero-shot (`{mode}`): {len(sig)} of {len(t)}"
                  + (f" ({', '.join(sig)})" if sig else "")
                  + (f"; worse than zero-shot: {', '.join(neg)}" if neg else "")
                  + f"; largest gain {order.iloc[-1].source} ({order.iloc[-1].gain:+.1f}), smallest "
                  f"{order.iloc[0].source} ({order.iloc[0].gain:+.1f}). The paper: {PAPER_7B['significant_sources']} "
                  "for LLaMA-2 7B, the token-tagging sources (conll2003_pos, conll2003_ner) the weakest.")
    for mode, s in pseudo:
        a = s[s["method"] == "pseudo-label"].groupby("target")["accuracy"].mean()
        b = s[s["method"] == "pseudo-label-true"].groupby("target")["accuracy"].mean()
        both = a.index.intersection(b.index)
        if len(both):
            diff = (a[both] - b[both]).mean()
            md.append(f"- Pseudo-labels vs gold labels (`{mode}`): {diff:+.1f} points on average over "
                      f"{len(both)} targets. The paper (7B, k = 4, seed 0): ARC-Challenge "
                      f"{PAPER_7B['pseudo_k4_seed0']['ARC-Challenge'][0]} vs "
                      f"{PAPER_7B['pseudo_k4_seed0']['ARC-Challenge'][1]}, financial_phrasebank "
                      f"{PAPER_7B['pseudo_k4_seed0']['financial_phrasebank'][0]} vs "
                      f"{PAPER_7B['pseudo_k4_seed0']['financial_phrasebank'][1]}.")
    return md + [""]


def above_chance(s, n_labels: dict[str, int]) -> Any:
    """The cells of a summary table (crossicl.results.summary) whose Wilson lower bound is above chance
    (100 / the target's number of labels, ``n_labels``)."""
    return s[[r.ci_lo > 100.0 / n_labels[r.target] for r in s.itertuples()]]


__all__ = ["SCORING_NAMES", "PAPER_7B", "common_items", "scoring_sections", "above_chance"]
