"""Where the engine work of a run happens. The runner (the driver) plans batches, hands them to an executor,
scores the outputs and is the single writer of records; an executor only runs engines.

* :class:`LocalExecutor`: the engines live in this process (one per model, opened on first use).
* :class:`crossicl.ray_executor.RayExecutor`: Ray actors, each with its own LocalExecutor, pull the batches.

An executor has ``engine(spec)`` (an open engine of a model in this process: the planner embeds with it, and
only asks for it when the selection needs engine embeddings), ``map(spec, work, decode)`` (runs
``(tag, Batch)`` pairs and yields ``(tag, BatchResult)`` as each batch finishes, in any order) and
``status()`` (a few words for the progress bar). A :class:`Batch` and a :class:`BatchResult` are plain values,
so they travel to another process as they are.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from typing import Any

from . import _crossicl
from .config import ConfigError, ModelSpec


def open_engine(spec: ModelSpec):
    """A crossicl.Engine for a ModelSpec."""
    return _crossicl.Engine(spec.resolved_path(), spec.tokenizer, dtype=spec.dtype, device=spec.device,
                            threads=spec.threads, n_ctx=spec.n_ctx, max_batch_tokens=spec.max_batch_tokens,
                            cache_bytes=spec.cache_bytes, quantize=spec.quantize)


def _named(e: ValueError, names: list[str]) -> ValueError:
    """The engine's error with the cell and item of the prompt it names ("prompt i") in front."""
    m = re.search(r"prompt (\d+)", str(e))
    where = names[int(m.group(1))] if m and int(m.group(1)) < len(names) else ", ".join(names[:3])
    return ValueError(f"{where}: {e}")


@dataclasses.dataclass
class Batch:
    """One engine call of a run: prompts computed together (the batch decides the last bits of a log-prob)."""
    prompts: list[str]                     # generated, and label-scored when `labels` is given
    names: list[str]                       # each prompt's cell and item (then each score_only prompt's), for errors
    labels: list[list[str]] | None = None  # the label space of each prompt, then of each score_only prompt;
                                           # None: no label scores
    score_only: list[str] = dataclasses.field(default_factory=list)  # prompts only label-scored, after `prompts`
                                                                     # (the content-free inputs of calibration)


@dataclasses.dataclass
class Generation:
    """What a record keeps of a crossicl.GenerateResult (which does not pickle)."""
    text: str
    truncated: int       # prompt tokens dropped by truncation
    finish_reason: str   # 'length', 'stop', 'eos' or 'window'


@dataclasses.dataclass
class BatchResult:
    """The engine's answer to a :class:`Batch`, prompt by prompt."""
    outs: list[Generation]
    n_tokens: list[int]                            # prompt tokens, before truncation
    label_logprobs: list[list[float]] | None       # summed log-prob of each label (Batch.labels) of every prompt,
                                                   # then of every score_only prompt; or None
    label_first_logprobs: list[list[float]] | None = None  # the same for the label's first token only (the paper's
                                                           # force_decode)


class LocalExecutor:
    """Runs the engines in this process. ``engines``: open engines by model name; a model not in it is opened
    on first use with ``opener(spec)`` (default :func:`open_engine`) and added to it (so the caller can reuse
    it)."""

    def __init__(self, engines: MutableMapping[str, Any] | None = None, *,
                 opener: Callable[[ModelSpec], Any] = open_engine):
        self.engines = engines if engines is not None else {}
        self.opener = opener

    def engine(self, spec: ModelSpec):
        """The open engine of a model (opened now if needed); it must have a tokenizer."""
        engine = self.engines.get(spec.name)
        if engine is None:
            engine = self.engines[spec.name] = self.opener(spec)
        if engine.tokenizer is None:
            raise ConfigError(f"models: '{spec.name}' has no tokenizer; set its `tokenizer` (a llama2.c .bin "
                              "carries none)")
        return engine

    def generate(self, spec: ModelSpec, prompts: list[str], names: list[str], decode: Mapping[str, Any]):
        """Greedy generations of the prompts and each prompt's token count (the prompts are tokenized once).
        ``names`` name each prompt in errors; ``decode``: the experiment's decode table."""
        engine = self.engine(spec)
        # Every batch starts from an empty prefix cache: a cached prefix computed in another batch shape differs in
        # the last bits, and a resumed or sharded run must write exactly the records of an uninterrupted one. The
        # cache still serves the batch's shared prefixes and all its label continuations.
        engine.clear_cache()
        ids = engine.tokenizer.encode_batch(prompts)  # = engine.encode of each prompt (BOS + text)
        try:
            outs = engine.generate(ids, max_new_tokens=decode["max_new_tokens"], stop=list(decode["stop"]),
                                   truncation=decode["truncation"])
        except ValueError as e:
            raise _named(e, names) from None
        return outs, [len(x) for x in ids]

    def label_scores(self, spec: ModelSpec, prompts: list[str], labels: list[list[str]], names: list[str],
                     decode: Mapping[str, Any]) -> tuple[list[list[float]], list[list[float]]]:
        """Log-prob of label_prefix + label after each prompt, for every label of its label space: summed over
        the label's tokens, and of its first token alone."""
        conts = [[decode["label_prefix"] + label for label in ls] for ls in labels]
        try:
            res = self.engine(spec).score_batch(prompts, conts, truncation=decode["truncation"])
        except ValueError as e:
            raise _named(e, names) from None
        return [[r.sum for r in row] for row in res], [[r.first_logprob for r in row] for row in res]

    def run(self, spec: ModelSpec, batch: Batch, decode: Mapping[str, Any]) -> BatchResult:
        """One batch: the generations, then the label scores of the prompts and the score_only prompts when the
        batch asks for them (the prompts' blocks are then in the prefix cache, and so is the context a
        content-free prompt shares with its prompt)."""
        outs, n_tokens = self.generate(spec, batch.prompts, batch.names, decode)
        sums = firsts = None
        if batch.labels is not None:
            sums, firsts = self.label_scores(spec, batch.prompts + batch.score_only, batch.labels, batch.names, decode)
        return BatchResult([Generation(o.text, o.truncated, o.finish_reason) for o in outs], n_tokens, sums, firsts)

    def map(self, spec: ModelSpec, work: Iterable[tuple[Any, Batch]], decode: Mapping[str, Any]
            ) -> Iterator[tuple[Any, BatchResult]]:
        """(tag, result) of every (tag, batch) of ``work``, one after the other."""
        for tag, batch in work:
            yield tag, self.run(spec, batch, decode)

    def status(self) -> dict[str, str]:
        """Words for the progress bar (none: the bar's rate and ETA say it all)."""
        return {}


__all__ = ["open_engine", "Batch", "Generation", "BatchResult", "LocalExecutor"]
