"""The run loop of crossicl.Experiment (the driver): for each model, the pseudo-labelling stage, then every
batch of work units through an executor, scoring and records. Use it through ``Experiment.run``.

Scoring lives here, beside the loop that applies it: :func:`paper_prediction` (the prediction of a
generation), :func:`score_prediction` (its ``correct_<scorer>`` flags) and :func:`vote` (a pseudo-label).
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from . import _crossicl
from .config import PSEUDO, Grid, ModelSpec, scoring_modes
from .executors import Batch, LocalExecutor
from .planning import Planner, Unit, batches, content_free_prompts, work_units
from .records import SCORERS, RecordFile, atomic_write_text, record_key, records_path


def paper_prediction(text: str) -> str:
    """The paper's answer extraction: one leading "\\n\\n" removed, then the text up to the first "\\n"."""
    if text.startswith("\n\n"):
        text = text[2:]
    return text.split("\n", 1)[0]


def score_prediction(pred: str, gold: str) -> dict[str, bool]:
    """``correct_<scorer>`` flags of one prediction under every scorer (the runner's scoring path)."""
    return {f"correct_{s}": bool(_crossicl.exact_match(pred, gold, s)) for s in SCORERS}


def vote(predictions: Sequence[str]) -> str:
    """The pseudo-label of one pool item from its per-source predictions: the paper's majority vote (most
    frequent non-empty prediction, ties to the smallest string, "" when every prediction is empty)."""
    return _crossicl.majority_vote(list(predictions))


def _progress(total: int, initial: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=initial, desc=desc, unit="prompt", dynamic_ncols=True)


def _advance(bar: Any, n: int, executor: Any) -> None:
    """Moves the progress bar by ``n`` prompts, with the executor's words (a Ray run: the workers alive)."""
    if bar is not None:
        status = executor.status()
        if status:
            bar.set_postfix(status, refresh=False)
        bar.update(n)


def _softmax(xs: Sequence[float]) -> list[float]:
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    s = sum(e)
    return [v / s for v in e]


# -------------------------------------------------------------------------------------------- pseudo labels
def pseudo_labels(grid: Grid, executor: Any, spec: ModelSpec, planner: Planner, suffix: str,
                  progress: bool) -> dict[str, list[dict]]:
    """The pseudo-labelled pool of every target with pseudo-label cells of the model: cross-task 1-shot
    predictions of every pseudo source on the target's unlabelled pool, majority vote, optional confidence
    threshold. Predictions are records in <out>/pseudo<suffix>.jsonl (resumable); the labels are written to
    <out>/pseudo_labels<suffix>.<model>.json. Returns target -> [{example, label, confidence, kept}]."""
    targets = sorted({c.target for c in grid.cells if c.method in PSEUDO and c.model == spec.name},
                     key=grid.targets.index)
    if not targets:
        return {}
    store = RecordFile(grid.out / f"pseudo{suffix}.jsonl",
                       lambda r: (r["target"], r["source"], r["model"], str(r["id"])))
    _predict_pseudo_pools(grid, executor, spec, planner, targets, store, progress)
    threshold = float(grid.config["pseudo"]["threshold"])
    result: dict[str, list[dict]] = {}
    table = {}
    for t in targets:
        srcs = [s for s in grid.pseudo_sources if s != t]
        labels = list(grid.data.tasks[t].label_space)
        rows = []
        for row in grid.data.pseudo_pool(t, grid.config["pseudo"]["pool"]):
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
    atomic_write_text(grid.out / f"pseudo_labels{suffix}.{spec.name}.json",
                      json.dumps(table, indent=1, ensure_ascii=False))
    return result


def _predict_pseudo_pools(grid: Grid, executor: Any, spec: ModelSpec, planner: Planner, targets: list[str],
                          store: RecordFile, progress: bool) -> None:
    """The missing pseudo-source predictions on the targets' pools, appended to ``store`` batch by batch."""
    ps = grid.config["pseudo"]
    units = []
    for t in targets:
        pool = grid.data.pseudo_pool(t, ps["pool"])
        for s in grid.pseudo_sources:
            if s != t:
                units += [(t, s, i, row) for i, row in enumerate(pool)]

    def done(u: tuple) -> bool:
        return (u[0], u[1], spec.name, u[3].id) in store

    bar = _progress(len(units), sum(done(u) for u in units), f"pseudo-labels {spec.name}", progress)
    dec = grid.config["decode"]
    work = _pseudo_batches(grid, planner, units, done)
    try:
        with contextlib.closing(executor.map(spec, work, dec)) as results:
            for (chunk, picks, labels), res in results:
                recs = []
                for j, u in enumerate(chunk):
                    out = res.outs[j]
                    rec = {"target": u[0], "source": u[1], "model": spec.name, "id": u[3].id, "index": u[2],
                           "demo_ids": picks[u[2]][1], "raw": out.text, "pred": paper_prediction(out.text)}
                    if res.label_logprobs is not None:
                        rec["label_logprobs"] = dict(zip(labels, res.label_logprobs[j]))
                    if not done(u):
                        recs.append(rec)
                store.append(recs)
                _advance(bar, len(recs), executor)
    finally:
        if bar is not None:
            bar.close()


def _pseudo_batches(grid: Grid, planner: Planner, units: list[tuple], done: Any) -> Iterator[tuple[tuple, Batch]]:
    """((units, demo picks, labels), Batch) of every pseudo-labelling batch with a missing prediction."""
    ps, dec = grid.config["pseudo"], grid.config["decode"]
    by_pair: dict[tuple, list] = {}
    for u in units:
        by_pair.setdefault((u[0], u[1]), []).append(u)
    for (t, s), pair_units in by_pair.items():
        if all(done(u) for u in pair_units):
            continue
        pool = grid.data.pseudo_pool(t, ps["pool"])
        # Demos for the whole pool at once; the pack publishes none for pseudo pools (selector "published"
        # falls back to BM25 there, see Selection.top).
        picks = planner.demos(t, pool, s, 1, pack_demos=False)
        labels = list(grid.data.tasks[t].label_space)
        # The batches are cut from the pair's whole pool, not from what is missing, and a batch is recomputed
        # whole: a resumed run (after a torn write left part of a batch) computes exactly what an uninterrupted
        # one does; only the missing predictions are appended.
        for b in range(0, len(pair_units), dec["batch"]):
            chunk = pair_units[b:b + dec["batch"]]
            if all(done(u) for u in chunk):
                continue
            prompts = [planner.builder.cross_task(t, u[3], s, picks[u[2]][0]).text for u in chunk]
            names = [f"pseudo {t}/{s}/{u[3].id}" for u in chunk]
            scored = [labels] * len(chunk) if float(ps["threshold"]) > 0 else None
            yield (chunk, picks, labels), Batch(prompts, names, scored)


# ----------------------------------------------------------------------------------------------- the grid
LABEL_VARIANTS = (("label", "label_logprobs", "calibrated"),
                  ("label_first", "label_first_logprobs", "calibrated_first"))
"""(prefix, record key of the scores, prefix after calibration) of the two label scores: the label's summed
log-prob, and its first token's (the paper's force_decode). A prefix names the record's ``<prefix>_pred`` and
``<prefix>_correct_<scorer>`` keys."""


def _flags(prefix: str, pred: str, gold: str) -> dict[str, Any]:
    """``<prefix>_pred`` and the ``<prefix>_correct_<scorer>`` flags of a label prediction."""
    return {f"{prefix}_pred": pred, **{f"{prefix}_{k}": v for k, v in score_prediction(pred, gold).items()}}


def _label_fields(labels: list[str], gold: str, scores: dict[str, list[float]],
                  content_free: dict[str, list[list[float]]] | None) -> dict[str, Any]:
    """The label-scoring part of a record: for each variant (summed, first token) the log-prob of every label,
    the arg-max label and its flags; with ``content_free`` (the variant's scores of the context's content-free
    inputs, one row per input) also those scores and the calibrated arg-max (crossicl.calibrate) with its flags."""
    rec: dict[str, Any] = {}
    for prefix, key, cal_prefix in LABEL_VARIANTS:
        lps = scores[key]
        rec[key] = {lab: round(v, 6) for lab, v in zip(labels, lps)}
        rec.update(_flags(prefix, labels[int(np.argmax(lps))], gold))
        if content_free is not None:
            rec[f"cf_{key}"] = [[round(v, 6) for v in row] for row in content_free[key]]
            cal = _crossicl.calibrate(np.asarray([lps]), np.asarray(content_free[key]))[0]
            rec.update(_flags(cal_prefix, labels[int(np.argmax(cal))], gold))
    return rec


def _record(u: Unit, plan: tuple, out: Any, n_tokens: int, labels: list[str], keep_prompt: bool,
            label_part: dict[str, Any] | None) -> dict:
    """The record of one unit from its plan (prompt, demo ids, demo scores), the engine's output and the label
    scores (:func:`_label_fields`, or None)."""
    prompt, demo_ids, demo_scores = plan
    pred = paper_prediction(out.text)
    gold = u.item.label or ""
    rec = {**u.cell.as_dict(), "id": u.item.id, "index": u.index, "gold": gold, "pred": pred, "raw": out.text,
           **score_prediction(pred, gold), "demo_ids": list(demo_ids),
           "demo_scores": [None if s is None or (isinstance(s, float) and math.isnan(s)) else round(float(s), 6)
                           for s in demo_scores],
           "prompt_sha256": hashlib.sha256(prompt.text.encode("utf-8")).hexdigest(),
           "n_prompt_tokens": n_tokens, "truncated": out.truncated, "finish_reason": out.finish_reason}
    if label_part is not None:
        rec.update(label_part)
    if keep_prompt:
        rec["prompt"] = prompt.text
    return rec


def _grid_batches(grid: Grid, planner: Planner, pseudo: dict[str, list[dict]], units: list[Unit],
                  store: RecordFile) -> Iterator[tuple[tuple, Batch]]:
    """((units, plans, labels, contexts), Batch) of every batch of the grid with a missing record, in the order
    of decode.order. With "label_calibrated" scoring, the batch also label-scores the content-free prompts of
    each distinct context among its prompts (Batch.score_only); ``contexts`` gives each prompt's first one. They
    are scored in every batch that needs them, so a record depends on its own batch only (any order of batches,
    any executor, a resumed run: the same bits)."""
    dec = grid.config["decode"]
    modes = scoring_modes(dec)
    inputs = list(dec["content_free"]) if "label_calibrated" in modes else []
    plans: dict[Any, list] = {}
    for cell, chunk in batches(units, dec["batch"], dec["order"]):
        if all(u.key in store for u in chunk):
            continue
        if cell not in plans:
            plans[cell] = planner.plan(cell, grid.data.items(cell.target), pseudo.get(cell.target))
        plan = [plans[cell][u.index] for u in chunk]
        where = f"{cell.target}/{cell.method}/{cell.source}/k={cell.k}/seed={cell.seed}"
        names = [f"{where} item {u.item.id}" for u in chunk]
        labels = list(grid.data.tasks[cell.target].label_space)
        score_only: list[str] = []
        first: dict[str, int] = {}
        contexts = []
        for u, p in zip(chunk, plan) if inputs else ():
            key, texts = content_free_prompts(planner.builder, cell.target, u.item, p[0], inputs)
            if key not in first:
                first[key] = len(score_only)
                score_only += texts
                names += [f"{where} item {u.item.id} content-free input {x!r}" for x in inputs]
            contexts.append(first[key])
        scored = [labels] * (len(chunk) + len(score_only)) if "label" in modes else None
        yield (chunk, plan, labels, contexts), Batch([p[0].text for p in plan], names, scored, score_only)


def _label_parts(res: Any, n: int, labels: list[str], golds: list[str], contexts: list[int], n_inputs: int
                 ) -> list[dict[str, Any] | None]:
    """The label part of each of the batch's ``n`` records (None without label scores)."""
    if res.label_logprobs is None:
        return [None] * n
    by_key = {"label_logprobs": res.label_logprobs, "label_first_logprobs": res.label_first_logprobs}
    parts = []
    for j in range(n):
        cf = None
        if contexts:
            c = n + contexts[j]
            cf = {key: rows[c:c + n_inputs] for key, rows in by_key.items()}
        parts.append(_label_fields(labels, golds[j], {key: rows[j] for key, rows in by_key.items()}, cf))
    return parts


def run_experiment(grid: Grid, *, executor: Any = None, shard: tuple[int, int] | None = None,
                   progress: bool = True, limit: int | None = None) -> int:
    """Runs the grid's missing records; returns how many were written. ``executor`` runs the engine work
    (default: a LocalExecutor opening each model in this process; crossicl.ray_executor.RayExecutor spreads it
    over Ray actors); this function plans every batch and stays the single writer of records, whichever
    executor computes them and in whatever order they finish. The caller holds the run folder's (shard's)
    crossicl.records.RunLock, as Experiment.run does."""
    executor = executor if executor is not None else LocalExecutor()
    suffix = "" if shard is None else f".shard-{shard[0]}-of-{shard[1]}"
    store = RecordFile(records_path(grid.out, shard), record_key)
    dec = grid.config["decode"]
    written = 0
    for spec in grid.models:
        units = work_units(grid, spec.name, shard)
        if not units or all(u.key in store for u in units):
            continue
        # The engine in this process only for engine embeddings: a Ray driver need not load the model.
        planner = Planner(grid, functools.partial(executor.engine, spec), spec.name)
        pseudo = pseudo_labels(grid, executor, spec, planner, suffix, progress)
        bar = _progress(len(units), sum(u.key in store for u in units), f"{grid.config['name']} {spec.name}",
                        progress)
        work = _grid_batches(grid, planner, pseudo, units, store)
        try:
            with contextlib.closing(executor.map(spec, work, dec)) as results:
                for (chunk, plan, labels, contexts), res in results:
                    parts = _label_parts(res, len(chunk), labels, [u.item.label or "" for u in chunk], contexts,
                                         len(dec["content_free"]))
                    recs = [_record(u, p, res.outs[j], res.n_tokens[j], labels, dec["keep_prompt"], parts[j])
                            for j, (u, p) in enumerate(zip(chunk, plan)) if u.key not in store]
                    if spec.quantize != "none":  # float models' records keep their bytes (and stay resumable)
                        for r in recs:
                            r["quantize"] = spec.quantize
                    store.append(recs)
                    written += len(recs)
                    _advance(bar, len(recs), executor)
                    if limit is not None and written >= limit:
                        return written
        finally:
            if bar is not None:
                bar.close()
    return written


__all__ = ["paper_prediction", "score_prediction", "vote", "pseudo_labels", "run_experiment"]
