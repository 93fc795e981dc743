"""Statistics from Python: paired_ttest against scipy, headline_gain against an independent pandas computation
on golden/accuracy.csv, and the authors' per-source t-test on the golden predictions (README section 12).
"""
from __future__ import annotations

import collections
import gzip
import json
import math

import pytest

import crossicl
from tolerance import approx_f64

np = pytest.importorskip("numpy")
scipy_stats = pytest.importorskip("scipy.stats")

GOLDEN_TARGETS = ("ARC-Challenge", "financial_phrasebank")
MODELS = ("llama-2-7b", "llama-2-13b", "text-davinci-003")


def _same(x: float, ref: float, rtol: float) -> bool:
    if math.isnan(ref):
        return math.isnan(x)
    if math.isinf(ref):
        return x == ref
    return abs(x - ref) <= rtol * abs(ref) + 1e-300


def _check_against_scipy(a, b):
    for alt in ("greater", "less", "two-sided"):
        ref = scipy_stats.ttest_rel(a, b, alternative=alt)
        got = crossicl.paired_ttest(a, b, alternative=alt)
        assert _same(got.t, float(ref.statistic), 1e-10), (alt, got, ref)
        assert _same(got.pvalue, float(ref.pvalue), 1e-9), (alt, got, ref)
        assert got.df == len(a) - 1
        assert got.n == len(a)
        assert got.alternative == alt
        two = scipy_stats.ttest_rel(a, b)
        assert _same(got.p_two_tailed, float(two.pvalue), 1e-9)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_paired_ttest_random_against_scipy():
    rng = np.random.default_rng(2024)
    cases = 0
    for n in (2, 3, 5, 17, 100, 501, 2502):
        for _ in range(5):
            a = (rng.random(n) < rng.random()).astype(float)
            b = (rng.random(n) < rng.random()).astype(float)
            _check_against_scipy(a, b)
            x = rng.normal(size=n)
            _check_against_scipy(x, x * 0.5 + rng.normal(size=n))
            ties = rng.integers(0, 3, size=n).astype(float)  # many tied differences
            _check_against_scipy(ties, rng.integers(0, 3, size=n).astype(float))
            cases += 3
    print(f"paired_ttest == scipy.stats.ttest_rel on {cases} random cases x 3 alternatives")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_paired_ttest_zero_variance_like_scipy():
    for a, b in [([1, 1, 1], [0, 0, 0]), ([0, 0, 0, 0], [1, 1, 1, 1]), ([1, 0, 1], [1, 0, 1]),
                 ([2.0, 3.0], [1.0, 2.0]), ([5, 5], [5, 5])]:
        _check_against_scipy(np.array(a, float), np.array(b, float))
    r = crossicl.paired_ttest([1, 1, 1], [0, 0, 0])
    assert r.t == math.inf and r.pvalue == 0.0
    r = crossicl.paired_ttest([1, 0, 1], [1, 0, 1])
    assert math.isnan(r.t) and math.isnan(r.pvalue)


def test_paired_ttest_surface():
    r = crossicl.paired_ttest([1, 1, 0, 1], [0, 1, 0, 0])
    assert isinstance(r, crossicl.TTestResult)
    assert r.alternative == "greater"
    assert r.pvalue == r.p_one_tailed == pytest.approx(0.09084505690810468, rel=1e-12)
    assert r.mean_diff == 0.5
    assert "TTestResult(" in repr(r)
    # numpy bool / int arrays and tuples are accepted
    r2 = crossicl.paired_ttest(np.array([True, True, False, True]), (0, 1, 0, 0), alternative="two-sided")
    assert r2.pvalue == pytest.approx(2 * r.pvalue, rel=1e-12)
    with pytest.raises(TypeError):
        crossicl.paired_ttest([1, 0], [0, 0], "greater")  # alternative is keyword-only
    with pytest.raises(ValueError, match="two-sided"):
        crossicl.paired_ttest([1, 0], [0, 0], alternative="bigger")
    with pytest.raises(ValueError, match=r"a=3, b=2"):
        crossicl.paired_ttest([1, 0, 1], [0, 0])
    with pytest.raises(ValueError, match=r"n=1"):
        crossicl.paired_ttest([1], [0])
    with pytest.raises(ValueError, match="1-D"):
        crossicl.paired_ttest(np.zeros((2, 2)), np.zeros((2, 2)))


def test_incomplete_beta_and_t_against_scipy():
    special = pytest.importorskip("scipy.special")
    rng = np.random.default_rng(3)
    for _ in range(300):
        a, b = rng.uniform(0.05, 300, size=2)
        x = rng.random()
        assert crossicl.incomplete_beta(a, b, x) == pytest.approx(float(special.betainc(a, b, x)), rel=1e-10,
                                                                  abs=1e-280)
    for t in (-30.0, -2.0, -0.1, 0.0, 0.3, 1.7, 8.0, 45.0):
        for df in (1, 2.5, 10, 2501):
            assert crossicl.student_t_sf(t, df) == pytest.approx(float(scipy_stats.t.sf(t, df)), rel=1e-9,
                                                                  abs=1e-280)


def test_accuracy_interval():
    lo, hi = crossicl.accuracy_interval(23, 500)
    z = float(scipy_stats.norm.ppf(0.975))
    p, n = 23 / 500, 500
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert (lo, hi) == pytest.approx((100 * (c - h), 100 * (c + h)), rel=1e-12)
    lo99, hi99 = crossicl.accuracy_interval(23, 500, confidence=0.99)
    assert lo99 < lo and hi99 > hi
    with pytest.raises(ValueError):
        crossicl.accuracy_interval(5, 0)


def test_headline_gain_surface():
    zero = {"T1": 20.0, "T2": 60.0}
    cross = {("T1", "s1"): 30.0, ("T1", "s2"): 50.0, ("T2", "s1"): 80.0}
    assert crossicl.headline_gain(zero, cross) == approx_f64(0.5, 16, scale=1.5)  # (a - z) / z, a / z = 1.5
    with pytest.raises(ValueError, match="T2"):
        crossicl.headline_gain({"T1": 20.0}, cross)
    with pytest.raises(ValueError, match="T3"):
        crossicl.headline_gain({"T1": 20.0, "T3": 5.0}, {("T1", "s1"): 30.0})
    with pytest.raises(ValueError):
        crossicl.headline_gain({"T1": 0.0}, {("T1", "s1"): 30.0})


# ---------------------------------------------------------------------------------------------- golden data
@pytest.fixture(scope="module")
def accuracy_table(paper_dir):
    pd = pytest.importorskip("pandas")
    return pd.read_csv(paper_dir / "golden" / "accuracy.csv", keep_default_na=False)


@pytest.mark.parametrize("scorer,column", [("paper_eval", "accuracy_eval"), ("paper_compare", "accuracy_compare")])
def test_headline_gain_on_golden_targets(accuracy_table, scorer, column):
    t = accuracy_table
    for model in MODELS:
        zs = t[(t.method == "zero-shot") & (t.model == model)]
        cr = t[(t.method == "totally-cross-sim") & (t.shots == 1) & (t.model == model)]
        zero = {r.target: float(getattr(r, column)) for r in zs.itertuples()}
        cross = {(r.target, r.source): float(getattr(r, column)) for r in cr.itertuples()}
        assert sorted(zero) == list(GOLDEN_TARGETS)
        assert len(cross) == 20
        gain = crossicl.headline_gain(zero, cross)
        # independent computation: per-target mean over sources, then mean over targets
        a_zero = zs.groupby("target")[column].mean().mean()
        a_cross = cr.groupby("target")[column].mean().mean()
        expected = (a_cross - a_zero) / a_zero
        # the pooled mean over all 20 pairs is the same here (10 sources each), the mean of per-target gains is not
        per_target = ((cr.groupby("target")[column].mean() - zs.set_index("target")[column]) /
                      zs.set_index("target")[column]).mean()
        print(f"{scorer} {model}: gain on the 2 golden targets = {100 * gain:.2f}% "
              f"(mean of per-target gains {100 * per_target:.2f}%)")
        assert gain == pytest.approx(expected, rel=1e-12)
        assert abs(gain - per_target) > 1e-6


@pytest.fixture(scope="module")
def correctness(paper_dir):
    """(model, method, source) -> {target: {id: correct under paper_eval}} for zero-shot and 1-shot cross."""
    out = collections.defaultdict(dict)
    for target in GOLDEN_TARGETS:
        order = []
        per_key = collections.defaultdict(dict)
        with gzip.open(paper_dir / "golden" / target / "preds.jsonl.gz", "rt", encoding="utf-8") as f:
            for line in f:
                r = json.loads(line)
                if r["method"] == "zero-shot":
                    key = (r["model"], "zero-shot", "")
                    if r["model"] == MODELS[0]:
                        order.append(r["id"])
                elif r["method"] == "totally-cross-sim" and r["shots"] == 1:
                    key = (r["model"], "cross", r["source"])
                else:
                    continue
                per_key[key][r["id"]] = crossicl.exact_match(r["pred"], r["true_label"], "paper_eval")
        for key, d in per_key.items():
            assert set(d) == set(order), key
            out[key][target] = [float(d[i]) for i in order]
    return out


def test_authors_ttest_on_golden_targets(correctness):
    n_tests = 0
    not_significant = []
    for model in MODELS:
        zero = np.concatenate([correctness[(model, "zero-shot", "")][t] for t in GOLDEN_TARGETS])
        sources = sorted(s for (m, kind, s) in correctness if m == model and kind == "cross")
        assert len(sources) == 10
        for source in sources:
            cross = np.concatenate([correctness[(model, "cross", source)][t] for t in GOLDEN_TARGETS])
            assert len(cross) == len(zero) == 1001
            ref = scipy_stats.ttest_rel(cross, zero)
            ref_greater = scipy_stats.ttest_rel(cross, zero, alternative="greater")
            got = crossicl.paired_ttest(cross, zero, alternative="greater")
            assert got.t == pytest.approx(float(ref.statistic), rel=1e-10)
            assert got.p_two_tailed / 2 == pytest.approx(float(ref.pvalue) / 2, rel=1e-9, abs=1e-300)
            assert got.pvalue == pytest.approx(float(ref_greater.pvalue), rel=1e-9, abs=1e-300)
            # the authors' decision "p/2 < 0.05 and t > 0" is the one-tailed decision
            assert (float(ref.pvalue) / 2 < 0.05 and float(ref.statistic) > 0) == (got.pvalue < 0.05)
            if not got.pvalue < 0.05:
                not_significant.append((model, source))
            n_tests += 1
    print(f"authors' t-test on 2 golden targets: {n_tests} (model, source) tests equal scipy; "
          f"not significant: {not_significant}")
    assert n_tests == 30
