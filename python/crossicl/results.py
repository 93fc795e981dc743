"""Results of an experiment run: per-item records to tables, statistics, plots and a report.

A run folder holds ``records.jsonl`` (or shard files ``records*.jsonl``), one JSON object per (cell, item),
written by :class:`crossicl.Experiment`. A cell is (target, method, source, k, seed, model). This module reads
the records into a pandas DataFrame and derives the paper's figures from them::

    from crossicl import results
    df = results.load_records("runs/demo")              # every records*.jsonl of the run folder
    results.summary(df)                                  # accuracy and Wilson 95% interval per cell
    results.gains(df)                                    # cross-task vs zero-shot on the same items, paired t-test
    results.headline_gain(df, model="llama-2-7b")        # the abstract's aggregate gain (a fraction)
    results.accuracy_table(df, k=1, model="llama-2-7b")  # sources x targets, plus zero-shot / in-task rows
    results.write_report("runs/demo")                    # report.md, CSVs and PNGs in runs/demo/report

Accuracies are in percent. ``scorer`` picks the record column ``correct_<scorer>`` ("paper_eval",
"paper_compare", "clean"). Bad input raises ``ValueError`` naming the file and line, the cell or the column.
pandas is needed; matplotlib only for the plots (imported when a plot is drawn; matplotlib picks the backend).
"""
from __future__ import annotations

import gzip
import json
import math
import os
import pathlib
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from . import _crossicl

CELL = ("target", "method", "source", "k", "seed", "model")
"""The columns that name a cell."""

SCORERS = ("paper_eval", "paper_compare", "clean")
"""Scorers every record carries a ``correct_<scorer>`` flag for."""

REQUIRED_KEYS = CELL + ("id", "gold", "pred") + tuple(f"correct_{s}" for s in SCORERS)
"""Keys every record must have."""

CROSS_METHODS = ("cross-task", "totally-cross-sim")
"""Names of the 1-source cross-task method: the runner's, then the paper's published one."""

_STR_KEYS = ("target", "method", "model", "gold", "pred")


# ----------------------------------------------------------------------------------------------------- loading
def _record_files(path: pathlib.Path) -> list[pathlib.Path]:
    if path.is_dir():
        files = sorted(path.glob("records*.jsonl")) + sorted(path.glob("records*.jsonl.gz"))
        if not files:
            raise ValueError(f"{path}: no records*.jsonl files in the run folder")
        return files
    if not path.is_file():
        raise ValueError(f"{path}: no such records file or run folder")
    return [path]


_REQUIRED_SET = frozenset(REQUIRED_KEYS)


def _check_record(rec: Any, file: pathlib.Path, line: int) -> dict:
    # fast path for a well-formed record (this runs once per item: keep it to a few dict lookups)
    if (type(rec) is dict and _REQUIRED_SET <= rec.keys() and type(rec["target"]) is str
            and type(rec["method"]) is str and type(rec["model"]) is str and type(rec["gold"]) is str
            and type(rec["pred"]) is str and (rec["source"] is None or type(rec["source"]) is str)
            and type(rec["k"]) is int and rec["k"] >= 0 and (rec["seed"] is None or type(rec["seed"]) is int)
            and type(rec["id"]) in (str, int) and type(rec["correct_paper_eval"]) is bool
            and type(rec["correct_paper_compare"]) is bool and type(rec["correct_clean"]) is bool):
        return rec
    where = f"{file}:{line}"
    if not isinstance(rec, dict):
        raise ValueError(f"{where}: a record must be a JSON object (got {type(rec).__name__})")
    missing = [k for k in REQUIRED_KEYS if k not in rec]
    if missing:
        raise ValueError(f"{where}: record lacks key(s) {', '.join(missing)}")
    for key in _STR_KEYS:
        if not isinstance(rec[key], str):
            raise ValueError(f"{where}: '{key}' must be a string (got {rec[key]!r})")
    if rec["source"] is not None and not isinstance(rec["source"], str):
        raise ValueError(f"{where}: 'source' must be a string or null (got {rec['source']!r})")
    if isinstance(rec["k"], bool) or not isinstance(rec["k"], int) or rec["k"] < 0:
        raise ValueError(f"{where}: 'k' must be an integer >= 0 (got {rec['k']!r})")
    if rec["seed"] is not None and (isinstance(rec["seed"], bool) or not isinstance(rec["seed"], int)):
        raise ValueError(f"{where}: 'seed' must be an integer or null (got {rec['seed']!r})")
    if isinstance(rec["id"], bool) or not isinstance(rec["id"], (str, int)):
        raise ValueError(f"{where}: 'id' must be a string (got {rec['id']!r})")
    for s in SCORERS:
        flag = rec[f"correct_{s}"]
        if flag not in (True, False) or not isinstance(flag, (bool, int)):
            raise ValueError(f"{where}: 'correct_{s}' must be a boolean (got {flag!r})")
    return rec


def _record_key(rec: Mapping[str, Any]) -> tuple:
    return (rec["target"], rec["method"], rec["source"] or "", rec["k"], -1 if rec["seed"] is None else rec["seed"],
            rec["model"], str(rec["id"]))


def load_records(path_or_dir: str | os.PathLike, *, skip_torn_tail: bool = True):
    """Reads a records file (``.jsonl`` or ``.jsonl.gz``) or every ``records*.jsonl`` of a run folder.

    Every record needs the keys of :data:`REQUIRED_KEYS` with the right types; extra keys become extra columns.
    A record that appears twice (same cell and id, e.g. after merging shards) is kept once if both copies are
    identical; copies that differ raise ValueError naming the cell, the id and both places.

    skip_torn_tail: a last line without a newline that is not valid JSON (a run killed mid-write, or still
        running) is skipped with a warning; False makes it an error like any malformed line.

    Returns a pandas DataFrame, one row per record, in file order: ``k`` int64, ``seed`` Int64 (NA when null),
    ``id`` str, the ``correct_*`` flags bool, ``source`` str or NA.

        >>> df = load_records("runs/demo")
        >>> df.groupby("method").correct_paper_eval.mean()
    """
    import pandas as pd

    files = _record_files(pathlib.Path(path_or_dir))
    rows: list[dict] = []
    seen: dict[tuple, tuple[dict, pathlib.Path, int]] = {}
    for f in files:
        opener = gzip.open if f.suffix == ".gz" else open
        with opener(f, "rt", encoding="utf-8") as fh:
            text = fh.read()
        lines = text.split("\n")
        torn = not text.endswith("\n") and text != ""
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                where = f"{f}:{n}"
                if torn and n == len(lines) and skip_torn_tail:
                    warnings.warn(f"{where}: skipped an incomplete last line (a run killed mid-write?)",
                                  RuntimeWarning, stacklevel=2)
                    continue
                raise ValueError(f"{where}: malformed JSON ({e.msg} at column {e.colno})") from None
            _check_record(rec, f, n)
            key = _record_key(rec)
            if key in seen:
                first, first_file, first_line = seen[key]
                if first != rec:
                    cell = dict(zip(CELL, (rec[c] for c in CELL)))
                    raise ValueError(f"{f}:{n}: record for cell {cell} id {rec['id']!r} differs from the one at "
                                     f"{first_file}:{first_line} (a broken merge?)")
                continue
            seen[key] = (rec, f, n)
            rows.append(rec)
    if not rows:
        raise ValueError(f"{path_or_dir}: no records")
    df = pd.DataFrame.from_records(rows)
    df["id"] = df["id"].astype(str)
    df["k"] = df["k"].astype("int64")
    df["seed"] = df["seed"].astype("Int64")
    for s in SCORERS:
        df[f"correct_{s}"] = df[f"correct_{s}"].astype(bool)
    return df


# ----------------------------------------------------------------------------------------------------- helpers
def _flag_column(df, scorer: str) -> str:
    col = f"correct_{scorer}"
    if col not in df.columns:
        known = sorted(c[len("correct_"):] for c in df.columns if c.startswith("correct_"))
        raise ValueError(f"unknown scorer '{scorer}': no column '{col}' (scorers in the records: "
                         f"{', '.join(known) or 'none'})")
    if df[col].isna().any():
        raise ValueError(f"column '{col}' has {int(df[col].isna().sum())} missing value(s)")
    return col


def _require(df, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {', '.join(missing)}")
    if len(df) == 0:
        raise ValueError(f"{what}: no records")


def _keyed(df):
    """A copy with hashable cell keys: ``_source`` ("" for none) and ``_seed`` (-1 for none)."""
    out = df.copy()
    out["_source"] = out["source"].astype(object).where(out["source"].notna(), "")
    out["_seed"] = out["seed"].astype(object).where(out["seed"].notna(), -1).astype("int64")
    return out


_KEY = ("target", "method", "_source", "k", "_seed", "model")


def _unkey(table):
    """Turns the ``_source`` / ``_seed`` key columns back into ``source`` (None) and ``seed`` (Int64, NA)."""
    table = table.rename(columns={"_source": "source", "_seed": "seed"})
    table["source"] = table["source"].astype(object).where(table["source"] != "", None)
    table["seed"] = table["seed"].astype("Int64").mask(table["seed"] == -1)
    return table


def _single_model(df, model: str | None, what: str) -> str:
    models = sorted(df["model"].unique())
    if model is None:
        if len(models) != 1:
            raise ValueError(f"{what}: the records hold {len(models)} models ({', '.join(models)}); pass model=")
        return models[0]
    if model not in models:
        raise ValueError(f"{what}: no records for model '{model}' (models: {', '.join(models)})")
    return model


# ----------------------------------------------------------------------------------------------------- tables
def summary(df, *, scorer: str = "paper_eval", confidence: float = 0.95):
    """One row per cell: n, n_correct, accuracy (percent), the Wilson interval ci_lo / ci_hi (percent, at
    ``confidence``, from :func:`crossicl.accuracy_interval`) and n_empty_pred (predictions that are empty or
    whitespace only). Rows are sorted by cell.

        >>> summary(load_records("runs/demo"), scorer="clean")[["target", "method", "accuracy"]]
    """
    import pandas as pd

    _require(df, CELL + ("id", "pred"), "summary")
    col = _flag_column(df, scorer)
    d = _keyed(df)
    d["_hit"] = d[col].astype(bool)
    d["_empty"] = d["pred"].astype(str).str.strip() == ""
    g = d.groupby(list(_KEY), sort=True)
    table = pd.DataFrame({"n": g.size(), "n_correct": g["_hit"].sum().astype("int64"),
                          "n_empty_pred": g["_empty"].sum().astype("int64")}).reset_index()
    if (table["n"] == 0).any():  # cannot come from records, only from a categorical grouping
        raise ValueError("summary: a cell with zero items")
    table["accuracy"] = 100.0 * table["n_correct"] / table["n"]
    ci = [_crossicl.accuracy_interval(int(h), int(n), confidence=confidence)
          for h, n in zip(table["n_correct"], table["n"])]
    table["ci_lo"] = [lo for lo, _ in ci]
    table["ci_hi"] = [hi for _, hi in ci]
    table = _unkey(table)
    return table[list(CELL) + ["n", "n_correct", "accuracy", "ci_lo", "ci_hi", "n_empty_pred"]]


def gains(df, *, scorer: str = "paper_eval", method: str | Sequence[str] | None = "cross-task",
          baseline: str = "zero-shot", alternative: str = "greater"):
    """Gain of each cell of ``method`` over the ``baseline`` cell of the same model and target, on the items
    both cells share (inner join on ``id``).

    method: a method name, a list of them, or None for every method except the baseline.
    alternative: of the paired t-test of the cell's 0/1 correctness against the baseline's
        (:func:`crossicl.paired_ttest`, as scipy.stats.ttest_rel): "greater", "less" or "two-sided".

    Columns: the cell, n (paired items), accuracy and zero_shot (percent, on the paired items), gain (points),
    rel_gain (gain / zero_shot as a fraction; NaN when zero_shot is 0), t, df, p (the p-value of
    ``alternative``; t and p are NaN with fewer than 2 pairs). Raises ValueError if a cell has no baseline cell,
    more than one, or no item in common with it.

        >>> gains(df)[["target", "source", "gain", "p"]]
    """
    import numpy as np
    import pandas as pd

    _require(df, CELL + ("id",), "gains")
    col = _flag_column(df, scorer)
    if alternative not in ("greater", "less", "two-sided"):
        raise ValueError(f"gains: unknown alternative '{alternative}' (greater, less, two-sided)")
    d = _keyed(df)
    if method is None:
        methods = sorted(m for m in d["method"].unique() if m != baseline)
    else:
        methods = [method] if isinstance(method, str) else list(method)
        absent = [m for m in methods if m not in set(d["method"])]
        if absent:
            raise ValueError(f"gains: no cells of method {', '.join(absent)}")
    if baseline in methods:
        raise ValueError(f"gains: method and baseline are both '{baseline}'")
    base = d[d["method"] == baseline]
    base_cells = {k: g.set_index("id")[col] for k, g in base.groupby(list(_KEY), sort=True)}
    base_by = {}
    for key, s in base_cells.items():
        base_by.setdefault((key[5], key[0]), []).append((key, s))
    rows = []
    for key, g in d[d["method"].isin(methods)].groupby(list(_KEY), sort=True):
        target, model = key[0], key[5]
        cell = dict(zip(CELL, key))
        found = base_by.get((model, target), [])
        if not found:
            raise ValueError(f"gains: cell {cell} has no '{baseline}' cell for target '{target}', model '{model}'")
        if len(found) > 1:
            raise ValueError(f"gains: target '{target}', model '{model}' has {len(found)} '{baseline}' cells "
                             f"({[f[0] for f in found]}); keep one")
        zero = found[0][1]
        if g["id"].duplicated().any() or zero.index.duplicated().any():
            raise ValueError(f"gains: cell {cell} or its '{baseline}' cell lists an item id twice")
        pair = g.set_index("id")[[col]].join(zero.rename("_zero"), how="inner")
        if len(pair) == 0:
            raise ValueError(f"gains: cell {cell} shares no item with its '{baseline}' cell")
        a = pair[col].to_numpy(dtype=np.float64)
        b = pair["_zero"].to_numpy(dtype=np.float64)
        acc, acc0 = 100.0 * a.mean(), 100.0 * b.mean()
        t = dof = p = math.nan
        if len(pair) >= 2:
            r = _crossicl.paired_ttest(a, b, alternative=alternative)
            t, dof, p = r.t, r.df, r.pvalue
        rows.append(key + (len(pair), acc, acc0, acc - acc0, (acc - acc0) / acc0 if acc0 else math.nan, t, dof, p))
    cols = list(_KEY) + ["n", "accuracy", "zero_shot", "gain", "rel_gain", "t", "df", "p"]
    table = pd.DataFrame(rows, columns=cols)
    table = table.astype({"k": "int64", "_seed": "int64", "n": "int64"})
    return _unkey(table)[list(CELL) + cols[6:]]


def headline_gain(df, *, scorer: str = "paper_eval", model: str | None = None, method: str = "cross-task",
                  baseline: str = "zero-shot", k: int = 1) -> float:
    """The abstract's headline gain of one model, as a fraction (1.0631 = +106.31%), through
    :func:`crossicl.headline_gain`: (A_cross - A_zero) / A_zero with A_zero the mean over targets of the
    ``baseline`` accuracy and A_cross the mean over targets of the mean over sources of the k-shot ``method``
    accuracy (each cell's accuracy on all its items; several seeds of one (target, source) are averaged).

    model: may be left out when the records hold one model. Raises ValueError (naming the target) when a
    target has baseline but no cross cells or the reverse, or when a target has several baseline cells.

        >>> headline_gain(df, model="llama-2-7b", method="totally-cross-sim")
    """
    _require(df, CELL + ("id",), "headline_gain")
    model = _single_model(df, model, "headline_gain")
    s = summary(df[df["model"] == model], scorer=scorer)
    zs = s[s["method"] == baseline]
    if zs["target"].duplicated().any():
        dup = zs.loc[zs["target"].duplicated(), "target"].iloc[0]
        raise ValueError(f"headline_gain: target '{dup}' has several '{baseline}' cells for model '{model}'")
    cr = s[(s["method"] == method) & (s["k"] == k)]
    if zs.empty or cr.empty:
        raise ValueError(f"headline_gain: model '{model}' has no '{baseline}' cells or no {k}-shot '{method}' "
                         f"cells")
    zero = {r.target: float(r.accuracy) for r in zs.itertuples()}
    cross_means = cr.assign(source=cr["source"].fillna("")).groupby(["target", "source"])["accuracy"].mean()
    cross = {(t, src): float(v) for (t, src), v in cross_means.items()}
    return float(_crossicl.headline_gain(zero, cross))


def accuracy_table(df, *, method: str = "cross-task", k: int = 1, scorer: str = "paper_eval",
                   model: str | None = None, baselines: Sequence[str] = ("zero-shot", "in-task")):
    """Accuracy (percent) of the k-shot ``method`` cells as a sources x targets DataFrame (NaN where a pair was
    not run, e.g. source == target), followed by one row per method of ``baselines`` present in the records
    (zero-shot at any k, other baselines at the same k). Several seeds of one cell are averaged.

    model: may be left out when the records hold one model. Raises ValueError if there is no k-shot cell of
    ``method``.

        >>> accuracy_table(df, method="totally-cross-sim", k=1, model="llama-2-7b").round(1)
    """
    import pandas as pd

    _require(df, CELL + ("id",), "accuracy_table")
    model = _single_model(df, model, "accuracy_table")
    s = summary(df[df["model"] == model], scorer=scorer)
    cr = s[(s["method"] == method) & (s["k"] == k)]
    if cr.empty:
        raise ValueError(f"accuracy_table: no {k}-shot '{method}' cells for model '{model}' (methods: "
                         f"{', '.join(sorted(s['method'].unique()))})")
    cr = cr.assign(source=cr["source"].fillna("(none)"))
    table = cr.pivot_table(index="source", columns="target", values="accuracy", aggfunc="mean")
    extra = []
    for b in baselines:
        rows = s[(s["method"] == b) & ((s["k"] == k) | (b == "zero-shot"))]
        if not rows.empty:
            extra.append(rows.groupby("target")["accuracy"].mean().rename(b))
    if extra:
        table = pd.concat([table, pd.DataFrame(extra)])
    table = table.reindex(columns=sorted(table.columns))
    table.index.name = "source"
    table.columns.name = "target"
    return table


# ----------------------------------------------------------------------------------------------------- plots
def _pyplot():
    # matplotlib's own backend choice: inline in a notebook, Agg on a headless machine.
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path: pathlib.Path) -> pathlib.Path:
    """Writes a Figure as PNG (120 dpi), closes it and returns the path."""
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)
    return path


def _models(df, model: str | None) -> list[str]:
    if model is not None:
        return [_single_model(df, model, "plot")]
    return sorted(df["model"].unique())


def plot_heatmap(df, *, method: str = "cross-task", k: int = 1, scorer: str = "paper_eval",
                 model: str | None = None, baselines: Sequence[str] = ("zero-shot", "in-task"),
                 cmap: str = "viridis", annotate: bool = True):
    """Heatmap of :func:`accuracy_table` (sources x targets, baseline rows below a line), one panel per model
    (or only ``model``), each cell annotated with its accuracy. Returns a matplotlib Figure.

        >>> plot_heatmap(df, k=1).savefig("heatmap.png")
    """
    import numpy as np

    plt = _pyplot()
    models = _models(df, model)
    tables = [accuracy_table(df, method=method, k=k, scorer=scorer, model=m, baselines=baselines) for m in models]
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
        ax.set_title(f"{m}\n{k}-shot {method} accuracy (%)", fontsize=9)
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
    """Bar chart of the gain over ``baseline`` (points, from :func:`gains`) per source of the k-shot
    ``method`` cells, one panel per model (or only ``model``). Bars are grouped by target, or with
    ``average=True`` one bar per source: the mean over targets with the standard deviation over targets as error
    bar. Returns a matplotlib Figure.

        >>> plot_gains(df, average=True).savefig("gains.png")
    """
    import numpy as np

    plt = _pyplot()
    models = _models(df, model)
    g = gains(df[df["model"].isin(models)], scorer=scorer, method=method, baseline=baseline)
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


# ----------------------------------------------------------------------------------------------------- report
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
    summary, per-cell table, accuracy pivot, gains with paired t-tests, headline gain), summary.csv, gains.csv,
    heatmap.png and gains.png. A section whose inputs are missing (no zero-shot cells, no cross-task cells) is
    replaced by a line saying why, and its files are not written. Returns the paths written.

        >>> write_report("runs/demo")   # or: crossicl report runs/demo
    """
    run = pathlib.Path(run_dir)
    out = pathlib.Path(out_dir) if out_dir is not None else run / "report"
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

    md += ["## Configuration", ""]
    cfg_path = run / "config.json"
    if cfg_path.is_file():
        try:
            config = json.loads(cfg_path.read_text(encoding="utf-8"))
            md += _config_lines(config) or ["config.json is empty."]
        except json.JSONDecodeError as e:
            md.append(f"config.json is not valid JSON ({e.msg} at line {e.lineno}); skipped.")
    else:
        md.append("No config.json in the run folder.")
    md.append("")

    p = out / "summary.csv"
    table.to_csv(p, index=False)
    written.append(p)
    md += ["## Accuracy per cell", "", markdown_table(table), ""]

    md += ["## Accuracy by source and target", ""]
    if cross is None:
        md += [f"Skipped: no cross-task cells (method {' or '.join(CROSS_METHODS)}).", ""]
    else:
        for m in models:
            ks = sorted(df.loc[(df["model"] == m) & (df["method"] == cross), "k"].unique())
            for k in ks:
                md += [f"### {m}, {k}-shot {cross}", "",
                       markdown_table(accuracy_table(df, method=cross, k=int(k), scorer=scorer, model=m),
                                      index=True), ""]

    md += ["## Gains over zero-shot", ""]
    if "zero-shot" not in methods:
        md += ["Skipped: no zero-shot cells.", ""]
        g = None
    elif methods == {"zero-shot"}:
        md += ["Skipped: only zero-shot cells.", ""]
        g = None
    else:
        try:
            g = gains(df, scorer=scorer, method=None)
        except ValueError as e:
            md += [f"Skipped: {e}.", ""]
            g = None
    if g is not None:
        p = out / "gains.csv"
        g.to_csv(p, index=False)
        written.append(p)
        md += ["Accuracy and zero-shot accuracy on the items both cells share; gain in points; one-tailed "
               "paired t-test (cell > zero-shot) over the items.", "", markdown_table(g), ""]

    md += ["## Headline gain", ""]
    if cross is None or "zero-shot" not in methods:
        md += ["Skipped: needs zero-shot and 1-shot cross-task cells.", ""]
    else:
        lines = []
        for m in models:
            try:
                h = headline_gain(df, scorer=scorer, model=m, method=cross, k=1)
                lines.append(f"- {m}: {100 * h:+.2f}% (mean over targets of the mean over sources of 1-shot "
                             f"{cross} vs mean over targets of zero-shot)")
            except ValueError as e:
                lines.append(f"- {m}: not computable ({e})")
        md += lines + [""]

    md += ["## Plots", ""]
    if cross is None:
        md += ["Skipped: no cross-task cells.", ""]
    else:
        k_plot = 1 if (df.loc[df["method"] == cross, "k"] == 1).any() else int(df.loc[df["method"] == cross,
                                                                                        "k"].min())
        models_k = [m for m in models if ((df["model"] == m) & (df["method"] == cross) & (df["k"] == k_plot)).any()]
        sub = df[df["model"].isin(models_k)]
        written.append(save_figure(plot_heatmap(sub, method=cross, k=k_plot, scorer=scorer), out / "heatmap.png"))
        md += [f"![{k_plot}-shot {cross} accuracy](heatmap.png)", ""]
        if g is None:
            md += ["gains.png skipped: no gains (see above).", ""]
        else:
            written.append(save_figure(plot_gains(sub, method=cross, k=k_plot, scorer=scorer), out / "gains.png"))
            md += [f"![{k_plot}-shot {cross} gain over zero-shot](gains.png)", ""]

    from . import analysis  # the activation-analysis section, when `crossicl analyze` has run
    try:
        lines, files = analysis.report_section(run, out, df, scorer=scorer)
    except ValueError as e:
        lines, files = ["## Activation similarity and gain", "", f"Skipped: {e}", ""], []
    md += lines
    written += files

    p = out / "report.md"
    p.write_text("\n".join(md), encoding="utf-8")
    written.append(p)
    return written


__all__ = ["CELL", "SCORERS", "REQUIRED_KEYS", "CROSS_METHODS", "load_records", "summary", "gains",
           "headline_gain", "accuracy_table", "plot_heatmap", "plot_gains", "markdown_table", "write_report"]
