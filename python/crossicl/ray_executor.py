"""A grid's engine work on Ray actors: ``crossicl run FILE --executor ray`` / ``Experiment.run(executor="ray")``.

The driver (this process) plans the run exactly as a local run does (crossicl.runner: the same cells, items,
selection and batches), hands the batches to a fixed pool of actors and writes every record itself, so the run
folder needs no file system shared with the workers. Each actor is a :class:`Worker`: a
crossicl.executors.LocalExecutor that opens each model once, at its first batch. An actor holds at most
:data:`DEPTH` batches and gets the next one as soon as it returns one, so fast workers take more batches than
slow ones.

Faults. A worker process that dies (SIGKILL, OOM, a lost node) fails its batches with a ``RayActorError``; the
driver puts them back at the head of the queue for the other actors and for the dead one once Ray has restarted
it (``max_restarts``). Only the batch the actor was running is counted against (the ones queued behind it are
innocent); a batch that has killed :data:`MAX_FAILURES` workers stops the run with a RuntimeError naming its cells
and items (an input that crashes the engine). An exception raised by the engine (a ValueError naming the cell
and item) stops the run with that exception, as in a local run. A result is only taken from the copy of a batch
the driver is waiting for, so no record is written twice. A driver that dies takes its actors with it; running
the same command again resumes from the records written, as a local run does.

Workers need crossicl and the model files (checkpoint, tokenizer) at the paths of the driver's config.json;
the data (task pack, datasets) is read by the driver only. The driver checks that the model files exist, and
reads them only when ``selection.embeddings = "engine"`` (it computes the embeddings it selects with).

Ray is imported when the first batch is mapped, never by ``import crossicl``.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from .config import ModelSpec
from .executors import Batch, BatchResult, LocalExecutor, open_engine

MAX_FAILURES = 3
"""Deaths of a worker while running the same batch after which the run stops."""
MAX_RESTARTS = 3
"""Restarts Ray gives each actor after its process died."""
DEPTH = 2
"""Batches an actor holds at once: the one it runs and the next, so it never waits for the driver."""
START_WARNING_S = 60.0
"""Seconds without any worker up after which the driver warns that the cluster may lack resources."""


class Worker:
    """The body of one Ray actor: a LocalExecutor whose engines (one per model) live as long as the actor.
    ``opener(spec)`` opens an engine (default crossicl.executors.open_engine; benchmarks pass a stub)."""

    def __init__(self, opener: Callable[[ModelSpec], Any] = open_engine):
        self.executor = LocalExecutor(opener=opener)

    def pid(self) -> int:
        return os.getpid()

    def run(self, spec: ModelSpec, batch: Batch, decode: Mapping[str, Any]) -> BatchResult:
        return self.executor.run(spec, batch, decode)


@dataclasses.dataclass
class _Slot:
    """One actor of the pool, as the driver sees it."""
    actor: Any
    state: str = "starting"          # starting -> up; up -> restarting -> up | dead
    pid: int | None = None           # the process of the actor's current incarnation
    probe: Any = None                # pending pid() call: answers once the actor is (again) up
    error: str = ""                  # why it is dead
    jobs: list = dataclasses.field(default_factory=list)  # [(ref, job)] in the actor's order


@dataclasses.dataclass
class _Job:
    tag: Any
    batch: Batch
    failures: int = 0


def _ray():
    """The ray module, imported now (``import crossicl`` never imports it)."""
    try:
        import ray
    except ImportError:
        raise RuntimeError("the Ray executor needs Ray: pip install 'crossicl[ray]'") from None
    return ray


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _where(batch: Batch, most: int = 4) -> str:
    """The cells and items of a batch, for an error message."""
    names = batch.names[:most] + ([f"... ({len(batch.names)} prompts)"] if len(batch.names) > most else [])
    return "; ".join(names)


class RayExecutor:
    """Runs batches on a pool of Ray actors (see the module doc). Use it as ``Experiment.run(executor="ray",
    ...)`` or pass an instance as ``executor=`` (then close it, or use it as a context manager).

    address: a running cluster to join (``ray start --head`` prints it; "auto" finds a local one); None starts
        a local Ray instance, or uses the one this process is already connected to.
    workers: actors in the pool; None = the cluster's CPUs / ``cpus_per_worker`` (and GPUs / ``gpus_per_worker``
        when that is set), at least 1.
    cpus_per_worker, gpus_per_worker: Ray resources of each actor (Ray sets CUDA_VISIBLE_DEVICES to its GPUs,
        so a model's ``device = "cuda"`` is the actor's own GPU). An engine's ``threads = 0`` is torch's default,
        which Ray sets to the actor's CPUs.
    max_failures, max_restarts: see :data:`MAX_FAILURES` and :data:`MAX_RESTARTS`.
    opener: opens an engine from a ModelSpec, on the workers (and on the driver for engine embeddings).
    init: extra keyword arguments of ``ray.init`` (e.g. ``num_cpus``, ``_temp_dir``).

        >>> with RayExecutor(workers=4) as ex:
        ...     crossicl.Experiment.from_file("grid.toml").run(executor=ex)
    """

    def __init__(self, *, address: str | None = None, workers: int | None = None, cpus_per_worker: float = 1,
                 gpus_per_worker: float = 0, max_failures: int = MAX_FAILURES, max_restarts: int = MAX_RESTARTS,
                 opener: Callable[[ModelSpec], Any] = open_engine, init: Mapping[str, Any] | None = None):
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ValueError(f"workers must be an integer >= 1 (workers={workers!r})")
        if not cpus_per_worker >= 0 or not gpus_per_worker >= 0 or cpus_per_worker + gpus_per_worker == 0:
            raise ValueError(f"cpus_per_worker and gpus_per_worker must be >= 0, not both 0 "
                             f"(cpus_per_worker={cpus_per_worker}, gpus_per_worker={gpus_per_worker})")
        if max_failures < 1 or max_restarts < 0:
            raise ValueError(f"max_failures must be >= 1 and max_restarts >= 0 (max_failures={max_failures}, "
                             f"max_restarts={max_restarts})")
        self.address, self.workers = address, workers
        self.cpus_per_worker, self.gpus_per_worker = cpus_per_worker, gpus_per_worker
        self.max_failures, self.max_restarts = max_failures, max_restarts
        self.opener = opener
        self.init = dict(init or {})
        self.deaths = 0       # worker deaths seen (each put its batches back in the queue)
        self.requeued = 0     # batches put back after a death
        self.batches: collections.Counter[int] = collections.Counter()  # batches returned, by worker pid
        self._local = LocalExecutor(opener=opener)  # the driver's own engines, for engine embeddings only
        self._slots: list[_Slot] = []
        self._owns_ray = False

    # The pool -------------------------------------------------------------------------------------------------
    def start(self, *, wait: bool = False) -> "RayExecutor":
        """Connects to Ray (or starts a local instance) and starts the actors; the first ``map`` does it.
        ``wait``: return once every actor is up (or dead), e.g. to time a run without the actors' start."""
        if not self._slots:
            self._start()
        while wait and any(s.probe is not None for s in self._slots):
            for slot in self._slots:
                if slot.probe is not None:
                    self._settle(slot, slot.probe)
        return self

    def _start(self) -> None:
        ray = _ray()
        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, logging_level=logging.WARNING, **self.init)
            self._owns_ray = True
        n = self.workers or self._default_workers(ray.cluster_resources())
        actor = ray.remote(num_cpus=self.cpus_per_worker, num_gpus=self.gpus_per_worker,
                           max_restarts=self.max_restarts, max_task_retries=0)(Worker)
        self._slots = [_Slot(actor.remote(self.opener)) for _ in range(n)]
        for slot in self._slots:
            slot.probe = slot.actor.pid.remote()

    def _default_workers(self, resources: Mapping[str, float]) -> int:
        fits = []
        if self.cpus_per_worker:
            fits.append(int(resources.get("CPU", 0) // self.cpus_per_worker))
        if self.gpus_per_worker:
            fits.append(int(resources.get("GPU", 0) // self.gpus_per_worker))
        return max(1, min(fits))

    def close(self) -> None:
        """Stops the actors, and the Ray instance if this executor started it."""
        if self._slots:
            ray = _ray()
            for slot in self._slots:
                try:
                    ray.kill(slot.actor, no_restart=True)
                except Exception:  # already gone with its node or the cluster; nothing left to stop
                    pass
            self._slots = []
            if self._owns_ray:
                ray.shutdown()
                self._owns_ray = False
        self._local.engines.clear()

    def __enter__(self) -> "RayExecutor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def worker_pids(self) -> list[int]:
        """The processes of the actors that are up now."""
        return [s.pid for s in self._slots if s.state == "up" and s.pid is not None]

    def status(self) -> dict[str, str]:
        up = sum(s.state == "up" for s in self._slots)
        return {"workers": f"{up}/{len(self._slots)}"}

    # The executor interface --------------------------------------------------------------------------------------
    def engine(self, spec: ModelSpec):
        """An engine of the model in the driver (the planner's engine embeddings only)."""
        return self._local.engine(spec)

    def map(self, spec: ModelSpec, work: Iterable[tuple[Any, Batch]], decode: Mapping[str, Any]
            ) -> Iterator[tuple[Any, BatchResult]]:
        """(tag, result) of every (tag, batch) of ``work`` as the actors finish them. ``work`` is read lazily,
        a few batches ahead of the actors; a batch whose worker died is run again by another one."""
        self.start()
        ray = _ray()
        from ray.exceptions import RayError, RayTaskError
        source = iter(work)
        queue: collections.deque[_Job] = collections.deque()  # batches put back after a death, run first
        running: dict[Any, tuple[_Slot, _Job]] = {}
        more, since, warned = True, time.monotonic(), False
        try:
            while True:
                more = self._feed(spec, decode, source, queue, running, more)
                if not running and not queue and not more:
                    return
                probes = {s.probe: s for s in self._slots if s.probe is not None}
                if not running and not probes:
                    why = next((s.error for s in self._slots if s.error), "")
                    raise RuntimeError(f"every Ray worker is dead ({len(self._slots)} actors, each restarted up to "
                                       f"{self.max_restarts} times{'; last: ' + why if why else ''}); the run "
                                       "stopped with batches left: run the same command again to resume")
                ready, _ = ray.wait(list(running) + list(probes), num_returns=1, timeout=5.0)
                if not ready:
                    if not warned and not running and time.monotonic() - since > START_WARNING_S:
                        warnings.warn(f"no Ray worker has started in {START_WARNING_S:.0f} s: does the cluster have "
                                      f"{self.cpus_per_worker} CPUs and {self.gpus_per_worker} GPUs free per "
                                      "worker? (`ray status`)", RuntimeWarning, stacklevel=2)
                        warned = True
                    continue
                ref = ready[0]
                if ref in probes:
                    self._settle(probes[ref], ref)
                    continue
                slot, job = running.pop(ref)
                try:
                    result = ray.get(ref)
                except RayTaskError as e:  # the engine raised: the error a local run raises
                    raise (e.cause if isinstance(e.cause, Exception) else e) from None
                except RayError as e:  # the worker died (or its node, or the result with it): run it elsewhere
                    self._lost(slot, ref, e, queue, running)
                    continue
                slot.jobs = [(r, j) for r, j in slot.jobs if r != ref]
                self.batches[slot.pid] += 1
                yield job.tag, result
        finally:
            for ref in running:  # a run stopped early (limit, error, Ctrl-C): drop what is left
                try:
                    ray.cancel(ref)
                except Exception:
                    pass
            for slot in self._slots:
                slot.jobs = []

    def _feed(self, spec: ModelSpec, decode: Mapping[str, Any], source: Iterator, queue: collections.deque,
              running: dict, more: bool) -> bool:
        """Tops every live actor up to DEPTH batches, queued ones first; returns whether ``source`` has more.
        A batch already blamed for a death runs alone on an idle actor: with a batch queued behind it, or one just
        finished ahead of it whose result died with the process, the next death could not be told apart (an
        innocent batch blamed twice would stop the run naming it)."""
        for depth in range(1, DEPTH + 1):
            for slot in self._slots:
                if slot.state != "up" or len(slot.jobs) >= depth or any(j.failures for _, j in slot.jobs):
                    continue
                if queue:
                    if queue[0].failures and slot.jobs:  # it waits for an idle actor
                        continue
                    job = queue.popleft()
                elif more:
                    nxt = next(source, None)
                    if nxt is None:
                        return False
                    job = _Job(*nxt)
                else:
                    return more
                ref = slot.actor.run.remote(spec, job.batch, decode)
                running[ref] = (slot, job)
                slot.jobs.append((ref, job))
        return more

    def _lost(self, slot: _Slot, ref: Any, error: Exception, queue: collections.deque, running: dict) -> None:
        """An actor's process died (``ref``, one of its batches, failed with ``error``): the batches it had
        finished keep their results (they stay in ``running`` for map's loop), the one it was running is counted
        against, and it and the ones queued behind it go back to the queue. The failed ref need not be the running
        batch's: Ray may report a queued batch's failure before the result of one finished just before the death."""
        if not slot.jobs:
            return
        self.deaths += 1
        ray = _ray()
        from ray.exceptions import RayError, RayTaskError
        # slot.jobs is in the actor's order and holds ref (map's loop took it from running): the first one without
        # a result, ref at the latest, is the one it was running
        first, last = 0, [r for r, _ in slot.jobs].index(ref)

        def finished(r: Any) -> bool:
            if not ray.wait([r], timeout=0)[0]:
                return False
            try:
                ray.get(r, timeout=0)
            except RayTaskError:  # the engine raised: a result of its own, which map's loop raises
                return True
            except RayError:
                return False
            return True

        while first < last and finished(slot.jobs[first][0]):
            first += 1
        blamed = slot.jobs[first][1]
        blamed.failures += 1
        if blamed.failures >= self.max_failures:
            raise RuntimeError(f"{_where(blamed.batch)}: a Ray worker died {blamed.failures} times "
                               f"running this batch (last: {_first_line(error)}); an input of it may crash the "
                               "engine: run this cell with the local executor to see the error")
        for r, job in reversed(slot.jobs[first:]):  # the queue's head, in their order
            running.pop(r, None)
            queue.appendleft(job)
            self.requeued += 1
        slot.jobs = []
        if slot.state == "up":
            slot.state, slot.probe = "restarting", slot.actor.pid.remote()

    def _settle(self, slot: _Slot, ref: Any) -> None:
        """A probe answered: the actor is up (with its pid), dead for good, or not yet back (probe again)."""
        ray = _ray()
        from ray.exceptions import ActorUnavailableError, RayError
        slot.probe = None
        try:
            slot.pid, slot.state = ray.get(ref), "up"
        except ActorUnavailableError:  # restarting still: ask again
            time.sleep(0.2)
            slot.probe = slot.actor.pid.remote()
        except RayError as e:  # out of restarts, or it could not start (no crossicl on that node?)
            slot.state, slot.error = "dead", _first_line(e)


__all__ = ["RayExecutor", "Worker", "MAX_FAILURES", "MAX_RESTARTS", "DEPTH"]
