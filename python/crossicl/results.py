"""Results of an experiment run: per-item records to tables and statistics.

A run folder holds ``records.jsonl`` (or shard files ``records*.jsonl``), one JSON object per (cell, item),
written by :class:`crossicl.Experiment` (the format: crossicl.records). A cell is (target, method, source, k,
seed, model). This module derives the paper's tables from the records::

    from crossicl import results
    df = results.load_records("runs/demo")              # every records*.jsonl of the run folder
    results.summary(df)                                  # accuracy and Wilson 95% interval per cell
    results.gains(df)                                    # cross-task vs zero-shot on the same items, paired t-test
    results.headline_gain(df, model="llama-2-7b")        # the abstract's aggregate gain (a fraction)
    results.accuracy_table(df, k=1, model="llama-2-7b")  # sources x targets, plus zero-shot / in-task rows

Plots are in crossicl.plots, the markdown report in crossicl.report (``report.write_report("runs/demo")``).

Accuracies are in percent and gains in percentage points, here and in crossicl.analysis. ``scorer`` picks the
record column ``correct_<scorer>`` ("paper_eval", "paper_compare", "clean"). Bad input raises ``ValueError``
naming the file and line, the cell or the column. pandas is needed.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

from . import _crossicl
from .records import CELL, REQUIRED_KEYS, SCORERS, SCORING_PREFIXES, load_records

CROSS_METHODS = ("cross-task", "totally-cross-sim")
"""Names of the 1-source cross-task method: the runner's, then the paper's published one."""


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


def models_in(df, model: str | None = None) -> list[str]:
    """The models of the records, sorted; or ``[model]`` after checking that the records hold it."""
    if model is not None:
        return [_single_model(df, model, "plot")]
    return sorted(df["model"].unique())


def scorings_in(df) -> list[str]:
    """The ways of reading predictions the records carry (keys of crossicl.records.SCORING_PREFIXES, in that
    order): "generate" always, the label ones when the run scored labels."""
    return [m for m, p in SCORING_PREFIXES.items()
            if f"{p}pred" in df.columns and f"{p}correct_paper_eval" in df.columns]


def by_scoring(df, scoring: str):
    """The records with ``pred`` and the ``correct_<scorer>`` flags of another way of reading the prediction
    (``scoring``, a key of crossicl.records.SCORING_PREFIXES), so every table and plot of this module reports that
    reading: ``summary(by_scoring(df, "calibrated"))``. Raises ValueError when the records lack it (or lack it
    for some records, naming how many)."""
    if scoring not in SCORING_PREFIXES:
        raise ValueError(f"unknown scoring '{scoring}' (known: {', '.join(SCORING_PREFIXES)})")
    prefix = SCORING_PREFIXES[scoring]
    if not prefix:
        return df
    cols = [f"{prefix}pred"] + [f"{prefix}correct_{s}" for s in SCORERS]
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"the records have no '{scoring}' predictions (no column {missing[0]}; the run's "
                         f"decode.scoring decides; present: {', '.join(scorings_in(df))})")
    n_na = int(df[cols].isna().any(axis=1).sum())
    if n_na:
        raise ValueError(f"{n_na} of {len(df)} records have no '{scoring}' prediction")
    out = df.copy()
    out["pred"] = df[f"{prefix}pred"]
    for s in SCORERS:
        out[f"correct_{s}"] = df[f"{prefix}correct_{s}"].astype(bool)
    return out


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


def pooled_ttest(df, *, scorer: str = "paper_eval", method: str = "cross-task", baseline: str = "zero-shot",
                 k: int = 1, model: str | None = None, alternative: str = "greater"):
    """The authors' significance test, per source: the k-shot ``method`` cells of one source on every target
    against each target's ``baseline`` cell, as one paired t-test over the concatenated 0/1 correctness of all
    the targets' shared items (the fixture README, section 12: 2502 items over the 5 targets). Seeds of one
    cell are averaged per item first.

    Columns: source, targets (how many), n (paired items), accuracy and zero_shot (percent over those items),
    gain (points), t, df, p (the p-value of ``alternative``; NaN with fewer than 2 pairs). Raises ValueError
    when there is no such cell.

        >>> pooled_ttest(df)[["source", "gain", "p"]]
    """
    import numpy as np
    import pandas as pd

    _require(df, CELL + ("id",), "pooled_ttest")
    model = _single_model(df, model, "pooled_ttest")
    col = _flag_column(df, scorer)
    d = df[df["model"] == model].assign(_hit=lambda x: x[col].astype(float), id=lambda x: x["id"].astype(str))
    base = d[d["method"] == baseline].groupby(["target", "id"])["_hit"].mean().rename("_zero")
    cells = d[(d["method"] == method) & (d["k"] == k)]
    if cells.empty or base.empty:
        raise ValueError(f"pooled_ttest: model '{model}' has no {k}-shot '{method}' cells or no '{baseline}' cells")
    rows = []
    for source, g in cells.groupby("source", sort=True):
        hit = g.groupby(["target", "id"])["_hit"].mean()
        pair = pd.concat([hit, base], axis=1, join="inner")
        a, b = pair["_hit"].to_numpy(np.float64), pair["_zero"].to_numpy(np.float64)
        t = dof = p = math.nan
        if len(pair) >= 2:
            r = _crossicl.paired_ttest(a, b, alternative=alternative)
            t, dof, p = r.t, r.df, r.pvalue
        acc, acc0 = (100.0 * a.mean(), 100.0 * b.mean()) if len(pair) else (math.nan, math.nan)
        rows.append((source, pair.index.get_level_values(0).nunique(), len(pair), acc, acc0, acc - acc0, t, dof, p))
    return pd.DataFrame(rows, columns=["source", "targets", "n", "accuracy", "zero_shot", "gain", "t", "df", "p"])


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


__all__ = ["CELL", "SCORERS", "REQUIRED_KEYS", "CROSS_METHODS", "load_records", "scorings_in", "by_scoring",
           "summary", "gains", "pooled_ttest", "headline_gain", "accuracy_table", "models_in"]
