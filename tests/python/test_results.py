"""crossicl.results: records -> tables, statistics, plots and the run report.

Synthetic records whose every figure is worked out by hand (or by pandas / scipy independently), and the pack's
published predictions converted to the record format, checked against the published accuracy table.
"""
from __future__ import annotations

import gzip
import json
import math

import pytest

pd = pytest.importorskip("pandas")
scipy_stats = pytest.importorskip("scipy.stats")

import crossicl  # noqa: E402
from crossicl import plots, report, results  # noqa: E402
from tolerance import approx, approx_f64, f64_rel  # noqa: E402

# Accuracies are float64 percentages from a few operations (100 * hits / n, means of a few cells): 8 roundings
# (f64_rel(8) ~ 9e-16) relative; a difference of accuracies scales with the accuracies (scale 100, the percent
# range). The Wilson interval keeps 1e-9 relative: crossicl's normal quantile is accurate to about that.

MODEL = "m1"
IDS = {"T1": ["a", "b", "c", "d"], "T2": ["a", "b", "c", "d", "e"]}
# (target, method, source, k, seed) -> paper_eval correctness per item (IDS order; T2/cross-task/s2 has an extra
# item "f" that the zero-shot cell lacks)
EVAL = {
    ("T1", "zero-shot", None, 0, None): [1, 0, 0, 0],
    ("T1", "cross-task", "s1", 1, None): [1, 1, 0, 1],
    ("T1", "cross-task", "s2", 1, None): [0, 1, 0, 0],
    ("T1", "in-task", None, 1, None): [1, 1, 1, 1],
    ("T1", "random-cross", "s1", 1, 0): [1, 0, 1, 0],
    ("T1", "random-cross", "s1", 1, 1): [1, 1, 1, 0],
    ("T2", "zero-shot", None, 0, None): [1, 1, 0, 0, 0],
    ("T2", "cross-task", "s1", 1, None): [1, 1, 1, 0, 0],
    ("T2", "cross-task", "s2", 1, None): [1, 1, 1, 1, 0, 1],
    ("T2", "in-task", None, 1, None): [0, 0, 0, 0, 0],
}
# paper_compare differs from paper_eval in one cell only
COMPARE = {("T1", "zero-shot", None, 0, None): [1, 1, 0, 0]}
EMPTY = {("T1", "zero-shot", None, 0, None): {"b": "", "c": "  \n"}}  # n_empty_pred = 2 there


def make_records(model: str = MODEL) -> list[dict]:
    recs = []
    for (target, method, source, k, seed), hits in EVAL.items():
        ids = IDS[target] + (["f"] if len(hits) > len(IDS[target]) else [])
        cmp_hits = COMPARE.get((target, method, source, k, seed), hits)
        for i, (item, hit) in enumerate(zip(ids, hits)):
            gold = "yes"
            pred = EMPTY.get((target, method, source, k, seed), {}).get(item, "yes" if hit else "no")
            recs.append({"target": target, "method": method, "source": source, "k": k, "seed": seed,
                         "model": model, "id": item, "index": i, "gold": gold, "pred": pred, "raw": pred,
                         "correct_paper_eval": bool(hit), "correct_paper_compare": bool(cmp_hits[i]),
                         "correct_clean": bool(hit), "demo_ids": [], "demo_scores": [], "prompt_sha256": "0" * 64,
                         "n_prompt_tokens": 10 + i})
    return recs


def write_jsonl(path, recs) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")


@pytest.fixture()
def run_dir(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    write_jsonl(d / "records.jsonl", make_records())
    return d


@pytest.fixture()
def df(run_dir):
    return results.load_records(run_dir)


def acc(hits) -> float:
    return 100.0 * sum(hits) / len(hits)


def wilson(h: int, n: int) -> tuple[float, float]:
    z = 1.959963984540054
    p = h / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    w = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return 100 * (c - w), 100 * (c + w)


def cell_row(table, target, method, source, k=1, seed=None):
    sel = (table.target == target) & (table.method == method) & (table.k == k)
    sel &= table.source.isna() if source is None else (table.source == source)
    sel &= table.seed.isna() if seed is None else (table.seed == seed)
    rows = table[sel]
    assert len(rows) == 1, rows
    return rows.iloc[0]


# ------------------------------------------------------------------------------------------------- loading
def test_load_records_columns_and_types(df):
    assert len(df) == sum(len(v) for v in EVAL.values())
    assert df["k"].dtype == "int64"
    assert str(df["seed"].dtype) == "Int64"
    assert df["seed"].isna().sum() == len(df) - 8  # only the two random-cross cells are seeded
    assert df["source"].isna().sum() == 4 + 5 + 4 + 5
    assert df["correct_paper_eval"].dtype == bool
    assert df["id"].map(type).eq(str).all()
    assert "n_prompt_tokens" in df.columns and "index" in df.columns  # extra keys are kept


def test_load_records_shards_and_identical_duplicates(tmp_path):
    recs = make_records()
    write_jsonl(tmp_path / "records.shard-0-of-2.jsonl", recs[:20])
    write_jsonl(tmp_path / "records.shard-1-of-2.jsonl", recs[15:])  # 5 records in both shards, identical
    (tmp_path / "notes.jsonl").write_text("not a record file\n")       # not records*.jsonl: ignored
    d = results.load_records(tmp_path)
    assert len(d) == len(recs)
    assert not d.duplicated(["target", "method", "source", "k", "seed", "model", "id"]).any()
    # a single file works as well
    assert len(results.load_records(tmp_path / "records.shard-0-of-2.jsonl")) == 20


def test_load_records_gzip(tmp_path):
    recs = make_records()
    with gzip.open(tmp_path / "records.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write("".join(json.dumps(r) + "\n" for r in recs))
    assert len(results.load_records(tmp_path / "records.jsonl.gz")) == len(recs)


def test_load_records_conflicting_duplicate(tmp_path):
    recs = make_records()
    bad = dict(recs[3], pred="something else")
    write_jsonl(tmp_path / "records.jsonl", recs + [bad])
    with pytest.raises(ValueError) as e:
        results.load_records(tmp_path)
    msg = str(e.value)
    assert f"records.jsonl:{len(recs) + 1}" in msg and "records.jsonl:4" in msg
    assert repr(bad["id"]) in msg and bad["target"] in msg and bad["method"] in msg


def test_load_records_malformed_json_names_file_and_line(tmp_path):
    lines = [json.dumps(r) for r in make_records()[:5]]
    lines[2] = lines[2][:-5] + "}"
    (tmp_path / "records.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"records\.jsonl:3: malformed record"):
        results.load_records(tmp_path)


@pytest.mark.parametrize("key", ["target", "k", "pred", "correct_clean", "id"])
def test_load_records_missing_key(tmp_path, key):
    recs = make_records()[:4]
    del recs[1][key]
    write_jsonl(tmp_path / "records.jsonl", recs)
    with pytest.raises(ValueError, match=rf"records\.jsonl:2: record lacks key\(s\) {key}"):
        results.load_records(tmp_path / "records.jsonl")


@pytest.mark.parametrize("key,value", [("k", "1"), ("k", -1), ("seed", 1.5), ("source", 3), ("id", None),
                                       ("correct_paper_eval", "yes"), ("correct_clean", 2), ("pred", None)])
def test_load_records_bad_types(tmp_path, key, value):
    recs = make_records()[:3]
    recs[2][key] = value
    write_jsonl(tmp_path / "records.jsonl", recs)
    with pytest.raises(ValueError, match=rf"records\.jsonl:3: '{key}' must be"):
        results.load_records(tmp_path)


def test_load_records_accepts_int_ids_and_01_flags(tmp_path):
    recs = make_records()[:3]
    recs[0]["id"], recs[1]["correct_clean"] = 7, 1
    write_jsonl(tmp_path / "records.jsonl", recs)
    d = results.load_records(tmp_path)
    assert d["id"].iloc[0] == "7"
    assert d["correct_clean"].dtype == bool and bool(d["correct_clean"].iloc[1])


def test_load_records_not_an_object(tmp_path):
    (tmp_path / "records.jsonl").write_text(json.dumps(make_records()[0]) + "\n[1, 2]\n")
    with pytest.raises(ValueError, match=r"records\.jsonl:2: a record must be a JSON object"):
        results.load_records(tmp_path)


def test_load_records_torn_last_line(tmp_path):
    recs = make_records()[:4]
    (tmp_path / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs[:3]) +
                                            json.dumps(recs[3])[:40])
    with pytest.warns(RuntimeWarning, match=r"records\.jsonl:4: skipped an incomplete last line"):
        d = results.load_records(tmp_path)
    assert len(d) == 3
    with pytest.raises(ValueError, match=r"records\.jsonl:4: malformed record"):
        results.load_records(tmp_path, skip_torn_tail=False)


def test_load_records_missing_inputs(tmp_path):
    with pytest.raises(ValueError, match="no records"):
        results.load_records(tmp_path)
    with pytest.raises(ValueError, match="no such records file"):
        results.load_records(tmp_path / "absent.jsonl")
    (tmp_path / "records.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="no records"):
        results.load_records(tmp_path)


# ------------------------------------------------------------------------------------------------- summary
def test_summary_by_hand(df):
    s = results.summary(df)
    assert len(s) == len(EVAL)
    assert list(s.columns) == ["target", "method", "source", "k", "seed", "model", "n", "n_correct", "accuracy",
                               "ci_lo", "ci_hi", "n_empty_pred"]
    for (target, method, source, k, seed), hits in EVAL.items():
        row = cell_row(s, target, method, source, k, seed)
        assert row.n == len(hits) and row.n_correct == sum(hits)
        assert row.accuracy == approx_f64(acc(hits), 8)
        assert (row.ci_lo, row.ci_hi) == approx(wilson(sum(hits), len(hits)), 1e-9, scale=100.0)
        assert row.model == MODEL
    assert cell_row(s, "T2", "cross-task", "s2").accuracy == approx_f64(500 / 6, 8)
    assert cell_row(s, "T1", "zero-shot", None, 0).n_empty_pred == 2
    assert s.n_empty_pred.sum() == 2
    assert cell_row(s, "T1", "random-cross", "s1", 1, 1).accuracy == 75.0


def test_summary_scorer_and_errors(df):
    s = results.summary(df, scorer="paper_compare")
    assert cell_row(s, "T1", "zero-shot", None, 0).accuracy == 50.0
    assert cell_row(s, "T1", "cross-task", "s1").accuracy == 75.0
    wide = results.summary(df, confidence=0.99)
    row = cell_row(wide, "T1", "cross-task", "s1")
    assert row.ci_lo < wilson(3, 4)[0] and row.ci_hi > wilson(3, 4)[1]
    with pytest.raises(ValueError, match="unknown scorer 'exact'.*clean, paper_compare, paper_eval"):
        results.summary(df, scorer="exact")
    with pytest.raises(ValueError, match="missing column.*target"):
        results.summary(df.drop(columns=["target"]))
    with pytest.raises(ValueError, match="no records"):
        results.summary(df.iloc[:0])
    with pytest.raises(TypeError):
        results.summary(df, "paper_eval")  # options are keyword-only


# --------------------------------------------------------------------------------------------------- gains
def independent_gains(d, scorer, method, alternative="greater"):
    """pandas + scipy, written without crossicl.results."""
    col = f"correct_{scorer}"
    d = d.assign(src=d.source.fillna(""), sd=d.seed.fillna(-1).astype(int))
    zero = d[d.method == "zero-shot"]
    out = {}
    for (t, s, k, sd, m), g in d[d.method == method].groupby(["target", "src", "k", "sd", "model"]):
        z = zero[(zero.target == t) & (zero.model == m)]
        j = g[["id", col]].merge(z[["id", col]], on="id", suffixes=("", "_z"))
        a, b = j[col].astype(float).to_numpy(), j[col + "_z"].astype(float).to_numpy()
        r = scipy_stats.ttest_rel(a, b, alternative=alternative)
        out[(t, s, k, sd, m)] = (len(j), 100 * a.mean(), 100 * b.mean(), float(r.statistic), float(r.pvalue))
    return out


@pytest.mark.parametrize("scorer", ["paper_eval", "paper_compare"])
def test_gains_against_pandas_and_scipy(df, scorer):
    g = results.gains(df, scorer=scorer)
    ref = independent_gains(df, scorer, "cross-task")
    assert len(g) == len(ref) == 4
    for r in g.itertuples():
        n, a, z, t, p = ref[(r.target, r.source or "", r.k, -1, r.model)]
        assert (r.n, r.accuracy, r.zero_shot) == (n, approx_f64(a, 8), approx_f64(z, 8))
        assert r.gain == approx_f64(a - z, 8, scale=100.0)  # a difference: its error scales with a and z
        assert r.rel_gain == approx_f64((a - z) / z, 8, scale=100.0 / z)
        assert r.df == n - 1
        assert r.t == pytest.approx(t, rel=1e-10)
        assert r.p == pytest.approx(p, rel=1e-9)


def test_gains_by_hand(df):
    g = results.gains(df)
    row = cell_row(g, "T1", "cross-task", "s1")
    # d = [0, 1, 0, 1]: mean 0.5, sd 0.57735, t = 0.5 / (0.57735 / 2) = sqrt(3)
    assert (row.n, row.accuracy, row.zero_shot, row.gain, row.rel_gain) == (4, 75.0, 25.0, 50.0, 2.0)
    assert row.t == approx_f64(math.sqrt(3), 16)
    assert row.p == pytest.approx(crossicl.student_t_sf(math.sqrt(3), 3), rel=1e-9)  # as the SciPy comparisons
    # the extra item "f" has no zero-shot twin: 5 pairs, accuracy on those 5 (80), not the cell's 83.33
    row = cell_row(g, "T2", "cross-task", "s2")
    assert (row.n, row.accuracy, row.zero_shot) == (5, 80.0, 40.0)
    # every method but the baseline, seeds kept apart
    allg = results.gains(df, method=None)
    assert sorted(allg.method.unique()) == ["cross-task", "in-task", "random-cross"]
    assert len(allg) == 4 + 2 + 2
    assert cell_row(allg, "T1", "random-cross", "s1", 1, 1).gain == 50.0
    two = results.gains(df, alternative="two-sided")
    assert cell_row(two, "T1", "cross-task", "s1").p == pytest.approx(
        2 * cell_row(g, "T1", "cross-task", "s1").p, rel=1e-9)
    # T2 in-task loses everything: the one-tailed p of "greater" is large, of "less" small
    less = results.gains(df, method="in-task", alternative="less")
    assert cell_row(less, "T2", "in-task", None).p < 0.5 < cell_row(allg, "T2", "in-task", None).p


def test_gains_errors(df):
    with pytest.raises(ValueError, match="no cells of method mixed-cross"):
        results.gains(df, method="mixed-cross")
    no_zero_t2 = df[~((df.target == "T2") & (df.method == "zero-shot"))]
    with pytest.raises(ValueError, match="no 'zero-shot' cell for target 'T2'"):
        results.gains(no_zero_t2)
    disjoint = df.copy()
    disjoint.loc[(disjoint.target == "T1") & (disjoint.method == "zero-shot"), "id"] = "zz"
    with pytest.raises(ValueError, match="shares no item"):
        results.gains(disjoint.drop_duplicates(["target", "method", "id"]))
    with pytest.raises(ValueError, match="lists an item id twice"):
        results.gains(pd.concat([df, df.iloc[[0]]]))
    with pytest.raises(ValueError, match="unknown alternative"):
        results.gains(df, alternative="bigger")
    with pytest.raises(ValueError, match="unknown scorer"):
        results.gains(df, scorer="nope")
    with pytest.raises(ValueError, match="method and baseline"):
        results.gains(df, method="zero-shot")


# ----------------------------------------------------------------------------------- headline and pivots
def test_headline_gain_by_hand(df):
    a_zero = (25.0 + 40.0) / 2
    a_cross = ((75.0 + 25.0) / 2 + (60.0 + 500 / 6) / 2) / 2
    assert results.headline_gain(df) == approx_f64((a_cross - a_zero) / a_zero, 16, scale=a_cross / a_zero)
    a_zero_cmp = (50.0 + 40.0) / 2
    assert results.headline_gain(df, scorer="paper_compare") == approx_f64((a_cross - a_zero_cmp) / a_zero_cmp, 16,
                                                                            scale=a_cross / a_zero_cmp)
    # random-cross: the two seeds of (T1, s1) are averaged; T2 has no random-cross cell -> named in the error
    with pytest.raises(ValueError, match="T2"):
        results.headline_gain(df, method="random-cross")
    only_t1 = df[df.target == "T1"]
    assert results.headline_gain(only_t1, method="random-cross") == approx_f64((62.5 - 25.0) / 25.0, 16,
                                                                               scale=62.5 / 25.0)
    with pytest.raises(ValueError, match="no 'zero-shot' cells or no 2-shot"):
        results.headline_gain(df, k=2)


def test_multi_model_needs_model(run_dir):
    write_jsonl(run_dir / "records.m2.jsonl", make_records("m2"))
    d = results.load_records(run_dir)
    assert sorted(d.model.unique()) == ["m1", "m2"]
    with pytest.raises(ValueError, match="2 models.*pass model="):
        results.headline_gain(d)
    with pytest.raises(ValueError, match="no records for model 'm3'"):
        results.accuracy_table(d, model="m3")
    assert results.headline_gain(d, model="m2") == results.headline_gain(d, model="m1")  # same records, same sums
    assert len(results.gains(d)) == 8


def test_accuracy_table(df):
    t = results.accuracy_table(df)
    assert list(t.index) == ["s1", "s2", "zero-shot", "in-task"]
    assert list(t.columns) == ["T1", "T2"]
    expected = [75.0, 60.0, 25.0, 500 / 6, 25.0, 40.0, 100.0, 0.0]
    assert t.to_numpy().ravel().tolist() == approx_f64(expected, 8)
    r = results.accuracy_table(df, method="random-cross", baselines=("zero-shot",))
    assert list(r.index) == ["s1", "zero-shot"]
    assert r.loc["s1", "T1"] == 62.5 and math.isnan(r.loc["s1", "T2"])
    with pytest.raises(ValueError, match="no 4-shot 'cross-task' cells"):
        results.accuracy_table(df, k=4)


def test_markdown_table():
    t = pd.DataFrame({"name": ["a|b", None], "acc": [12.3456, float("nan")], "p": [0.000123456, 0.5],
                      "n": [3, 4]})
    md = report.markdown_table(t).splitlines()
    assert md[0] == "| name | acc | p | n |"
    assert md[1] == "|:---|---:|---:|---:|"
    assert md[2] == "| a\\|b | 12.35 | 0.000123 | 3 |"
    assert md[3] == "|  |  | 0.5 | 4 |"


# --------------------------------------------------------------------------------------------------- plots
def test_plots(df):
    fig = plots.plot_heatmap(df)
    ax = fig.axes[0]
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == sorted(f"{v:.1f}" for v in (75.0, 60.0, 25.0, 500 / 6, 25.0, 40.0, 100.0, 0.0))
    assert [t.get_text() for t in ax.get_yticklabels()] == ["s1", "s2", "zero-shot", "in-task"]
    fig = plots.plot_gains(df)
    heights = sorted(round(p.get_height(), 6) for p in fig.axes[0].patches)
    assert heights == sorted([50.0, 0.0, 20.0, 40.0])
    fig = plots.plot_gains(df, average=True)
    ax = fig.axes[0]
    assert sorted(round(p.get_height(), 6) for p in ax.patches) == [20.0, 35.0]
    import matplotlib.pyplot as plt
    plt.close("all")


# -------------------------------------------------------------------------------------------------- report
def test_write_report(run_dir):
    (run_dir / "config.json").write_text(json.dumps({"name": "tiny", "grid": {"targets": ["T1", "T2"], "k": [1]},
                                                     "_base": "/hidden"}))
    written = report.write_report(run_dir)
    out = run_dir / "report"
    assert sorted(p.name for p in written) == ["gains.csv", "gains.png", "heatmap.png", "report.md", "summary.csv"]
    assert all(p.parent == out and p.stat().st_size > 0 for p in written)
    assert (out / "heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    assert "`name`: \"tiny\"" in md and "`grid.targets`: [\"T1\", \"T2\"]" in md and "_base" not in md
    assert "| T2 | cross-task | s2 | 1 |  | m1 | 6 | 5 | 83.33 |" in md
    assert "| s2 | 25.00 | 83.33 |" in md and "| in-task | 100.00 | 0.00 |" in md
    lo, hi = wilson(3, 4)
    assert f"| 75.00 | {lo:.2f} | {hi:.2f} |" in md
    assert "- m1: +87.18%" in md
    assert "| +50.00 | +200.00% |" in md
    s = pd.read_csv(out / "summary.csv")
    assert len(s) == len(EVAL) and s.accuracy.sum() == approx_f64(sum(acc(h) for h in EVAL.values()), len(EVAL) + 8)
    g = pd.read_csv(out / "gains.csv")
    assert len(g) == 8 and g.gain.max() == 75.0 and g.gain.min() == -40.0  # T1 / T2 in-task
    assert set(g.method) == {"cross-task", "in-task", "random-cross"}


def test_write_report_skips_missing_sections(tmp_path):
    recs = [r for r in make_records() if r["method"] != "zero-shot"]
    run = tmp_path / "run"
    run.mkdir()
    write_jsonl(run / "records.jsonl", recs)
    written = report.write_report(run, tmp_path / "out", scorer="clean")
    assert sorted(p.name for p in written) == ["heatmap.png", "report.md", "summary.csv"]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "No config.json in the run folder." in md
    assert "Skipped: no zero-shot cells." in md
    assert "Skipped: needs zero-shot and 1-shot cross-task cells." in md
    assert "gains.png skipped" in md
    only_zero = [r for r in make_records() if r["method"] == "zero-shot"]
    write_jsonl(run / "records.jsonl", only_zero)
    written = report.write_report(run)
    assert sorted(p.name for p in written) == ["report.md", "summary.csv"]
    md = (run / "report" / "report.md").read_text()
    assert "Skipped: no cross-task cells" in md and "Skipped: only zero-shot cells." in md
    with pytest.raises(ValueError, match="unknown scorer"):
        report.write_report(run, scorer="bogus")


# ------------------------------------------------------------------------------------------ golden records
GOLDEN_TARGETS = ("ARC-Challenge", "financial_phrasebank")


@pytest.fixture(scope="module")
def golden(paper_dir, tmp_path_factory):
    """The pack's published predictions in the record format (published method names kept), loaded back."""
    d = tmp_path_factory.mktemp("golden_run")
    with open(d / "records.jsonl", "w", encoding="utf-8") as out:
        for target in GOLDEN_TARGETS:
            with gzip.open(paper_dir / "golden" / target / "preds.jsonl.gz", "rt", encoding="utf-8") as f:
                for line in f:
                    r = json.loads(line)
                    rec = {"target": target, "method": r["method"], "source": r["source"], "k": r["shots"],
                           "seed": None if r["seed"] is None else int(r["seed"]), "model": r["model"],
                           "id": str(r["id"]), "gold": r["true_label"], "pred": r["pred"],
                           "correct_paper_eval": bool(r["correct_eval"]),
                           "correct_paper_compare": bool(r["correct_compare"]),
                           "correct_clean": crossicl.exact_match(r["pred"], r["true_label"], "clean")}
                    out.write(json.dumps(rec) + "\n")
    table = pd.read_csv(paper_dir / "golden" / "accuracy.csv", keep_default_na=False)
    return results.load_records(d), table


def test_golden_summary_equals_published_accuracy(golden):
    d, table = golden
    ev = results.summary(d, scorer="paper_eval")
    cmp_ = results.summary(d, scorer="paper_compare")
    assert len(ev) == len(cmp_) == len(table) == 298
    key = lambda s: (s.target, s.method, s.source if isinstance(s.source, str) else "", int(s.k),  # noqa: E731
                     -1 if pd.isna(s.seed) else int(s.seed), s.model)
    got_ev = {key(r): r for r in ev.itertuples()}
    got_cmp = {key(r): r for r in cmp_.itertuples()}
    for r in table.itertuples():
        k = (r.target, r.method, r.source, int(r.shots), -1 if r.seed == "" else int(float(r.seed)), r.model)
        e, c = got_ev[k], got_cmp[k]
        assert (e.n, e.n_correct, c.n_correct, e.n_empty_pred) == (r.n, r.n_correct_eval, r.n_correct_compare,
                                                                   r.n_empty_pred), k
        assert round(e.accuracy, 4) == approx_f64(r.accuracy_eval, 8, scale=100.0), k  # the same 4-decimal value
        assert round(c.accuracy, 4) == approx_f64(r.accuracy_compare, 8, scale=100.0), k


@pytest.mark.parametrize("scorer,column,published", [("paper_eval", "accuracy_eval", 0.9466),
                                                     ("paper_compare", "accuracy_compare", 0.9602)])
def test_golden_headline_gain_7b(golden, scorer, column, published):
    d, t = golden
    gain = results.headline_gain(d, scorer=scorer, model="llama-2-7b", method="totally-cross-sim")
    zs = t[(t.method == "zero-shot") & (t.model == "llama-2-7b")]
    cr = t[(t.method == "totally-cross-sim") & (t.shots == 1) & (t.model == "llama-2-7b")]
    ref = crossicl.headline_gain({r.target: float(getattr(r, column)) for r in zs.itertuples()},
                                 {(r.target, r.source): float(getattr(r, column)) for r in cr.itertuples()})
    assert gain == pytest.approx(ref, abs=1e-5)  # the csv's accuracies are rounded to 4 decimals
    assert round(gain, 4) == published


def test_golden_accuracy_table_and_gains(golden):
    d, t = golden
    tab = results.accuracy_table(d, method="totally-cross-sim", k=1, model="llama-2-7b")
    cr = t[(t.method == "totally-cross-sim") & (t.shots == 1) & (t.model == "llama-2-7b")]
    assert tab.loc[list(cr.source.unique())].notna().sum().sum() == len(cr) == 20
    for r in cr.itertuples():
        assert tab.loc[r.source, r.target] == pytest.approx(r.accuracy_eval, abs=5e-5)
    assert tab.loc["zero-shot", "ARC-Challenge"] == approx_f64(4.6, 8)
    g = results.gains(d[d.model == "llama-2-7b"], method="totally-cross-sim")
    assert len(g) == 20 + len(t[(t.method == "totally-cross-sim") & (t.shots != 1) & (t.model == "llama-2-7b")])
    # every published 500-item cell pairs with all 500 zero-shot items: the gain is the accuracy difference
    g1 = g[g.k == 1]
    for r in g1.itertuples():
        assert r.n == (500 if r.target == "ARC-Challenge" else 501)
        assert r.gain == approx_f64(tab.loc[r.source, r.target] - tab.loc["zero-shot", r.target], 8, scale=100.0)
