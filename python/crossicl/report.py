"""The report of a run folder (``crossicl report RUN_DIR``): report.md with its tables, CSVs and PNGs.

    from crossicl import report
    report.write_report("runs/demo")      # report.md, summary.csv, gains.csv, heatmap.png, gains.png

The tables come from crossicl.results, the figures from crossicl.plots, and the activation-analysis section
from the files ``crossicl analyze`` (crossicl.analysis) leaves in the run folder.
"""
from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Mapping
from typing import Any

from . import analysis, plots
from .records import atomic_write_text, load_records
from .report_scoring import scoring_sections
from .results import CROSS_METHODS, accuracy_table, gains, headline_gain, summary


def _fmt(value: Any, column: str) -> str:
    if value is None:
        return ""
    try:
        import pandas as pd
        if pd.isna(value):
            return ""
    except (TypeError, ValueError):
        pass
    if isinstance(value, (bool,)):
        return str(value)
    if isinstance(value, float) or type(value).__name__.startswith("float"):
        v = float(value)
        if column == "p":
            return f"{v:.3g}"
        if column == "df":
            return f"{v:g}"
        if column == "t":
            return f"{v:.3f}"
        if column in ("rel_gain",):
            return f"{100 * v:+.2f}%"
        if column in ("gain",):
            return f"{v:+.2f}"
        return f"{v:.2f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(table, *, index: bool = False) -> str:
    """A DataFrame as a GitHub markdown table (floats with 2 decimals; columns p with 3 significant digits, t
    with 3 decimals, gain signed, rel_gain as a signed percentage; missing values blank), without the
    ``tabulate`` dependency of DataFrame.to_markdown."""
    import pandas as pd

    t = table.reset_index() if index else table
    cols = [str(c) for c in t.columns]
    numeric = [pd.api.types.is_numeric_dtype(t[c]) and not pd.api.types.is_bool_dtype(t[c]) for c in t.columns]
    body = [[_fmt(v, str(c)) for c, v in zip(t.columns, row)] for row in t.itertuples(index=False, name=None)]
    lines = ["| " + " | ".join(cols) + " |",
             "|" + "|".join("---:" if num else ":---" for num in numeric) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def _config_lines(config: Any, prefix: str = "") -> list[str]:
    out = []
    if isinstance(config, Mapping):
        for key, value in config.items():
            if str(key).startswith("_"):
                continue
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, Mapping) and value:
                out += _config_lines(value, name)
            else:
                text = json.dumps(value, ensure_ascii=False, default=str)
                out.append(f"- `{name}`: {text if len(text) <= 200 else text[:197] + '...'}")
    return out


def write_report(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None, *,
                 scorer: str = "paper_eval") -> list[pathlib.Path]:
    """Writes the report of a run folder into ``out_dir`` (default ``RUN_DIR/report``): report.md (config
    summary, per-cell table, accuracy pivot, gains with paired t-tests, headline gain; for a run that scored
    labels, the same per scoring: crossicl.report_scoring), summary.csv, gains.csv, heatmap.png and gains.png. An
    ``out_dir`` ending in ".md" is the report itself, its files going to the folder of the same name without
    ".md" (``docs/results/x.md`` and ``docs/results/x/``). A section whose inputs are missing (no zero-shot
    cells, no cross-task cells) is replaced by a line saying why, and its files are not written. Returns the
    paths written.

        >>> write_report("runs/demo")   # or: crossicl report runs/demo
    """
    run = pathlib.Path(run_dir)
    target = pathlib.Path(out_dir) if out_dir is not None else run / "report"
    if target.suffix == ".md":
        md_path, out, prefix = target, target.with_suffix(""), target.stem + "/"
    else:
        md_path, out, prefix = target / "report.md", target, ""
    df = load_records(run)
    table = summary(df, scorer=scorer)  # validates the scorer before anything is written
    out.mkdir(parents=True, exist_ok=True)
    written: list[pathlib.Path] = []
    methods = set(df["method"])
    cross = next((m for m in CROSS_METHODS if m in methods), None)
    models = sorted(df["model"].unique())

    md = [f"# Report: {run.name or run}", "",
          f"{len(df)} records, {len(table)} cells, models: {', '.join(models)}; scorer `{scorer}` "
          f"(accuracy in percent, Wilson 95% interval).", ""]
    md += _config_section(run / "config.json")

    p = out / "summary.csv"
    atomic_write_text(p, table.to_csv(index=False))
    written.append(p)
    md += ["## Accuracy per cell", "", markdown_table(table), ""]
    md += _accuracy_section(df, cross, models, scorer)

    lines, g = _gains_section(df, methods, scorer)
    md += lines
    if g is not None:
        p = out / "gains.csv"
        atomic_write_text(p, g.to_csv(index=False))
        written.append(p)
    md += _headline_section(df, cross, methods, models, scorer)
    lines, files = _plots_section(df, cross, models, g is not None, scorer, out, prefix)
    md += lines
    written += files
    lines, files = scoring_sections(df, out, run, scorer=scorer, image_prefix=prefix)
    md += lines
    written += files
    try:
        lines, files = analysis_section(run, out, df, scorer=scorer, image_prefix=prefix)
    except ValueError as e:
        lines, files = ["## Activation similarity and gain", "", f"Skipped: {e}", ""], []
    md += lines
    written += files

    atomic_write_text(md_path, "\n".join(md))
    written.append(md_path)
    return written


def _config_section(cfg_path: pathlib.Path) -> list[str]:
    md = []
    commands = cfg_path.parent / "commands.txt"
    if commands.is_file():
        md += ["## Commands", "", "The runs that wrote this folder (UTC start, command line):", "", "```"]
        md += [line for line in commands.read_text(encoding="utf-8").split("\n") if line] + ["```", ""]
    md += ["## Configuration", ""]
    if cfg_path.is_file():
        try:
            config = json.loads(cfg_path.read_text(encoding="utf-8"))
            md += _config_lines(config) or ["config.json is empty."]
        except json.JSONDecodeError as e:
            md.append(f"config.json is not valid JSON ({e.msg} at line {e.lineno}); skipped.")
    else:
        md.append("No config.json in the run folder.")
    return md + [""]


def _accuracy_section(df, cross: str | None, models: list[str], scorer: str) -> list[str]:
    md = ["## Accuracy by source and target", ""]
    if cross is None:
        return md + [f"Skipped: no cross-task cells (method {' or '.join(CROSS_METHODS)}).", ""]
    for m in models:
        ks = sorted(df.loc[(df["model"] == m) & (df["method"] == cross), "k"].unique())
        for k in ks:
            md += [f"### {m}, {k}-shot {cross}", "",
                   markdown_table(accuracy_table(df, method=cross, k=int(k), scorer=scorer, model=m),
                                  index=True), ""]
    return md


def _gains_section(df, methods: set, scorer: str) -> tuple[list[str], Any]:
    """(lines, the gains table or None)."""
    md = ["## Gains over zero-shot", ""]
    if "zero-shot" not in methods:
        return md + ["Skipped: no zero-shot cells.", ""], None
    if methods == {"zero-shot"}:
        return md + ["Skipped: only zero-shot cells.", ""], None
    try:
        g = gains(df, scorer=scorer, method=None)
    except ValueError as e:
        return md + [f"Skipped: {e}.", ""], None
    return md + ["Accuracy and zero-shot accuracy on the items both cells share; gain in points; one-tailed "
                 "paired t-test (cell > zero-shot) over the items.", "", markdown_table(g), ""], g


def _headline_section(df, cross: str | None, methods: set, models: list[str], scorer: str) -> list[str]:
    md = ["## Headline gain", ""]
    if cross is None or "zero-shot" not in methods:
        return md + ["Skipped: needs zero-shot and 1-shot cross-task cells.", ""]
    for m in models:
        try:
            h = headline_gain(df, scorer=scorer, model=m, method=cross, k=1)
            md.append(f"- {m}: {100 * h:+.2f}% (mean over targets of the mean over sources of 1-shot "
                      f"{cross} vs mean over targets of zero-shot)")
        except ValueError as e:
            md.append(f"- {m}: not computable ({e})")
    return md + [""]


def _plots_section(df, cross: str | None, models: list[str], have_gains: bool, scorer: str,
                   out: pathlib.Path, prefix: str) -> tuple[list[str], list[pathlib.Path]]:
    md = ["## Plots", ""]
    if cross is None:
        return md + ["Skipped: no cross-task cells.", ""], []
    k_plot = 1 if (df.loc[df["method"] == cross, "k"] == 1).any() else int(df.loc[df["method"] == cross, "k"].min())
    models_k = [m for m in models if ((df["model"] == m) & (df["method"] == cross) & (df["k"] == k_plot)).any()]
    sub = df[df["model"].isin(models_k)]
    written = [plots.save_figure(plots.plot_heatmap(sub, method=cross, k=k_plot, scorer=scorer),
                                 out / "heatmap.png")]
    md += [f"![{k_plot}-shot {cross} accuracy]({prefix}heatmap.png)", ""]
    if not have_gains:
        md += ["gains.png skipped: no gains (see above).", ""]
    else:
        written.append(plots.save_figure(plots.plot_gains(sub, method=cross, k=k_plot, scorer=scorer),
                                         out / "gains.png"))
        md += [f"![{k_plot}-shot {cross} gain over zero-shot]({prefix}gains.png)", ""]
    return md, written


def analysis_section(run: pathlib.Path, out: pathlib.Path, records: Any, *, scorer: str = "paper_eval",
                     image_prefix: str = "") -> tuple[list[str], list[pathlib.Path]]:
    """The activation-analysis section of the report: (markdown lines, written paths). Empty when the run
    folder has no analysis/similarity.csv (run ``crossicl analyze`` first)."""
    import pandas as pd
    sim_path = run / "analysis" / "similarity.csv"
    if not sim_path.is_file():
        return [], []
    sim = pd.read_csv(sim_path, dtype={"id": str})
    md = ["## Activation similarity and gain", "",
          "Cosine of the mean hidden state over the source demonstration's input tokens and over the target "
          "input tokens, per layer (0 = embeddings), from `crossicl analyze` (crossicl.analysis). Intervals: 95% "
          "percentile bootstrap, 2000 resamples; the peak layer is chosen after looking at every layer, so its "
          "interval is optimistic.", ""]
    g = gains(records, scorer=scorer, method="cross-task")
    keys = [c for c in ("model", "target", "source", "k") if c in g.columns and c in sim.columns]
    pair = sim.groupby(keys + ["layer"], as_index=False)[["similarity", "similarity_last"]].mean()
    pair = pair.merge(g[keys + ["gain"]].groupby(keys, as_index=False)["gain"].mean(), on=keys)
    if len(pair["source"].unique()) < 3 or len(pair) < 3 * pair["layer"].nunique():
        return md + ["Skipped: fewer than 3 (target, source) pairs with a gain.", ""], []
    flag = f"correct_{scorer}"
    item_keys = [c for c in ("model", "target", "method", "source", "k", "id") if c in sim.columns]
    rec = records[item_keys + [flag]].drop_duplicates(item_keys)
    item = sim.merge(rec, on=item_keys)
    item["correct"] = item[flag].astype(float)
    c_pair = analysis.layer_correlations(pair, x="similarity", y="gain")
    c_item = analysis.layer_correlations(item, x="similarity", y="correct")
    peak = analysis.peak_layer(c_pair)
    lines = ["| layer | pair: Pearson r [95% CI] | pair: Spearman rho [95% CI] | item: Spearman rho [95% CI] |",
             "|---:|---|---|---|"]
    for (_, a), (_, b) in zip(c_pair.iterrows(), c_item.iterrows()):
        lines.append(f"| {int(a.layer)} | {a.pearson_r:+.3f} [{a.pearson_lo:+.3f}, {a.pearson_hi:+.3f}] | "
                     f"{a.spearman_rho:+.3f} [{a.spearman_lo:+.3f}, {a.spearman_hi:+.3f}] | "
                     f"{b.spearman_rho:+.3f} [{b.spearman_lo:+.3f}, {b.spearman_hi:+.3f}] |")
    md += [f"{len(pair) // pair['layer'].nunique()} (target, source) pairs (gain = cross-task minus zero-shot "
           f"accuracy, points), {len(item) // item['layer'].nunique()} items (correct or not). Pair-level "
           f"Spearman peaks at layer {peak}.", ""] + lines + [""]
    both = pd.concat([c_pair.assign(level="pair"), c_item.assign(level="item")], ignore_index=True)
    written = [plots.save_figure(plots.plot_layer_correlation(both, hue="level"), out / "analysis_layers.png"),
               plots.save_figure(plots.plot_similarity_vs_gain(pair, layer=peak), out / "analysis_scatter.png")]
    md += [f"![correlation per layer]({image_prefix}analysis_layers.png)", "",
           f"![similarity vs gain, layer {peak}]({image_prefix}analysis_scatter.png)", ""]
    rank_path = run / "analysis" / "ranking.csv"
    if rank_path.is_file():
        ranking = pd.read_csv(rank_path)
        pair_gain = g[keys + ["gain"]].groupby(["target", "source"], as_index=False)["gain"].mean()
        ev = analysis.evaluate_ranking(ranking, pair_gain)
        per_layer = ev.groupby("layer", as_index=False)[["rho", "top1_gain", "best_gain", "mean_gain"]].mean()
        best = per_layer.loc[per_layer["rho"].idxmax()] if per_layer["rho"].notna().any() else None
        md += ["### Label-free source ranking (rank_sources)", "",
               "Sources ranked per target by the mean cosine of mean-pooled hidden states of target and source "
               "inputs (no labels), against the measured gains: mean over targets of Spearman rho, and the gain "
               "of the top-ranked source vs the best and the mean source.", "",
               "| layer | mean rho | top-1 gain | best gain | mean gain |", "|---:|---:|---:|---:|---:|"]
        for _, r in per_layer.iterrows():
            md.append(f"| {int(r.layer)} | {r.rho:+.3f} | {r.top1_gain:+.2f} | {r.best_gain:+.2f} | "
                      f"{r.mean_gain:+.2f} |")
        if best is not None:
            md += ["", f"Best layer for the ranking: {int(best.layer)} (mean rho {best.rho:+.3f})."]
        md.append("")
    return md, written


__all__ = ["markdown_table", "write_report", "analysis_section"]
