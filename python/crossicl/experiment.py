"""``crossicl.Experiment``: a grid of cross-task ICL runs over one model load, with resumable per-item records.

A grid is target x method x source x k x seed x model. For every cell the runner selects demonstrations,
builds the prompts (paper or clean style), runs the engine in batches across items, scores the predictions
with every scorer and appends one JSON record per item to ``<out>/records.jsonl``::

    exp = crossicl.Experiment.from_file("experiment.toml")      # or Experiment({...}) with the same keys
    exp.run()                                                    # resumes when records exist
    exp.summary()                                                # accuracy per cell (pandas)

The configuration (a dict, or a TOML / YAML file) is documented in docs/experiments.md; every key is checked
before any model work and errors name the key (``grid.methods[1]: unknown method 'cross'``).

Records are crash-safe: each batch is appended with one write and fsync'ed, a torn last line left by a kill is
cut off on the next start, and the items of a batch are always run together so a resumed run computes exactly
what an uninterrupted one does. A run holds the folder's lock (``<out>/lock``, or ``lock.shard-i-of-n`` per
shard) for its whole length: a second run of the same folder raises ``RunFolderLocked`` naming the first one's
pid. Whole files (config.json, pseudo-label tables, embedding caches) are written atomically.

This module is the facade over the package's layers (each imports only those before it): crossicl.records (the
record files), crossicl.config (the experiment file and its checks), crossicl.planning (demonstrations,
prompts, work units), crossicl.executors and crossicl.runner (the run loop). crossicl.results, plots, analysis
and report work on the records.
"""
from __future__ import annotations

import datetime
import json
import os
import pathlib
from collections.abc import Mapping
from typing import Any

from . import config as _config
from . import records, results, runner
from .config import ALIASES, METHODS, SELECTORS, Cell, ConfigError, ModelSpec, load_config, parse_shard
from .executors import LocalExecutor
from .ray_executor import RayExecutor
from .records import RecordFile, RunFolderLocked, RunLock, atomic_write_text, merge, record_key, shard_of
from .runner import paper_prediction, score_prediction, vote


def write_config(out: pathlib.Path, config: Mapping[str, Any]) -> pathlib.Path:
    """Claims the run folder ``out`` for ``config``: creates ``out/config.json`` if absent, else compares it and
    raises ConfigError when the folder holds another grid (a different ``out`` alone is a moved folder: the file
    is rewritten). Every write is atomic (crossicl.records.atomic_write_text), so the shards of a grid, which
    all do this at start, never read a half-written file, and of two shards creating it the second compares.
    Returns the path."""
    path = out / "config.json"
    text = json.dumps(config, indent=1, sort_keys=True, default=str)
    while True:
        try:
            old_text = path.read_bytes().decode("utf-8")
        except FileNotFoundError:
            try:
                atomic_write_text(path, text, exclusive=True)
                return path
            except FileExistsError:  # another shard created it first: compare with that one
                continue
        except UnicodeDecodeError:
            old_text = ""
        if old_text == text:
            return path
        try:
            old = json.loads(old_text)
            if not isinstance(old, dict):
                raise ValueError("not an object")
        except ValueError:
            raise ConfigError(f"{path}: not a crossicl config.json; if this folder holds no run of another grid, "
                              "remove the file and run again") from None
        try:  # a folder written before a key existed holds that key's default
            old = _config.with_defaults(old)
        except ConfigError:
            pass
        diff = sorted(k for k in set(old) | set(config)
                      if json.dumps(old.get(k), sort_keys=True, default=str)
                      != json.dumps(config.get(k), sort_keys=True, default=str) and k != "out")
        if diff:
            raise ConfigError(f"{path}: this run folder holds another configuration (differs in "
                              f"{', '.join(diff)}); use another `out` folder")
        atomic_write_text(path, text)
        return path


class Experiment:
    """A grid of cross-task ICL runs (see the module doc and docs/experiments.md).

    ``config``: a dict shaped like the experiment file. ``engines``: already opened engines by model name (a
    notebook can pass ``{"m": engine}`` and skip the load). ``out``: overrides ``config["out"]``.

    After construction the validated grid is in ``grid`` (a crossicl.config.Grid), and its parts are
    attributes too: ``data``, ``targets``, ``sources``, ``methods``, ``seeds``, ``mixed``, ``pseudo_sources``,
    ``models``, ``cells``.
    """

    def __init__(self, config: Mapping[str, Any], *, engines: Mapping[str, Any] | None = None,
                 out: str | os.PathLike | None = None):
        raw = dict(config)
        base = pathlib.Path(raw.pop("_base", "."))
        self.config = _config.with_defaults(raw)
        if out is not None:
            self.config["out"] = str(out)
        self.base = base
        _config.absolute_paths(self.config, base)  # config.json then reads the same from any folder
        self.out = pathlib.Path(self.config["out"])
        self.engines = dict(engines or {})
        self.grid = _config.validate(self.config, base, self.engines)
        g = self.grid
        self.data, self.targets, self.sources, self.methods = g.data, g.targets, g.sources, g.methods
        self.seeds, self.mixed, self.pseudo_sources = g.seeds, g.mixed, g.pseudo_sources
        self.models, self.cells = g.models, g.cells

    @classmethod
    def from_file(cls, path: str | os.PathLike, **kwargs: Any) -> "Experiment":
        """An Experiment from a TOML or YAML file."""
        return cls(load_config(path), **kwargs)

    def records_path(self, shard: tuple[int, int] | None = None) -> pathlib.Path:
        return records.records_path(self.out, shard)

    def run(self, *, shard: tuple[int, int] | str | None = None, progress: bool = True,
            limit: int | None = None, executor: Any = None, address: str | None = None,
            workers: int | None = None, cpus_per_worker: float = 1, gpus_per_worker: float = 0,
            command: str | None = None) -> "Experiment":
        """Runs every cell not yet recorded (resuming) and returns self. ``shard`` = (i, n) or "i/n" runs only
        that deterministic part of the items; ``limit`` stops after that many new records (tests, dry runs).

        ``executor``: where the engines run. None or "local": this process (crossicl.executors.LocalExecutor over
        ``engines``). "ray": a pool of Ray actors (crossicl.ray_executor.RayExecutor; ``pip install
        crossicl[ray]``), started for this run and stopped after it: ``address`` joins a running cluster (None
        starts a local Ray instance), ``workers`` actors (None: the cluster's CPUs / ``cpus_per_worker``), each
        with ``cpus_per_worker`` CPUs and ``gpus_per_worker`` GPUs. Or an executor object (the caller closes
        it). Whatever the executor, this process plans the batches and writes every record, and the records
        are those of a local run.

        ``command``: the command line that started the run (``crossicl run`` passes its own), appended with the
        UTC time to ``<out>/commands.txt`` once the folder is claimed; the report lists it."""
        if isinstance(shard, str):
            shard = parse_shard(shard)
        owned = executor == "ray"
        if owned:
            given = [s.name for s in self.models if s.name in self.engines]
            if given:
                raise ConfigError(f"models: {given} given as open engines cannot run on Ray workers; give their "
                                  "`path` in the experiment instead")
            executor = RayExecutor(address=address, workers=workers, cpus_per_worker=cpus_per_worker,
                                   gpus_per_worker=gpus_per_worker)
        elif address is not None or workers is not None or (cpus_per_worker, gpus_per_worker) != (1, 0):
            raise ValueError("address, workers, cpus_per_worker and gpus_per_worker are options of executor='ray' "
                             "(crossicl run: --address, --workers, --cpus-per-worker, --gpus-per-worker need "
                             "--executor ray)")
        elif executor is None or executor == "local":
            executor = LocalExecutor(self.engines)
        elif isinstance(executor, str):
            raise ValueError(f"executor must be 'local', 'ray' or an executor object (got {executor!r})")
        if not self.out.is_dir():
            self.out.mkdir(parents=True, exist_ok=True)
            records.fsync_dir(self.out.parent)
        try:
            # One run per folder (per shard of it): a second one stops here, naming the first one's pid.
            with RunLock(self.out, shard):
                write_config(self.out, self.config)
                if command is not None:
                    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                    records.append_line(self.out / "commands.txt", f"{stamp}  {command}")
                runner.run_experiment(self.grid, executor=executor, shard=shard, progress=progress, limit=limit)
        finally:
            if owned:
                executor.close()
        return self

    def results(self):
        """Every record of the run folder as a pandas DataFrame (records*.jsonl)."""
        return records.load_records(self.out)

    def summary(self, *, scorer: str = "paper_eval"):
        """Accuracy per cell (pandas), see crossicl.results.summary."""
        return results.summary(self.results(), scorer=scorer)


# The names below moved to crossicl.config, crossicl.records and crossicl.runner; they stay importable here.
__all__ = ["Experiment", "write_config", "RunFolderLocked", "ModelSpec", "Cell", "ConfigError", "METHODS", "ALIASES",
           "SELECTORS", "load_config", "merge", "parse_shard", "paper_prediction", "score_prediction", "vote",
           "record_key", "shard_of", "RecordFile"]
