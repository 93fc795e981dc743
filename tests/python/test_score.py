"""Scorers from Python: the binding surface, Python str semantics, and the golden results of the paper.

Golden checks (../shared/paper): every row of golden/accuracy.csv is rescored from golden/<T>/preds.jsonl.gz
under both paper scorers, the per-row correct_eval/correct_compare flags are reproduced, and the pseudo-labels
of pseudo/<T>.jsonl are reproduced by crossicl.majority_vote.
"""
from __future__ import annotations

import collections
import gzip
import json
import random
import unicodedata

import pytest

import crossicl
from tolerance import approx_f64

GOLDEN_TARGETS = ("ARC-Challenge", "financial_phrasebank")


# ---------------------------------------------------------------------------------------------- surface
def test_defaults_and_keywords():
    assert crossicl.exact_match(" B", "B") is True
    assert crossicl.exact_match(" A A A A", "A") is False
    assert crossicl.exact_match(" A A A A", "A", "paper_compare") is True
    assert crossicl.exact_match(pred=" A A A A", gold="A", scorer="paper_compare") is True
    assert crossicl.normalize(" B. mountains") == "b"
    assert crossicl.normalize(" B. mountains", scorer="paper_compare") == "b"
    assert crossicl.normalize("nan", scorer="paper_eval") == ""
    assert crossicl.normalize("nan", scorer="paper_compare") == "nan"
    assert crossicl.normalize_gold("NEGATIVE") == "negative"
    assert crossicl.accuracy([" B", "C"], ["B", "B"]) == 50.0
    assert crossicl.accuracy(preds=[" A A"], golds=["A"], scorer="paper_compare") == 100.0
    assert crossicl.majority_vote(["B", "A", "", "B", "A"]) == "A"
    assert crossicl.majority_vote(votes=["", ""]) == ""


def test_gold_lists():
    assert crossicl.exact_match(" b", ["A", "B"], "paper_compare") is True
    assert crossicl.exact_match(" c", ["A", "B"], "paper_compare") is False
    assert crossicl.exact_match(" c", [], "paper_compare") is False
    assert crossicl.accuracy([" b", "c", "d"], [["A", "B"], "C", ["x"]], "paper_compare") == approx_f64(200 / 3, 4)


def test_labels_keyword_only_and_clean_only():
    labels = ["positive", "negative", "neutral"]
    assert crossicl.normalize(" negative, positive", "clean", labels=labels) == "negative"
    assert crossicl.exact_match("The answer is D", "D", "clean", labels=["A", "B", "C", "D"]) is True
    assert crossicl.exact_match("The answer is D", "D", "clean") is False
    assert crossicl.accuracy(["so: Neutral."], ["neutral"], "clean", labels=labels) == 100.0
    with pytest.raises(TypeError):
        crossicl.normalize(" B", "clean", labels)  # labels is keyword-only
    with pytest.raises(ValueError, match="clean"):
        crossicl.normalize(" B", "paper_eval", labels=labels)


def test_bad_scorer_names():
    for fn, args in [
        (crossicl.normalize, (" B",)),
        (crossicl.exact_match, (" B", "B")),
        (crossicl.accuracy, ([" B"], ["B"])),
        (crossicl.normalize_gold, ("B",)),
    ]:
        with pytest.raises(ValueError, match=r'"eval".*paper_eval.*paper_compare.*clean'):
            fn(*args, scorer="eval")
        with pytest.raises(crossicl.InvalidArgument):
            fn(*args, scorer="Paper_Eval")


def test_accuracy_errors():
    with pytest.raises(ValueError, match=r"preds=2, golds=1"):
        crossicl.accuracy(["a", "b"], ["a"])
    with pytest.raises(ValueError):
        crossicl.accuracy([], [])
    with pytest.raises(TypeError):
        crossicl.accuracy(["a"], [1])


def test_accepts_numpy_and_pandas_sequences():
    np = pytest.importorskip("numpy")
    preds = np.array([" B", "C", " a"])
    golds = np.array(["B", "B", "A"])
    assert crossicl.accuracy(preds, golds) == approx_f64(200 / 3, 4)
    pd = pytest.importorskip("pandas")
    assert crossicl.accuracy(pd.Series(list(preds)), list(golds)) == approx_f64(200 / 3, 4)


# ---------------------------------------------------------------------------------------------- Python semantics
def _ref_eval(pred: str, gold: str) -> bool:
    """The Eval notebook's rule written with Python str methods (README section 9)."""
    na = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A",
          "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}
    p = "" if pred in na else pred
    p = p.replace("Label:", "").strip(" .[]\":'").lower()
    p = p.split(".")[0].split(",")[0].split(":")[0].split("-")[0]
    return p == gold.lower()


def _ref_compare(pred: str, gold) -> bool:
    """utils/llm.py compare_output as described in README section 9."""
    p = pred.replace("Label:", "").strip(" .[]\":'").lower().replace(".", "").split(" ")[0]
    golds = gold if isinstance(gold, list) else [gold]
    return any(p == g.lower() for g in golds)


def test_python_lower_equals_str_lower_per_code_point():
    if unicodedata.unidata_version == "14.0.0":
        cps = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    else:  # other Unicode versions: the blocks the tables must cover whatever the interpreter
        cps = list(range(0x0, 0x250)) + list(range(0x370, 0x530)) + [0x212A, 0x2126]
    text = "".join(chr(c) for c in cps)
    got = crossicl.python_lower(text)
    if got != text.lower():
        bad = [hex(c) for c in cps if crossicl.python_lower(chr(c)) != chr(c).lower()]
        pytest.fail(f"{len(bad)} code points differ from str.lower(): {bad[:20]}")
    print(f"python_lower == str.lower() on {len(cps)} code points (Unicode {unicodedata.unidata_version})")


def test_python_lower_final_sigma_contexts():
    rng = random.Random(5)
    alphabet = ["\u03a3", "\u0391", "a", "A", " ", "'", ".", "\u0301", "\u00ad", "1", "\u02b0", "\u0130", "\u212a",
                "-", "\u03c3", "\u1f08", "\u00b7"]
    for _ in range(20000):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
        assert crossicl.python_lower(s) == s.lower(), repr(s)


def test_paper_scorers_equal_python_reference_on_random_strings():
    rng = random.Random(11)
    pieces = ["Label:", "label:", "Label", "A", "b", "B", " ", "  ", ".", ",", ":", "-", "[", "]", '"', "'", "\t", "\n",
              "nan", "None", "NEGATIVE", "positive", "\u00c9", "\u0130", "\u212a", "\u03a3", "\u0416", "é", "ß"]
    golds = ["A", "B", "negative", "positive", "nan", "é", "k", "ж", "label", ""]
    n = 0
    for _ in range(20000):
        pred = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 6)))
        gold = rng.choice(golds)
        assert crossicl.exact_match(pred, gold, "paper_eval") is _ref_eval(pred, gold), repr((pred, gold))
        assert crossicl.exact_match(pred, gold, "paper_compare") is _ref_compare(pred, gold), repr((pred, gold))
        n += _ref_eval(pred, gold) + _ref_compare(pred, gold)
    assert n > 100  # the generator does produce hits


# ---------------------------------------------------------------------------------------------- golden data
def _key(rec) -> tuple:
    seed = rec["seed"]
    return (rec["method"], rec["source"] or "", str(rec["shots"]), "" if seed is None else str(seed), rec["model"])


@pytest.fixture(scope="module")
def golden_preds(paper_dir):
    out = {}
    for target in GOLDEN_TARGETS:
        with gzip.open(paper_dir / "golden" / target / "preds.jsonl.gz", "rt", encoding="utf-8") as f:
            out[target] = [json.loads(line) for line in f]
    return out


def test_golden_rows_flags(golden_preds):
    n = mismatches = 0
    for target, rows in golden_preds.items():
        for r in rows:
            e = crossicl.exact_match(r["pred"], r["true_label"], "paper_eval")
            c = crossicl.exact_match(r["pred"], r["true_label"], "paper_compare")
            mismatches += (e != bool(r["correct_eval"])) + (c != bool(r["correct_compare"]))
            n += 1
    print(f"per-row flags: {n} predictions x 2 scorers, {mismatches} mismatches")
    assert n == 74500 + 74649
    assert mismatches == 0


def test_golden_accuracy_csv(paper_dir, golden_preds):
    pd = pytest.importorskip("pandas")
    table = pd.read_csv(paper_dir / "golden" / "accuracy.csv", dtype=str, keep_default_na=False)
    groups = collections.defaultdict(list)
    for target, rows in golden_preds.items():
        for r in rows:
            groups[(target,) + _key(r)].append(r)
    checked = 0
    disagree = 0
    for row in table.itertuples(index=False):
        key = (row.target, row.method, row.source, row.shots, row.seed, row.model)
        assert key in groups, key
        recs = groups.pop(key)
        preds = [r["pred"] for r in recs]
        golds = [r["true_label"] for r in recs]
        n_eval = sum(crossicl.exact_match(p, g, "paper_eval") for p, g in zip(preds, golds))
        n_cmp = sum(crossicl.exact_match(p, g, scorer="paper_compare") for p, g in zip(preds, golds))
        acc_eval = crossicl.accuracy(preds, golds, "paper_eval")
        acc_cmp = crossicl.accuracy(preds, golds, scorer="paper_compare")
        n_empty = sum(p.strip() == "" for p in preds)
        assert len(recs) == int(row.n), key
        assert n_eval == int(row.n_correct_eval), key
        assert n_cmp == int(row.n_correct_compare), key
        assert f"{acc_eval:.4f}" == row.accuracy_eval, key
        assert f"{acc_cmp:.4f}" == row.accuracy_compare, key
        assert acc_eval == approx_f64(100.0 * n_eval / len(recs), 4)  # 100 * hits / n: 2 roundings each side
        assert n_empty == int(row.n_empty_pred), key
        disagree += n_eval != n_cmp
        checked += 1
    assert not groups, f"prediction groups without an accuracy.csv row: {sorted(groups)[:5]}"
    print(f"accuracy.csv: {checked}/{len(table)} rows reproduced exactly; scorers disagree on {disagree} files")
    assert checked == len(table) == 298
    assert disagree == 35  # README section 9: 35 files of the two golden targets


def test_golden_pseudo_labels(paper_dir):
    checked = 0
    for target in GOLDEN_TARGETS:
        with open(paper_dir / "pseudo" / f"{target}.jsonl", encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        for row in rows:
            for model, m in row["models"].items():
                votes = list(m["source_preds"].values())
                assert len(votes) == 10
                assert crossicl.majority_vote(votes) == m["pseudo_label"], (target, row["id"], model, votes)
                checked += 1
    print(f"pseudo-labels reproduced: {checked}/{checked}")
    assert checked == (8 + 9) * 3
