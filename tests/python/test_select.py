"""Selectors from Python: numpy interop (no copy), keyword options, errors, threads, and the golden
reproduction of the paper's cosine top-4 demonstrations (fixture pack README sections 4 and 6)."""
from __future__ import annotations

import gzip
import json
import os
import re
import threading

import numpy as np
import pytest

import crossicl
from tolerance import assert_close, f32_rel

TARGETS = ["ARC-Challenge", "financial_phrasebank", "medmcqa", "social_i_qa"]
SOURCES = ["ARC-Easy", "commonsense_qa"]


def unit_rows(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def numpy_topk(queries: np.ndarray, pool: np.ndarray, k: int) -> np.ndarray:
    s = (queries.astype(np.float64) @ pool.astype(np.float64).T) / np.outer(
        np.linalg.norm(queries.astype(np.float64), axis=1), np.linalg.norm(pool.astype(np.float64), axis=1))
    return np.argsort(-s, axis=1, kind="stable")[:, :k]


# ------------------------------------------------------------------------------------------------ golden


def _render(template: str, fields: dict[str, str]) -> str:
    # Placeholders are replaced by the raw field strings verbatim, in one pass.
    return re.sub(r"\{(\w+)\}", lambda m: fields[m.group(1)], template)


def _jsonl(path):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def source_demos(paper_dir):
    tasks = json.loads((paper_dir / "tasks.json").read_text(encoding="utf-8"))
    demos = {}
    for s in SOURCES:
        template = tasks["templates"]["as_run"][tasks["tasks"][s]["prompt_template_id"]]
        rows = _jsonl(paper_dir / "sources" / f"{s}.jsonl")
        demos[s] = [_render(template, r["fields"]) + " " + r["label"] for r in rows]
        ids = (paper_dir / "embeddings" / f"source.{s}.ids.txt").read_text(encoding="utf-8").splitlines()
        assert ids == [r["id"] for r in rows]  # embedding rows are in pool order
    return demos


@pytest.fixture(scope="module")
def source_selectors(paper_dir):
    return {s: crossicl.CosineTopK(np.load(paper_dir / "embeddings" / f"source.{s}.npy")) for s in SOURCES}


def test_golden_top4_reproduces_published_demos(paper_dir, source_demos, source_selectors):
    total = matched = 0
    for t in TARGETS:
        items = {it["id"]: it for it in _jsonl(paper_dir / "targets" / f"{t}.jsonl.gz")}
        emb = np.load(paper_dir / "embeddings" / f"target.{t}.npy")
        ids_txt = (paper_dir / "embeddings" / f"target.{t}.ids.txt").read_text(encoding="utf-8").splitlines()
        assert emb.shape == (len(ids_txt), 384)
        for s in SOURCES:
            ids, scores = source_selectors[s].select(emb, 4)
            assert ids.shape == (len(ids_txt), 4) and ids.dtype == np.int64 and scores.dtype == np.float32
            assert np.all(np.diff(scores, axis=1) <= 0)
            n = sum(
                [source_demos[s][j] for j in ids[row]] == items[item_id]["demos_top4"][s]
                for row, item_id in enumerate(ids_txt))
            print(f"top-4 {t} <- {s}: {n}/{len(ids_txt)}")
            total += len(ids_txt)
            matched += n
    print(f"top-4 total: {matched}/{total}")
    assert (matched, total) == (4004, 4004)


def test_golden_sciq_top1(paper_dir, source_demos, source_selectors):
    items = {it["id"]: it for it in _jsonl(paper_dir / "embeddings" / "sciq.embedded_items.jsonl")}
    emb = np.load(paper_dir / "embeddings" / "target.sciq.npy")
    ids_txt = (paper_dir / "embeddings" / "target.sciq.ids.txt").read_text(encoding="utf-8").splitlines()
    for s in SOURCES:
        ids, _ = source_selectors[s].select(emb, 1)
        n = sum(source_demos[s][ids[row, 0]] == items[i]["top1"][s] for row, i in enumerate(ids_txt))
        print(f"sciq top-1 <- {s}: {n}/{len(ids_txt)}")
        assert n == len(ids_txt) == 500


def test_numpy_permutation_matches_pseudo_selection(paper_dir):
    sel = json.loads((paper_dir / "pseudo" / "selection.json").read_text(encoding="utf-8"))
    checked = 0
    for n, by_seed in sel["positions"].items():
        for seed, positions in by_seed.items():
            p = crossicl.numpy_legacy_permutation(int(seed), int(n))
            assert p[:4].tolist() == positions
            checked += 1
    assert checked == 6


# ------------------------------------------------------------------------------------------ permutation


def test_numpy_legacy_permutation_equals_numpy():
    rng = np.random.default_rng(123)
    cases = [(0, 0), (0, 1), (0, 2), (1, 8), (2**32 - 1, 50), (7, 1000), (123456789, 65537)]
    cases += [(int(s), int(n)) for s, n in zip(rng.integers(0, 2**32, 60), rng.integers(0, 300, 60))]
    for seed, n in cases:
        got = crossicl.numpy_legacy_permutation(seed, n)
        assert got.dtype == np.int64 and got.shape == (n,)
        np.testing.assert_array_equal(got, np.random.RandomState(seed).permutation(n), err_msg=f"{seed=} {n=}")


def test_numpy_legacy_permutation_errors():
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*32 - 1\] \(seed=-1\)"):
        crossicl.numpy_legacy_permutation(-1, 3)
    with pytest.raises(ValueError, match=r"seed must be in"):
        crossicl.numpy_legacy_permutation(2**32, 3)
    with pytest.raises(crossicl.InvalidArgument, match=r"n must be >= 0 \(n=-2\)"):
        crossicl.numpy_legacy_permutation(0, -2)


# ---------------------------------------------------------------------------------------------- cosine


def test_cosine_uses_the_numpy_array_without_copy():
    pool = unit_rows(100, 16, 0)
    sel = crossicl.CosineTopK(pool)
    assert sel.pool is pool
    assert (sel.pool_size, sel.dim) == (100, 16)
    assert (sel.query_block, sel.pool_block, sel.num_threads) == (256, 2048, 0)
    del pool  # the selector keeps the array alive
    q = unit_rows(5, 16, 1)
    ids, scores = sel.select(q, 3)
    np.testing.assert_array_equal(ids, numpy_topk(q, sel.pool, 3))


def test_cosine_views_a_memmap_without_copy(tmp_path):
    np.save(tmp_path / "pool.npy", unit_rows(30, 8, 15))
    pool = np.load(tmp_path / "pool.npy", mmap_mode="r")
    sel = crossicl.CosineTopK(pool)
    assert np.shares_memory(sel.pool, pool)
    q = unit_rows(3, 8, 16)
    np.testing.assert_array_equal(sel.select(q, 2)[0], numpy_topk(q, np.asarray(pool), 2))


def test_cosine_converts_other_arrays_once():
    pool64 = unit_rows(50, 8, 2).astype(np.float64)
    sel = crossicl.CosineTopK(pool64)
    assert sel.pool is not pool64 and sel.pool.dtype == np.float32 and sel.pool.flags.c_contiguous
    strided = np.asfortranarray(pool64.astype(np.float32))
    q = unit_rows(4, 8, 3)
    ids_a, scores_a = sel.select(q, 5)
    ids_b, scores_b = crossicl.CosineTopK(strided).select(q[:, :], 5)
    np.testing.assert_array_equal(ids_a, ids_b)
    np.testing.assert_array_equal(scores_a, scores_b)
    ids_c, _ = sel.select(q.tolist(), 5)  # nested lists are converted too
    np.testing.assert_array_equal(ids_a, ids_c)
    ids_d, _ = sel.select(q[::-1][::-1].T.T, 5)
    np.testing.assert_array_equal(ids_a, ids_d)


def test_cosine_results_and_keyword_options():
    pool = unit_rows(300, 24, 4)
    q = unit_rows(40, 24, 5)
    ids, scores = crossicl.CosineTopK(pool).select(q, 6)
    assert ids.shape == scores.shape == (40, 6)
    assert ids.dtype == np.int64 and scores.dtype == np.float32
    np.testing.assert_array_equal(ids, numpy_topk(q, pool, 6))
    ref = np.take_along_axis(q.astype(np.float64) @ pool.astype(np.float64).T, ids, axis=1)
    # float32 dot over dim 24 times two float32 inverse norms: gamma_(24+4), an absolute error (|cos| <= 1)
    assert_close(scores, ref, f32_rel(24 + 4), scale=1.0)
    for opts in [dict(query_block=1, pool_block=1, num_threads=1), dict(query_block=7, pool_block=50, num_threads=2)]:
        ids2, scores2 = crossicl.CosineTopK(pool, **opts).select(q, 6)
        np.testing.assert_array_equal(ids2, ids)
        np.testing.assert_array_equal(scores2, scores)  # bit-identical whatever the blocking
    with pytest.raises(TypeError):
        crossicl.CosineTopK(pool, 16)  # options are keyword-only
    # Ties: the lower pool row first.
    tied = np.array([[1, 0], [0, 1], [2, 0], [1, 0]], dtype=np.float32)
    ids, scores = crossicl.CosineTopK(tied).select(np.array([[3, 0]], dtype=np.float32), 4)
    assert ids.tolist() == [[0, 2, 3, 1]]
    # No queries: empty [0, k] arrays.
    ids, scores = crossicl.CosineTopK(tied).select(np.zeros((0, 2), dtype=np.float32), 2)
    assert ids.shape == (0, 2)


@pytest.mark.parametrize(
    "pool, queries, k, message",
    [
        (np.eye(3, dtype=np.float32), np.eye(3, dtype=np.float32), 5, r"k must be <= pool size \(k=5, pool=3\)"),
        (np.eye(3, dtype=np.float32), np.eye(3, dtype=np.float32), 0, r"k must be >= 1 \(k=0\)"),
        (np.eye(3, dtype=np.float32), np.eye(2, dtype=np.float32), 1,
         r"mismatched embedding widths: queries have dim=2, pool has dim=3"),
        (np.eye(3, dtype=np.float32), np.ones(3, dtype=np.float32), 1, r"queries must be a 2-D array .*ndim=1"),
        (np.eye(3, dtype=np.float32), np.array([[1, 0, 0], [0, np.nan, 0]], dtype=np.float32), 1,
         r"query row 1 is not finite \(column 1 = nan\)"),
        (np.eye(3, dtype=np.float32), np.zeros((2, 3), dtype=np.float32), 1, r"query row 0 has zero norm"),
    ],
)
def test_cosine_select_errors(pool, queries, k, message):
    sel = crossicl.CosineTopK(pool)
    with pytest.raises(ValueError, match=message):
        sel.select(queries, k)


def test_cosine_pool_errors():
    with pytest.raises(crossicl.InvalidArgument, match=r"pool is empty \(shape \(0, 4\)\)"):
        crossicl.CosineTopK(np.zeros((0, 4), dtype=np.float32))
    bad = np.eye(4, dtype=np.float32)
    bad[2, 3] = np.inf
    with pytest.raises(ValueError, match=r"pool row 2 is not finite \(column 3 = inf\)"):
        crossicl.CosineTopK(bad)
    bad[2] = 0
    with pytest.raises(ValueError, match=r"pool row 2 has zero norm"):
        crossicl.CosineTopK(bad)
    with pytest.raises(ValueError, match=r"pool must be a 2-D array .*ndim=3"):
        crossicl.CosineTopK(np.ones((2, 2, 2), dtype=np.float32))
    with pytest.raises(ValueError, match=r"pool must be a 2-D float array"):
        crossicl.CosineTopK([["a", "b"]])


def test_select_is_thread_safe():  # the GIL release: test_gil.py
    pool = unit_rows(3000, 64, 6)
    q = unit_rows(400, 64, 7)
    sel = crossicl.CosineTopK(pool, num_threads=1)
    expected, _ = sel.select(q, 4)
    results = [None] * 4

    def work(i):
        results[i] = sel.select(q, 4)[0]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        np.testing.assert_array_equal(r, expected)


# ------------------------------------------------------------------------------------ other selectors


def test_mixed_pools():
    a, b = unit_rows(60, 12, 8), unit_rows(90, 12, 9)
    q = unit_rows(10, 12, 10)
    mix = crossicl.MixedCosineTopK([a, b])
    assert (mix.n_pools, mix.total_size, mix.dim) == (2, 150, 12)
    assert mix.pools[0] is a and mix.pools[1] is b
    pool_ids, ids, scores = mix.select(q, 5)
    assert pool_ids.shape == ids.shape == scores.shape == (10, 5)
    flat = numpy_topk(q, np.concatenate([a, b]), 5)
    np.testing.assert_array_equal(np.where(pool_ids == 0, ids, ids + 60), flat)
    with pytest.raises(ValueError, match=r"pool 0 has dim=12, pool 1 has dim=4"):
        crossicl.MixedCosineTopK([a, np.eye(4, dtype=np.float32)])
    with pytest.raises(ValueError, match=r"k must be <= pool size \(k=151, pool=150\)"):
        mix.select(q, 151)


def test_mmr():
    pool = unit_rows(200, 16, 11)
    q = unit_rows(8, 16, 12)
    mmr = crossicl.MMR(pool)
    assert (mmr.lambda_, mmr.fetch_k) == (0.5, 20)
    ids, scores = mmr.select(q, 4)
    assert ids.shape == (8, 4)
    top, top_scores = crossicl.CosineTopK(pool).select(q, 20)
    assert np.all(ids[:, 0] == top[:, 0])  # the first pick is the most similar row
    assert all(set(r) <= set(t) for r, t in zip(ids.tolist(), top.tolist()))  # picks come from fetch_k candidates
    assert all(len(set(r)) == 4 for r in ids.tolist())
    ids1, _ = crossicl.MMR(pool, lambda_=1.0, fetch_k=30).select(q, 4)
    np.testing.assert_array_equal(ids1, top[:, :4])
    with pytest.raises(ValueError, match=r"lambda must be in \[0, 1\]"):
        crossicl.MMR(pool, lambda_=-0.1)
    with pytest.raises(TypeError):
        crossicl.MMR(pool, 0.5)


def test_label_balanced():
    pool = unit_rows(120, 10, 13)
    labels = ["pos", "neg", "neutral"] * 40
    sel = crossicl.LabelBalancedTopK(pool, labels)
    assert sel.labels == ["pos", "neg", "neutral"]
    q = unit_rows(20, 10, 14)
    ids, scores = sel.select(q, 6)
    for row, sc in zip(ids.tolist(), scores):
        assert sorted(labels[i] for i in row) == sorted(["pos", "neg", "neutral"] * 2)
        assert np.all(np.diff(sc) <= 0)
    with pytest.raises(ValueError, match=r"labels has 3 entries but the pool has 120 rows"):
        crossicl.LabelBalancedTopK(pool, ["a", "b", "c"])


def test_bm25_surface():
    docs = ["The cat sat on the mat.", "A dog barked.", "Cats and dogs", "cat cat cat"]
    bm25 = crossicl.BM25TopK(docs)
    assert (bm25.k1, bm25.b, bm25.pool_size) == (1.5, 0.75, 4)
    assert crossicl.BM25TopK.tokenize("Cat-nap, ÉTÉ!") == ["cat", "nap", "ÉtÉ"]  # non-ASCII bytes kept as is, ASCII lower-cased
    ids, scores = bm25.select(["cat", "dog"], 2)
    assert ids.dtype == np.int64 and scores.dtype == np.float32 and ids.shape == (2, 2)
    assert ids[0].tolist() == [3, 0]
    assert ids[1, 0] == 1
    s = bm25.scores("cat")
    assert s.dtype == np.float64 and s.shape == (4,)
    assert_close(scores[0], s[ids[0]], f32_rel(1))  # float32 of the float64 score: one rounding
    ids_b0, _ = crossicl.BM25TopK(docs, k1=1.2, b=0.0).select(["cat"], 2)
    assert ids_b0[0].tolist() == [3, 0]
    with pytest.raises(TypeError):
        crossicl.BM25TopK(docs, 1.2)
    with pytest.raises(ValueError, match=r"k must be <= pool size \(k=5, pool=4\)"):
        bm25.select(["cat"], 5)
    with pytest.raises(ValueError, match=r"k1 must be finite and >= 0"):
        crossicl.BM25TopK(docs, k1=-1.0)
    with pytest.raises(ValueError, match=r"BM25 pool is empty"):
        crossicl.BM25TopK([])


def test_random_selector():
    r = crossicl.RandomSelector(10)
    assert (r.pool_size, r.seed) == (10, 0)
    ids, scores = r.select(3, 4)
    assert ids.tolist() == [[5, 3, 9, 0], [0, 7, 2, 3], [0, 2, 9, 8]]  # the header's algorithm, seed 0
    assert ids.dtype == np.int64 and scores.dtype == np.float32 and not scores.any()
    ids7, _ = crossicl.RandomSelector(100, seed=7).select(2, 5, exclude=[0, 1, 2, 3, 4])
    assert ids7.tolist() == [[21, 33, 57, 98, 74], [36, 43, 15, 33, 81]]
    ids_own, _ = crossicl.RandomSelector(5, seed=1).select(2, 2, exclude_per_query=[[0, 1, 2], [4]])
    assert ids_own.tolist() == [[3, 4], [1, 3]]
    a, _ = crossicl.RandomSelector(1000, seed=2**64 - 1).select(50, 8)
    assert all(len(set(row)) == 8 for row in a.tolist())
    with pytest.raises(ValueError, match=r"seed must be in"):
        crossicl.RandomSelector(10, seed=-1)
    with pytest.raises(ValueError, match=r"k must be <= the rows left after exclusions"):
        r.select(1, 9, exclude=[0, 1])
    with pytest.raises(ValueError, match=r"exclude_per_query has 1 lists but there are 2 queries"):
        r.select(2, 1, exclude_per_query=[[0]])
    with pytest.raises(TypeError):
        crossicl.RandomSelector(10, 3)


def test_random_selector_checks_n_queries_times_k():
    # n_queries * k wrapped (to 4 and to 0 ids): the picks were written past the buffer (heap corruption, SIGSEGV)
    big = crossicl.RandomSelector(2**62)
    with pytest.raises(ValueError, match=r"more than fit in memory \(n_queries=4611686018427387905, k=4\)"):
        big.select(2**62 + 1, 4)
    with pytest.raises(ValueError, match=r"\(n_queries=4611686018427387904, k=4\)"):
        big.select(2**62, 4)
    if not os.environ.get("CROSSICL_SANITIZED"):  # ASan's allocator aborts on a 16 PB request instead of failing it
        with pytest.raises(MemoryError):  # 2^52 ids fit int64 and a vector's size, not the address space
            crossicl.RandomSelector(10).select(2**50, 4)
    ids, _ = big.select(2, 4)
    assert all(len(set(row)) == 4 for row in ids.tolist())
    with pytest.raises(ValueError, match=r"n=9223372036854775807"):
        crossicl.numpy_legacy_permutation(0, 2**63 - 1)
