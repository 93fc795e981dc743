"""The paper's activation analysis as a feature: how similar does the model find a source demonstration and the
target input, layer by layer, and does that similarity predict the cross-task gain?

Three parts, all numpy/pandas out:

* :func:`activation_similarity`: one forward pass per prompt; at every requested layer the mean hidden state over
  the source-demonstration input tokens and over the target-input tokens, their cosine, and the same for the last
  token of each group. Token spans come from the prompt's recorded byte spans (:func:`token_spans`).
* :func:`correlate`, :func:`layer_correlations`, :func:`peak_layer`: Pearson and Spearman with percentile
  bootstrap intervals, per layer; :func:`pair_gains`, :func:`item_table` and :func:`records_frame` turn run
  records into the (target, source) gains and per-item correctness they are correlated with.
* :func:`rank_sources`: recommends sources for a target from unlabelled target inputs alone;
  :func:`evaluate_ranking` scores a ranking against measured gains.

Plots (:func:`plot_layer_correlation`, :func:`plot_similarity_vs_gain`, defined in crossicl.plots) return
matplotlib Figures; matplotlib is imported only when they are called.

Gains are in percentage points and accuracies in percent, as in crossicl.results. Scorers have the names of
crossicl's C++ scorers ("paper_eval", "paper_compare", "clean").

>>> pack = crossicl.paper.Pack("../shared/paper")
>>> engine = crossicl.Engine(crossicl.models.smollm2_path(), dtype="bfloat16")
>>> row = {"target": "sciq", "method": "totally-cross-sim", "source": "race", "shots": 1, "seed": None,
...        "id": pack.target_items("sciq")[0].id, "models": []}
>>> res = activation_similarity(engine, [pack.prompt(row)], layers=[0, 10, 20, -1], tasks=pack.tasks)
>>> res.mean_cos.shape        # [n_prompts, n_layers]
(1, 4)

Token-span rule (:func:`token_spans`): a token belongs to a byte span when its byte range overlaps the span and
the overlap holds at least one non-whitespace byte; the token span runs from the first to the last such token
(whitespace-only tokens in between are included). So a token that merges a piece's boundary whitespace with the
neighbouring piece (``"ĠĠĊ"``, a SentencePiece ``"▁"`` before the next word) goes to the piece whose
non-whitespace it carries, and a token carrying non-whitespace of two pieces (rare: two pieces glued without a
separator) belongs to both. Decoding a token span gives the piece's text up to whitespace at both ends.

Demonstration spans (``source_demo``, ``target_demo``) hold "<input> <label>"; with ``labels="exclude"`` (the
default) the span is cut after the last occurrence of the task's label cue (the input template's text after its
last placeholder, whitespace stripped, e.g. ``"Label:"``), so only the input tokens, cue included, are pooled.
A demo in which the cue is not found is pooled whole.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from . import config
from .executors import open_engine
from .experiment import Experiment
from .planning import Planner, embed_texts, fill_from_cache
from .plots import plot_layer_correlation, plot_similarity_vs_gain
from .records import SCORERS, atomic_open, atomic_write_text, load_records

__all__ = [
    "TokenSpan", "SimilarityResult", "label_cues", "token_spans", "activation_similarity", "correlate",
    "layer_correlations", "peak_layer", "records_frame", "pair_gains", "item_table", "paper_pair_gains",
    "rank_sources", "evaluate_ranking", "plot_layer_correlation", "plot_similarity_vs_gain",
]

_WS = frozenset(b" \t\n\r\x0b\x0c")
DEMO_KINDS = ("source_demo", "target_demo")


# --------------------------------------------------------------------------------------------- token spans

@dataclasses.dataclass(frozen=True)
class TokenSpan:
    """Where one prompt piece sits, in bytes and in tokens.

    ``begin``/``end`` are token indices into the engine's ids of the prompt (BOS included when the engine adds
    one), end exclusive; ``byte_begin``/``byte_end`` the (possibly label-trimmed) byte range they were taken from.
    An all-whitespace piece has ``begin == end``.
    """
    kind: str
    task: str
    index: int
    begin: int
    end: int
    byte_begin: int
    byte_end: int


def label_cues(tasks: Any, *, family: str = "as_run") -> dict[str, str]:
    """The label cue of every task of a TaskSet: its input template's text after the last placeholder, whitespace
    stripped (``"Label:"``, ``"Answer:"``), used to cut the label off a demonstration. Stripped because the fixed
    in-task demos of the pack write ``".\\n Label: positive"`` where the template has ``" \\n Label:"``."""
    out = {}
    for name in tasks.names:
        text = tasks.template_for(family, name).text
        cut = text.rfind("}")
        cue = (text[cut + 1:] if cut >= 0 else "").strip()
        if cue:
            out[name] = cue
    return out


def _byte_token_span(offsets: Sequence[tuple[int, int]], data: bytes, begin: int, end: int) -> tuple[int, int]:
    first = last = -1
    for i, (tb, te) in enumerate(offsets):
        if te <= tb or te <= begin or tb >= end:
            continue
        lo, hi = max(tb, begin), min(te, end)
        if any(c not in _WS for c in data[lo:hi]):
            if first < 0:
                first = i
            last = i
    return (first, last + 1) if first >= 0 else (0, 0)


def _encode(engine: Any, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """The engine's prompt ids of `text` with the byte range of every token (BOS: empty range)."""
    want = list(engine.encode(text))
    tok = engine.tokenizer
    for bos in (True, False):
        ids, offsets = tok.encode_with_offsets(text, bos=bos)
        if list(ids) == want:
            return want, [tuple(o) for o in offsets]
    raise ValueError("the tokenizer's encode_with_offsets does not reproduce engine.encode for this prompt")


def token_spans(engine: Any, prompt: Any, *, labels: str = "exclude", cues: Mapping[str, str] | None = None,
                byte_spans: Sequence[tuple[str, str, int, int]] | None = None
                ) -> tuple[list[int], list[TokenSpan]]:
    """Token ids of a prompt (as ``engine.encode`` gives them) and the token span of each recorded piece.

    ``prompt``: a ``crossicl.Prompt`` (its ``.spans`` are used) or a str with ``byte_spans`` given as
    ``(kind, task, begin, end)`` byte offsets into the UTF-8 text. ``labels``: "exclude" cuts demonstration spans
    after the label cue of their task (``cues``: task -> cue, see :func:`label_cues`; without it nothing is cut),
    "include" keeps them whole. Raises ValueError for a span outside the prompt.

    >>> ids, spans = token_spans(engine, prompt, cues=label_cues(pack.tasks))
    >>> engine.tokenizer.decode(ids[spans[-1].begin:spans[-1].end])     # the target input
    """
    if labels not in ("exclude", "include"):
        raise ValueError(f"labels must be 'exclude' or 'include' (labels={labels!r})")
    text = prompt if isinstance(prompt, str) else prompt.text
    data = text.encode("utf-8")
    if byte_spans is None:
        if isinstance(prompt, str):
            raise ValueError("a str prompt needs byte_spans=[(kind, task, begin, end), ...]")
        byte_spans = [(s.kind, s.task, s.begin, s.end) for s in prompt.spans]
    ids, offsets = _encode(engine, text)
    out = []
    counts: dict[str, int] = {}
    for kind, task, b, e in byte_spans:
        b, e = int(b), int(e)
        if not 0 <= b <= e <= len(data):
            raise ValueError(f"span {kind} ({b}, {e}) is outside the prompt ({len(data)} bytes)")
        if labels == "exclude" and kind in DEMO_KINDS and cues and task in cues:
            pos = data[b:e].rfind(cues[task].encode("utf-8"))
            if pos >= 0:
                e = b + pos + len(cues[task].encode("utf-8"))
        tb, te = _byte_token_span(offsets, data, b, e)
        idx = counts.get(kind, 0)
        counts[kind] = idx + 1
        out.append(TokenSpan(kind, task, idx, tb, te, b, e))
    return ids, out


# --------------------------------------------------------------------------------------- hidden-state similarity

@dataclasses.dataclass
class SimilarityResult:
    """Per-prompt, per-layer cosine similarities of :func:`activation_similarity`.

    ``mean_cos`` [n_prompts, n_layers]: cosine of the mean hidden state over the source tokens and over the target
    tokens; ``last_cos`` [n_prompts, n_layers]: cosine of the hidden states at the last source token and the last
    target token. ``layers`` [n_layers]: resolved layer indices (-1 -> n_layers). ``n_source_tokens`` /
    ``n_target_tokens`` [n_prompts]. ``n_computed``: prompts run through the engine (the others came from the
    cache). ``source_mean``, ``target_mean``, ``source_last``, ``target_last``
    [n_prompts, n_layers, dim] float32 when ``keep_states=True``, else None.
    """
    layers: np.ndarray
    mean_cos: np.ndarray
    last_cos: np.ndarray
    n_source_tokens: np.ndarray
    n_target_tokens: np.ndarray
    n_computed: int = 0
    source_mean: np.ndarray | None = None
    target_mean: np.ndarray | None = None
    source_last: np.ndarray | None = None
    target_last: np.ndarray | None = None

    def to_frame(self, keys: Sequence[Mapping[str, Any]] | None = None):
        """Long pandas DataFrame: one row per (prompt, layer) with columns ``prompt, layer, similarity,
        similarity_last`` plus the columns of ``keys[prompt]`` (e.g. target, source, id) when given."""
        import pandas as pd
        n, nl = self.mean_cos.shape
        if keys is not None and len(keys) != n:
            raise ValueError(f"keys must have one entry per prompt (keys={len(keys)}, prompts={n})")
        df = pd.DataFrame({"prompt": np.repeat(np.arange(n), nl), "layer": np.tile(self.layers, n),
                           "similarity": self.mean_cos.reshape(-1), "similarity_last": self.last_cos.reshape(-1)})
        if keys is not None:
            extra = pd.DataFrame(list(keys))
            df = df.join(extra, on="prompt")
        return df


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # [..., dim] x [..., dim] -> [...]
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(-1) / np.where(den > 0, den, 1), np.nan)


def _resolve_layers(engine: Any, layers: Iterable[int]) -> list[int]:
    """Absolute layer numbers by the engine's own rule (Engine.resolve_layers)."""
    return list(engine.resolve_layers([int(x) for x in layers]))


def _engine_tag(engine: Any) -> str:
    """Fingerprint of the engine for the cache key: config, dtype and the embedding of one token."""
    probe = engine.hidden_states([[int(engine.config.bos_id) if engine.config.bos_id >= 0 else 0]], layers=[0],
                                 pooling="none")[0]
    return hashlib.sha256(f"{engine.config!r}|{engine.dtype}|".encode() + np.ascontiguousarray(
        probe, dtype=np.float32).tobytes()).hexdigest()[:16]


class _Cache:
    def __init__(self, where: Any, engine: Any):
        self.mem = where if isinstance(where, dict) else None
        self.dir = None if where is None or isinstance(where, dict) else pathlib.Path(where)
        self.tag = _engine_tag(engine) if where is not None else ""
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)

    def key(self, ids: Sequence[int], layers: Sequence[int], spans: Sequence[tuple[int, int]]) -> str:
        blob = json.dumps([self.tag, list(ids), list(layers), [list(s) for s in spans]]).encode()
        return hashlib.sha256(blob).hexdigest()

    def get(self, key: str) -> np.ndarray | None:
        if self.mem is not None:
            return self.mem.get(key)
        if self.dir is not None:
            path = self.dir / f"{key}.npy"
            if path.is_file():
                return np.load(path)
        return None

    def put(self, key: str, value: np.ndarray) -> None:
        if self.mem is not None:
            self.mem[key] = value
        elif self.dir is not None:
            with atomic_open(self.dir / f"{key}.npy") as f:  # a temporary of its own: concurrent writers of a key
                np.save(f, value)


def activation_similarity(engine: Any, prompts: Sequence[Any], spans: Sequence[Any] | None = None, *,
                          layers: Sequence[int] = (-1,), source: Sequence[str] = ("source_demo",),
                          target: Sequence[str] = ("target_input",), labels: str = "exclude",
                          tasks: Any = None, batch_size: int = 8, cache: Any = None,
                          keep_states: bool = False) -> SimilarityResult:
    """Cosine similarity of the source and target pieces of each prompt, per layer, from one forward pass.

    ``prompts``: ``crossicl.Prompt`` objects (pieces found by span kind: ``source`` kinds vs ``target`` kinds;
    several spans of one group, e.g. 4 demos, are pooled together), or str with ``spans`` given per prompt as
    ``(source_ranges, target_ranges)``, each a list of ``(begin, end)`` byte ranges into the UTF-8 text (labels
    are then not cut). ``layers``: 0 = embeddings, i = output of block i, -1 or n_layers = final-norm output.
    ``tasks``: the TaskSet whose label cues cut demonstrations to their input (see :func:`label_cues`); without
    it ``labels="exclude"`` cuts nothing. ``batch_size``: prompts per ``engine.hidden_states`` call (bounds
    memory). ``cache``: None, a dict, or a directory; pooled states are stored per (engine, ids, layers, spans).

    Raises ValueError naming the problem for a span outside the prompt, a layer out of range, or a prompt whose
    source or target group selects no token (e.g. a zero-shot prompt has no source demonstration).
    """
    lay = _resolve_layers(engine, layers)
    if spans is not None and len(spans) != len(prompts):
        raise ValueError(f"spans must have one entry per prompt (spans={len(spans)}, prompts={len(prompts)})")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 (batch_size={batch_size})")
    cues = label_cues(tasks) if tasks is not None else None
    # Token spans of both groups of every prompt: list of (ids, source token ranges, target token ranges).
    plans = []
    for i, p in enumerate(prompts):
        if spans is None:
            if isinstance(p, str):
                raise ValueError(f"prompt {i} is a str: pass spans=[(source_ranges, target_ranges), ...]")
            ids, ts = token_spans(engine, p, labels=labels, cues=cues)
            src = [(t.begin, t.end) for t in ts if t.kind in source and t.end > t.begin]
            tgt = [(t.begin, t.end) for t in ts if t.kind in target and t.end > t.begin]
        else:
            text = p if isinstance(p, str) else p.text
            try:
                src_b, tgt_b = spans[i]
            except (TypeError, ValueError):
                raise ValueError(f"spans[{i}] must be (source_ranges, target_ranges)") from None
            bs = [("source", "", b, e) for b, e in src_b] + [("target", "", b, e) for b, e in tgt_b]
            ids, ts = token_spans(engine, text, labels="include", byte_spans=bs)
            src = [(t.begin, t.end) for t in ts if t.kind == "source" and t.end > t.begin]
            tgt = [(t.begin, t.end) for t in ts if t.kind == "target" and t.end > t.begin]
        if not src:
            raise ValueError(f"prompt {i}: the source group ({', '.join(source)}) selects no token")
        if not tgt:
            raise ValueError(f"prompt {i}: the target group ({', '.join(target)}) selects no token")
        plans.append((ids, src, tgt))

    store = _Cache(cache, engine)
    n, nl = len(plans), len(lay)
    pooled: list[np.ndarray | None] = [None] * n  # each [4, n_layers, dim]: src mean, tgt mean, src last, tgt last
    keys = [store.key(ids, lay, src + [(-1, -1)] + tgt) if cache is not None else "" for ids, src, tgt in plans]
    todo = fill_from_cache(store if cache is not None else None, keys, pooled)
    for c in range(0, len(todo), batch_size):
        chunk = todo[c:c + batch_size]
        hs = engine.hidden_states([plans[i][0] for i in chunk], layers=lay, pooling="none")
        for i, h in zip(chunk, hs):  # h: [n_layers, n_tokens, dim]
            _, src, tgt = plans[i]
            s_idx = np.concatenate([np.arange(b, e) for b, e in src])
            t_idx = np.concatenate([np.arange(b, e) for b, e in tgt])
            v = np.stack([h[:, s_idx].mean(1), h[:, t_idx].mean(1), h[:, s_idx[-1]], h[:, t_idx[-1]]])
            pooled[i] = v.astype(np.float32)
            if cache is not None:
                store.put(keys[i], pooled[i])
        del hs
    dim = int(engine.config.dim)
    allv = np.stack(pooled) if n else np.zeros((0, 4, nl, dim), np.float32)  # [n, 4, n_layers, dim]
    res = SimilarityResult(
        layers=np.asarray(lay, dtype=np.int64),
        mean_cos=_cos(allv[:, 0], allv[:, 1]),
        last_cos=_cos(allv[:, 2], allv[:, 3]),
        n_source_tokens=np.asarray([sum(e - b for b, e in p[1]) for p in plans], dtype=np.int64),
        n_target_tokens=np.asarray([sum(e - b for b, e in p[2]) for p in plans], dtype=np.int64),
        n_computed=len(todo))
    if keep_states:
        res.source_mean, res.target_mean = allv[:, 0], allv[:, 1]
        res.source_last, res.target_last = allv[:, 2], allv[:, 3]
    return res


# ------------------------------------------------------------------------------------------------ correlations

def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:  # [..., n] x [..., n] -> [...]
    xc = x - x.mean(-1, keepdims=True)
    yc = y - y.mean(-1, keepdims=True)
    den = np.sqrt((xc * xc).sum(-1) * (yc * yc).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (xc * yc).sum(-1) / np.where(den > 0, den, 1), np.nan)


def _rank_rows(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata
    return rankdata(x, axis=-1)  # average ranks for ties, as spearmanr


def correlate(x: Sequence[float], y: Sequence[float], *, n_resamples: int = 2000, confidence: float = 0.95,
              seed: int = 0) -> dict[str, float]:
    """Pearson and Spearman correlation of paired samples with percentile bootstrap intervals.

    Point estimates and p-values are ``scipy.stats.pearsonr`` / ``spearmanr``. Intervals: draw
    ``idx = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))`` (one matrix shared by both
    statistics), compute the statistic on every resample ``(x[idx[b]], y[idx[b]])``, and take the
    ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles (``np.nanquantile``, linear) of the values;
    resamples with a constant side (undefined correlation) are dropped. Returns keys ``n, pearson_r, pearson_p,
    pearson_lo, pearson_hi, spearman_rho, spearman_p, spearman_lo, spearman_hi``. Raises ValueError for fewer than
    3 pairs, unequal lengths or non-finite values.
    """
    from scipy import stats
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"x and y must be 1-D of equal length (x={x.shape}, y={y.shape})")
    n = len(x)
    if n < 3:
        raise ValueError(f"need at least 3 pairs to correlate (n={n})")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("x and y must be finite")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1) (confidence={confidence})")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1 (n_resamples={n_resamples})")
    out: dict[str, float] = {"n": n}
    const = np.ptp(x) == 0 or np.ptp(y) == 0
    if const:
        out.update(pearson_r=math.nan, pearson_p=math.nan, spearman_rho=math.nan, spearman_p=math.nan)
    else:
        pr = stats.pearsonr(x, y)
        sr = stats.spearmanr(x, y)
        out.update(pearson_r=float(pr[0]), pearson_p=float(pr[1]), spearman_rho=float(sr[0]),
                   spearman_p=float(sr[1]))
    idx = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))  # [n_resamples, n]
    xb, yb = x[idx], y[idx]
    q = [(1 - confidence) / 2, (1 + confidence) / 2]
    for name, vals in (("pearson", _pearson_rows(xb, yb)),
                       ("spearman", _pearson_rows(_rank_rows(xb), _rank_rows(yb)))):
        if np.isfinite(vals).any():
            lo, hi = np.nanquantile(vals, q)
        else:
            lo = hi = math.nan
        out[f"{name}_lo"], out[f"{name}_hi"] = float(lo), float(hi)
    return out


def layer_correlations(df: Any, *, x: str = "similarity", y: str = "gain", by: str | Sequence[str] = "layer",
                       n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0):
    """:func:`correlate` of column ``x`` with column ``y`` within each group of ``by`` (default: per layer).

    ``df``: a DataFrame with the columns named by ``x``, ``y`` and ``by`` (e.g. the output of :func:`pair_gains`
    merged with per-pair mean similarities, columns ``layer, similarity, gain``). Returns one row per group with
    the ``by`` columns and the keys of :func:`correlate`. Raises ValueError for a missing column or an empty
    frame."""
    import pandas as pd
    by = [by] if isinstance(by, str) else list(by)
    missing = [c for c in [x, y, *by] if c not in df.columns]
    if missing:
        raise ValueError(f"df lacks column(s) {missing} (has {list(df.columns)})")
    if len(df) == 0:
        raise ValueError("df is empty")
    rows = []
    for key, g in df.groupby(by, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        r = correlate(g[x].to_numpy(), g[y].to_numpy(), n_resamples=n_resamples, confidence=confidence,
                      seed=seed)
        rows.append({**dict(zip(by, key)), **r})
    return pd.DataFrame(rows)


def peak_layer(corr: Any, *, stat: str = "spearman_rho", layer: str = "layer") -> int:
    """The layer where ``stat`` is largest (the hypothesis is a positive link: more similar, more gain).
    ``corr``: output of :func:`layer_correlations`. Raises ValueError when no layer has a finite value."""
    if stat not in corr.columns or layer not in corr.columns:
        raise ValueError(f"corr lacks column {stat!r} or {layer!r}")
    vals = corr[stat].to_numpy(dtype=np.float64)
    if not np.isfinite(vals).any():
        raise ValueError(f"no finite {stat} in any layer")
    return int(corr[layer].to_numpy()[int(np.nanargmax(vals))])


# ------------------------------------------------------------------------------------------- records -> gains

def records_frame(records: Any, *, scorer: str = "paper_eval"):
    """Normalise run records to a DataFrame with columns ``target, method, source, id, correct`` (+ ``k``,
    ``seed``, ``model`` when present).

    Accepts a records file or run folder (read by :func:`crossicl.records.load_records`), a list of record
    dicts, or a DataFrame. Methods named by the paper ("totally-cross-sim") become the runner's ("cross-task").
    ``scorer``: "paper_eval", "paper_compare" or "clean"; ``correct`` is its ``correct_<scorer>`` flag (0/1)."""
    import pandas as pd
    if scorer not in SCORERS:
        raise ValueError(f"scorer must be one of {list(SCORERS)} (scorer={scorer!r})")
    if isinstance(records, (str, pathlib.Path)):
        df = load_records(records)
    elif isinstance(records, pd.DataFrame):
        df = records.copy()
    else:
        df = pd.DataFrame(list(records))
    col = f"correct_{scorer}"
    if col not in df.columns:
        raise ValueError(f"records have no correctness column for scorer {scorer!r} (looked for {col!r})")
    for c in ("target", "method", "id"):
        if c not in df.columns:
            raise ValueError(f"records lack column {c!r}")
    out = pd.DataFrame({"target": df["target"], "method": df["method"].map(lambda m: config.ALIASES.get(m, m)),
                        "source": df["source"] if "source" in df.columns else None,
                        "id": df["id"].astype(str), "correct": df[col].astype(float)})
    for c in ("k", "seed", "model"):
        if c in df.columns:
            out[c] = df[c]
    return out


def pair_gains(records: Any, *, method: str = "cross-task", baseline: str = "zero-shot"):
    """Gain of every (target, source) pair in percentage points: ``acc`` (percent of ``method`` records of the
    pair that are correct) minus ``acc_zero`` (percent of the target's ``baseline`` records that are correct).

    ``records``: a DataFrame with columns ``target, method, source, correct`` (see :func:`records_frame`).
    Returns columns ``target, source, n, acc, acc_zero, gain``. Raises ValueError when a target has
    ``method`` records but no baseline."""
    import pandas as pd
    cross = records[records["method"] == method]
    zero = records[records["method"] == baseline].groupby("target")["correct"].mean()
    if len(cross) == 0:
        raise ValueError(f"no records of method {method!r}")
    g = cross.groupby(["target", "source"])["correct"].agg(["size", "mean"]).reset_index()
    g.columns = ["target", "source", "n", "acc"]
    g["acc"] = 100.0 * g["acc"]
    miss = sorted(set(g["target"]) - set(zero.index))
    if miss:
        raise ValueError(f"no {baseline!r} records for target(s) {miss}")
    g["acc_zero"] = 100.0 * g["target"].map(zero).astype(float)
    g["gain"] = g["acc"] - g["acc_zero"]
    return pd.DataFrame(g)


def item_table(records: Any, *, method: str = "cross-task", baseline: str = "zero-shot"):
    """Per-item outcome of ``method``: columns ``target, source, id, correct`` and ``item_gain`` (correct minus
    the same item's ``baseline`` correct: -1, 0 or 1; NaN where the item has no baseline record)."""
    cross = records[records["method"] == method][["target", "source", "id", "correct"]]
    zero = records[records["method"] == baseline][["target", "id", "correct"]].rename(
        columns={"correct": "correct_zero"}).drop_duplicates(["target", "id"])
    out = cross.merge(zero, on=["target", "id"], how="left")
    out["item_gain"] = out["correct"] - out["correct_zero"]
    return out.drop(columns=["correct_zero"])


def paper_pair_gains(accuracy_csv: Any, *, model: str = "llama-2-7b", method: str = "totally-cross-sim",
                     shots: int = 1, scorer: str = "paper_eval"):
    """The pack's published per-(target, source) gains (golden/accuracy.csv) of one model, in percentage points
    as :func:`pair_gains`: columns ``target, source, acc, acc_zero, gain``. The pack has them for ARC-Challenge
    and financial_phrasebank. ``scorer``: "paper_eval" or "paper_compare"."""
    import pandas as pd
    col = {"paper_eval": "accuracy_eval", "paper_compare": "accuracy_compare"}.get(scorer)
    if col is None:
        raise ValueError(f"scorer must be 'paper_eval' or 'paper_compare' (scorer={scorer!r})")
    acc = pd.read_csv(accuracy_csv)
    acc = acc[acc["model"] == model]
    if len(acc) == 0:
        raise ValueError(f"no rows for model {model!r} in {accuracy_csv}")
    zero = acc[acc["method"] == "zero-shot"].set_index("target")[col]
    cross = acc[(acc["method"] == method) & (acc["shots"] == shots)]
    out = pd.DataFrame({"target": cross["target"], "source": cross["source"], "acc": cross[col]})
    out["acc_zero"] = out["target"].map(zero)
    out["gain"] = out["acc"] - out["acc_zero"]
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------------------- source recommendation

def rank_sources(engine: Any, target_items: Sequence[str], source_pools: Mapping[str, Sequence[str]], *,
                 layers: Sequence[int] = (-1,), n_per_source: int = 32, seed: int = 0, batch_size: int = 16,
                 cache: Any = None):
    """Rank source tasks for a target by activation similarity, using no target labels.

    ``target_items``: rendered target inputs (e.g. ``tasks.render_input(target, item.fields)``);
    ``source_pools``: source name -> rendered source inputs (no labels). Each text is embedded alone (no
    definition, no demonstration) as the mean hidden state over its tokens (BOS excluded) at every layer;
    ``n_per_source`` texts of each pool are drawn without replacement (``np.random.default_rng(seed)``, the
    whole pool when smaller). A source's score is the mean cosine over all (target item, source text) pairs.
    Returns a DataFrame ``layer, source, similarity, rank`` (rank 1 = most similar, per layer). Raises ValueError
    for no target items, an empty or missing pool, or a layer out of range."""
    import pandas as pd
    lay = _resolve_layers(engine, layers)
    if len(target_items) == 0:
        raise ValueError("target_items is empty")
    if len(source_pools) == 0:
        raise ValueError("source_pools is empty")
    for name, pool in source_pools.items():
        if len(pool) == 0:
            raise ValueError(f"source pool {name!r} is empty")
    if n_per_source < 1:
        raise ValueError(f"n_per_source must be >= 1 (n_per_source={n_per_source})")
    store = _Cache(cache, engine) if cache is not None else None
    rng = np.random.default_rng(seed)

    def unit(v: np.ndarray) -> np.ndarray:  # [n, n_layers, dim] -> unit vectors, float64
        v = v.astype(np.float64)
        return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-30)

    t = unit(embed_texts(engine, list(target_items), lay, batch_size=batch_size, cache=store)).mean(0)  # [layers, dim]
    rows = []
    for name, pool in source_pools.items():
        pool = list(pool)
        pick = rng.choice(len(pool), size=min(n_per_source, len(pool)), replace=False)
        s = unit(embed_texts(engine, [pool[i] for i in sorted(pick)], lay, batch_size=batch_size, cache=store)).mean(0)
        sim = (t * s).sum(-1)  # mean pairwise cosine = <mean unit target, mean unit source>, [n_layers]
        for li, layer in enumerate(lay):
            rows.append({"layer": layer, "source": name, "similarity": float(sim[li])})
    df = pd.DataFrame(rows)
    df["rank"] = df.groupby("layer")["similarity"].rank(ascending=False, method="min").astype(int)
    return df.sort_values(["layer", "rank"]).reset_index(drop=True)


def evaluate_ranking(ranking: Any, gains: Any, *, score: str = "similarity", by: Sequence[str] = ("layer",)):
    """Agreement of a source ranking with measured gains, per target and group (e.g. layer).

    ``ranking``: columns ``target, source, <score>`` and the ``by`` columns (several :func:`rank_sources` frames
    with a ``target`` column added); ``gains``: columns ``target, source, gain`` (:func:`pair_gains` or
    :func:`paper_pair_gains`). Returns one row per (by..., target): ``n_sources``, Spearman ``rho`` and its
    ``p``, Kendall ``tau``, ``top1_gain`` (gain of the top-ranked source), ``best_gain``, ``mean_gain``."""
    import pandas as pd
    from scipy import stats
    by = list(by)
    ranking = ranking.drop(columns=[c for c in ranking.columns if c == "gain" and score != "gain"])
    m = ranking.merge(gains[["target", "source", "gain"]], on=["target", "source"], how="inner")
    if len(m) == 0:
        raise ValueError("ranking and gains share no (target, source) pair")
    rows = []
    for key, g in m.groupby(by + ["target"], sort=True):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by + ["target"], key))
        row["n_sources"] = len(g)
        if len(g) >= 3 and np.ptp(g[score]) > 0 and np.ptp(g["gain"]) > 0:
            rho, p = stats.spearmanr(g[score], g["gain"])
            tau = stats.kendalltau(g[score], g["gain"])[0]
        else:
            rho = p = tau = math.nan
        row.update(rho=float(rho), p=float(p), tau=float(tau),
                   top1_gain=float(g.loc[g[score].idxmax(), "gain"]), best_gain=float(g["gain"].max()),
                   mean_gain=float(g["gain"].mean()))
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------- run folders

def analyze_run(run_dir: Any, *, layers: Sequence[int] | None = None, engines: Mapping[str, Any] | None = None,
                n_per_source: int = 16, batch_size: int = 8, methods: Sequence[str] = ("cross-task",)) -> list:
    """Activation analysis of an experiment run folder (``crossicl analyze RUN_DIR``).

    Rebuilds the prompts of the run's ``methods`` cells (same selection, same spans) from its config.json,
    computes :func:`activation_similarity` per prompt at ``layers`` (default: every hidden layer) and
    :func:`rank_sources` per target (``n_per_source`` pool inputs), and writes ``analysis/similarity.csv``
    (one row per prompt and layer: cell keys, id, similarity, similarity_last) and ``analysis/ranking.csv``.
    Pooled states are cached in ``analysis/cache``. ``engines``: open engines by model name (else each model
    of the config is loaded once). Returns the written paths; ``crossicl report`` then adds the section."""
    import pandas as pd
    run = pathlib.Path(run_dir)
    cfg_path = run / "config.json"
    if not cfg_path.is_file():
        raise ValueError(f"{run}: no config.json (not a crossicl run folder)")
    exp = Experiment(json.loads(cfg_path.read_text(encoding="utf-8")), engines=engines, out=run)
    out = run / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    frames, rankings = [], []
    for spec in exp.models:
        cells = [c for c in exp.cells if c.model == spec.name and c.method in methods]
        if not cells:
            continue
        engine = exp.engines.get(spec.name) or open_engine(spec)
        exp.engines[spec.name] = engine
        lay = list(layers) if layers is not None else list(range(engine.config.n_layers + 1))
        planner = Planner(exp.grid, engine, spec.name)
        prompts, keys = [], []
        for cell in cells:
            items = exp.data.items(cell.target)
            for item, (prompt, _, _) in zip(items, planner.plan(cell, items)):
                prompts.append(prompt)
                keys.append({**cell.as_dict(), "id": item.id})
        sims = activation_similarity(engine, prompts, layers=lay, tasks=exp.data.tasks, batch_size=batch_size,
                                     cache=out / "cache")
        frames.append(sims.to_frame(keys).drop(columns=["prompt"]))
        builder = planner.builder
        pools = {}
        for s in exp.sources:
            try:
                pools[s] = [builder.render_input(s, r) for r in exp.data.pool(s)]
            except ValueError:  # no pool in the pack (boolq, race): not ranked
                continue
        for t in sorted({c.target for c in cells}, key=exp.targets.index):
            targets = [builder.render_input(t, it) for it in exp.data.items(t)]
            r = rank_sources(engine, targets, {s: p for s, p in pools.items() if s != t}, layers=lay,
                             n_per_source=n_per_source, batch_size=batch_size, cache=out / "cache")
            r.insert(0, "target", t)
            r.insert(0, "model", spec.name)
            rankings.append(r)
    if not frames:
        raise ValueError(f"{run}: no cell of method {list(methods)} to analyse")
    written = [out / "similarity.csv", out / "ranking.csv"]
    atomic_write_text(written[0], pd.concat(frames, ignore_index=True).to_csv(index=False))
    atomic_write_text(written[1], pd.concat(rankings, ignore_index=True).to_csv(index=False))
    return written
