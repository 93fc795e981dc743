"""Where the engine work of a run happens. The runner (the driver) plans batches, hands each to an executor,
scores the outputs and is the single writer of records; an executor only runs engines.

* :class:`LocalExecutor`: the engines live in this process (one per model, opened on first use).

An executor has ``engine(spec)`` (the open engine of a model: the planner embeds with it), ``generate(spec,
prompts, names, decode)`` and ``label_scores(spec, prompts, labels, names, decode)``; another executor (Ray
actors that pull batches) implements the same three.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from typing import Any

from . import _crossicl
from .config import ConfigError, ModelSpec


def open_engine(spec: ModelSpec):
    """A crossicl.Engine for a ModelSpec."""
    return _crossicl.Engine(spec.resolved_path(), spec.tokenizer, dtype=spec.dtype, device=spec.device,
                            threads=spec.threads, n_ctx=spec.n_ctx, max_batch_tokens=spec.max_batch_tokens)


def _named(e: ValueError, names: list[str]) -> ValueError:
    """The engine's error with the cell and item of the prompt it names ("prompt i") in front."""
    m = re.search(r"prompt (\d+)", str(e))
    where = names[int(m.group(1))] if m and int(m.group(1)) < len(names) else ", ".join(names[:3])
    return ValueError(f"{where}: {e}")


class LocalExecutor:
    """Runs the engines in this process. ``engines``: open engines by model name; a model not in it is opened
    on first use and added to it (so the caller can reuse it)."""

    def __init__(self, engines: MutableMapping[str, Any] | None = None):
        self.engines = engines if engines is not None else {}

    def engine(self, spec: ModelSpec):
        """The open engine of a model (opened now if needed); it must have a tokenizer."""
        engine = self.engines.get(spec.name)
        if engine is None:
            engine = self.engines[spec.name] = open_engine(spec)
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
                     decode: Mapping[str, Any]) -> list[list[float]]:
        """Sum log-prob of label_prefix + label after each prompt, for every label of its label space."""
        conts = [[decode["label_prefix"] + label for label in ls] for ls in labels]
        try:
            res = self.engine(spec).score_batch(prompts, conts, truncation=decode["truncation"])
        except ValueError as e:
            raise _named(e, names) from None
        return [[r.sum for r in row] for row in res]


__all__ = ["open_engine", "LocalExecutor"]
