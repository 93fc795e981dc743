"""Plots of experiment results and of the activation analysis, as matplotlib Figures.

matplotlib is imported when a plot is drawn (matplotlib picks the backend: inline in a notebook, Agg on a
headless machine). Accuracies are in percent, gains in points.

    from crossicl import plots, results
    fig = plots.plot_heatmap(results.load_records("runs/demo"))
    plots.save_figure(fig, pathlib.Path("heatmap.png"))
"""
from __future__ import annotations

import math
import pathlib
from collections.abc import Sequence
from typing import Any

from . import results


def _pyplot():
    # matplotlib's own backend choice: inline in a notebook, Agg on a headless machine.
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path: pathlib.Path) -> pathlib.Path:
    """Writes a Figure as PNG (120 dpi), closes it and returns the path."""
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)
    return path


def plot_heatmap(df, *, method: str = "cross-task", k: int = 1, scorer: str = "paper_eval",
                 model: str | None = None, baselines: Sequence[str] = ("zero-shot", "in-task"),
                 cmap: str = "viridis", annotate: bool = True, title: str | None = None):
    """Heatmap of :func:`crossicl.results.accuracy_table` (sources x targets, baseline rows below a line), one
    panel per model (or only ``model``), each cell annotated with its accuracy; ``title``: a line added above each
    panel's own. Returns a matplotlib Figure.

        >>> plot_heatmap(df, k=1).savefig("heatmap.png")
    """
    import numpy as np

    plt = _pyplot()
    models = results.models_in(df, model)
    tables = [results.accuracy_table(df, method=method, k=k, scorer=scorer, model=m, baselines=baselines)
              for m in models]
    rows = max(len(t.index) for t in tables)
    cols = sum(len(t.columns) for t in tables)
    fig, axes = plt.subplots(1, len(models), squeeze=False,
                             figsize=(2.0 + 0.9 * cols + 1.2 * len(models), 1.5 + 0.45 * rows))
    for ax, m, table in zip(axes[0], models, tables):
        values = table.to_numpy(dtype=float)  # [sources + baselines, targets]
        im = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=0, vmax=100, aspect="auto")
        ax.set_xticks(range(len(table.columns)), labels=list(table.columns), rotation=30, ha="right")
        ax.set_yticks(range(len(table.index)), labels=list(table.index))
        ax.set_xlabel("target")
        ax.set_ylabel("source")
        ax.set_title(f"{title + chr(10) if title else ''}{m}\n{k}-shot {method} accuracy (%)", fontsize=9)
        n_base = sum(1 for b in baselines if b in table.index)
        if n_base and n_base < len(table.index):
            ax.axhline(len(table.index) - n_base - 0.5, color="white", linewidth=2)
        if annotate:
            for i in range(values.shape[0]):
                for j in range(values.shape[1]):
                    if not math.isnan(values[i, j]):
                        ax.text(j, i, f"{values[i, j]:.1f}", ha="center", va="center", fontsize=7,
                                color="white" if values[i, j] < 50 else "black")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def plot_gains(df, *, method: str = "cross-task", k: int = 1, scorer: str = "paper_eval",
               model: str | None = None, baseline: str = "zero-shot", average: bool = False):
    """Bar chart of the gain over ``baseline`` (points, from :func:`crossicl.results.gains`) per source of the k-shot
    ``method`` cells, one panel per model (or only ``model``). Bars are grouped by target, or with
    ``average=True`` one bar per source: the mean over targets with the standard deviation over targets as error
    bar. Returns a matplotlib Figure.

        >>> plot_gains(df, average=True).savefig("gains.png")
    """
    import numpy as np

    plt = _pyplot()
    models = results.models_in(df, model)
    g = results.gains(df[df["model"].isin(models)], scorer=scorer, method=method, baseline=baseline)
    g = g[g["k"] == k]
    if g.empty:
        raise ValueError(f"plot_gains: no {k}-shot '{method}' cells")
    fig, axes = plt.subplots(1, len(models), squeeze=False, figsize=(2.5 + 4.5 * len(models), 4.0))
    for ax, m in zip(axes[0], models):
        gm = g[g["model"] == m].assign(source=lambda x: x["source"].fillna("(none)"))
        table = gm.pivot_table(index="source", columns="target", values="gain", aggfunc="mean")  # [src, tgt]
        x = np.arange(len(table.index))
        if average:
            mean = table.mean(axis=1).to_numpy()
            sd = table.std(axis=1, ddof=1).fillna(0.0).to_numpy()
            ax.bar(x, mean, yerr=sd, capsize=3, color="tab:blue")
        else:
            width = 0.8 / max(len(table.columns), 1)
            for j, t in enumerate(table.columns):
                ax.bar(x + (j - (len(table.columns) - 1) / 2) * width, table[t].to_numpy(), width, label=t)
            ax.legend(fontsize=7, title="target", title_fontsize=7)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(x, labels=list(table.index), rotation=30, ha="right")
        ax.set_ylabel(f"gain over {baseline} (points)")
        ax.set_title(f"{m}\n{k}-shot {method}" + (" (mean over targets, sd)" if average else ""), fontsize=9)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------ activation analysis
def plot_layer_correlation(df: Any, *, stats_: Sequence[str] = ("pearson", "spearman"), hue: str | None = None,
                           title: str = "Similarity-gain correlation per layer"):
    """Correlation per layer with its bootstrap interval (shaded), one line per statistic (and per ``hue``
    value, e.g. a ``level`` column "pair"/"item"). ``df``: output of :func:`crossicl.analysis.layer_correlations`
    (columns ``layer, pearson_r, pearson_lo, pearson_hi, spearman_rho, spearman_lo, spearman_hi``). Returns a
    Figure."""
    plt = _pyplot()
    point = {"pearson": "pearson_r", "spearman": "spearman_rho"}
    fig, ax = plt.subplots(figsize=(7, 4))
    groups = [(None, df)] if hue is None else list(df.groupby(hue, sort=True))
    for hv, g in groups:
        g = g.sort_values("layer")
        for st in stats_:
            label = st if hv is None else f"{hv} {st}"
            line, = ax.plot(g["layer"], g[point[st]], marker="o", ms=3, label=label)
            ax.fill_between(g["layer"], g[f"{st}_lo"], g[f"{st}_hi"], color=line.get_color(), alpha=0.15)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("layer (0 = embeddings)")
    ax.set_ylabel("correlation")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_similarity_vs_gain(df: Any, *, x: str = "similarity", y: str = "gain", hue: str = "target",
                            layer: int | None = None, title: str | None = None):
    """Scatter of similarity against gain, coloured by ``hue`` (default target). ``df``: columns ``x``, ``y``,
    ``hue`` and, when ``layer`` is given, ``layer`` (rows of other layers are dropped). Returns a Figure."""
    plt = _pyplot()
    if layer is not None:
        df = df[df["layer"] == layer]
    if len(df) == 0:
        raise ValueError("nothing to plot (no rows" + (f" for layer {layer})" if layer is not None else ")"))
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for hv, g in df.groupby(hue, sort=True):
        ax.scatter(g[x], g[y], s=18, alpha=0.8, label=str(hv))
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel(f"{x}" + (f" (layer {layer})" if layer is not None else ""))
    ax.set_ylabel(y)
    ax.set_title(title or f"{x} vs {y}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


__all__ = ["save_figure", "plot_heatmap", "plot_gains", "plot_layer_correlation", "plot_similarity_vs_gain"]
