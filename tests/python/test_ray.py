"""crossicl.ray_executor: one stories260K grid on the pack run by Ray actors writes the records of a local run,
also when a worker is killed mid-run (its batches rerun elsewhere) or the driver is (rerun: resume); a batch that
kills every worker it meets stops the run naming its cell and item.

One local Ray instance for the module (2 logical CPUs, on 127.0.0.1 only, token-authenticated with a token of
its own, logs in a temporary folder); the driver of the driver-kill test joins it with --address.
"""
from __future__ import annotations

import collections
import importlib.util
import json
import os
import pathlib
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest
import yaml

import crossicl
import crossicl.cli
from crossicl import experiment as E
from crossicl.config import DEFAULTS, ModelSpec
from crossicl.executors import Batch, LocalExecutor, open_engine
from crossicl.ray_executor import RayExecutor
from tolerance import STORIES260K, assert_same_record, model_rel

if importlib.util.find_spec("ray") is None:  # an optional extra; CI installs it (requirements/test.txt)
    if os.environ.get("CI") == "true":
        pytest.fail("ray is not installed under CI=true", pytrace=False)
    pytest.skip("ray is not installed (pip install crossicl[ray])", allow_module_level=True)


def _config(paper_dir, models_dir, out) -> dict:
    """2 targets x (zero-shot, 2 x cross-task, pseudo-label) x 8 items = 64 records after 34 pseudo-labelling
    predictions, in batches of 4, label log-probs in both stages."""
    stories = models_dir / "stories260K"
    return {"name": "ray", "out": str(out), "data": {"pack": str(paper_dir), "items": 8},
            "models": [{"name": "stories260K", "path": str(stories / "stories260K.bin"),
                        "tokenizer": str(stories / "tok512.model"), "threads": 1}],
            "grid": {"targets": ["ARC-Challenge", "financial_phrasebank"], "sources": ["ag_news", "sst2"],
                     "methods": ["zero-shot", "cross-task", "pseudo-label"], "k": {"pseudo-label": [2]}},
            "selection": {"selector": "published"}, "prompt": {"style": "paper"},
            "decode": {"max_new_tokens": 6, "batch": 4, "truncation": "left", "label_scores": True},
            "pseudo": {"threshold": 0.2}}


N_RECORDS, N_PSEUDO = 64, 34


def _lines(path: pathlib.Path) -> list[dict]:
    return [json.loads(x) for x in path.read_bytes().decode("utf-8").split("\n") if x] if path.exists() else []


def _assert_same_run(run: pathlib.Path, ref: pathlib.Path) -> None:
    """The run's records and pseudo-label predictions are the reference's: each once; every value equal but the
    label log-probs, which may differ within the engine's batch bound (tests/python/tolerance.py)."""
    rel = model_rel(STORIES260K, tokens=512, output="logprobs")
    for name, key in (("records.jsonl", E.record_key), ("pseudo.jsonl", lambda r: (r["target"], r["source"], r["id"]))):
        got, want = _lines(run / name), {key(r): r for r in _lines(ref / name)}
        assert len(got) == len({key(r) for r in got}) == len(want), name  # nothing lost, nothing twice
        scale = max(abs(v) for r in want.values() for v in r["label_logprobs"].values())
        for rec in got:
            assert_same_record(rec, want[key(rec)], rel, scale)


@pytest.fixture(scope="module")
def cluster():
    """The gcs address of a local Ray instance shared by the module's tests."""
    tmp = tempfile.mkdtemp(prefix="crossicl-ray-")  # short: Ray's socket paths must fit 107 bytes
    env = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # 0: bind 127.0.0.1 only
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
           "PYTHONPATH": os.pathsep.join(str(pathlib.Path(p).resolve()) for p in sys.path if p)}
    try:
        with pytest.MonkeyPatch.context() as mp:
            for k, v in env.items():
                mp.setenv(k, v)  # the raylet, the workers and the driver subprocesses inherit them
            import ray  # after RAY_AUTH_MODE is set: ray reads it once, at import
            ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 2**20, _temp_dir=tmp,
                     logging_level="WARNING", log_to_driver=False)
            try:
                yield ray.get_runtime_context().gcs_address
            finally:
                ray.shutdown()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def reference(paper_dir, models_dir, tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("local")
    E.Experiment(_config(paper_dir, models_dir, out)).run(progress=False)
    assert len(_lines(out / "records.jsonl")) == N_RECORDS and len(_lines(out / "pseudo.jsonl")) == N_PSEUDO
    return out


def test_two_workers_write_the_records_of_a_local_run(cluster, reference, paper_dir, models_dir, tmp_path):
    with RayExecutor(workers=2) as ex:
        E.Experiment(_config(paper_dir, models_dir, tmp_path)).run(progress=False, executor=ex)
        assert ex.status() == {"workers": "2/2"} and ex.deaths == 0
        assert len(set(ex.batches)) == 2, ex.batches  # both workers pulled batches
        assert sum(ex.batches.values()) == 16 + 10  # grid: 64 / 4; pseudo: pools of 8 and 9 x 2 sources
    _assert_same_run(tmp_path, reference)


def _when_running(path: pathlib.Path, action, timeout: float = 120) -> threading.Thread:
    """Calls ``action()`` from a thread once the run has appended its first predictions to ``path``."""
    def wait():
        deadline = time.monotonic() + timeout
        while not (path.exists() and path.stat().st_size) and time.monotonic() < deadline:
            time.sleep(0.02)
        action()
    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    return thread


def test_a_worker_killed_mid_run_loses_nothing(cluster, reference, paper_dir, models_dir, tmp_path):
    killed = []

    def kill_one():
        pids = ex.worker_pids()
        if pids:
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    with RayExecutor(workers=2) as ex:
        thread = _when_running(tmp_path / "pseudo.jsonl", kill_one)
        E.Experiment(_config(paper_dir, models_dir, tmp_path)).run(progress=False, executor=ex)
        thread.join()
        assert killed and ex.deaths >= 1 and ex.requeued >= 1, (killed, ex.deaths, ex.requeued)
        assert killed[0] not in ex.worker_pids()  # Ray restarted the actor in a new process
    _assert_same_run(tmp_path, reference)


def _driver(cfg_path: pathlib.Path, address: str) -> subprocess.Popen:
    with open(cfg_path.with_suffix(".stderr"), "ab") as err:
        return subprocess.Popen([sys.executable, "-m", "crossicl", "run", str(cfg_path), "--quiet", "--executor",
                                 "ray", "--address", address, "--workers", "2"], stdout=subprocess.DEVNULL, stderr=err)


def test_a_killed_driver_resumes(cluster, reference, paper_dir, models_dir, tmp_path):
    out = tmp_path / "run"
    cfg_path = tmp_path / "grid.yaml"
    cfg_path.write_text(yaml.safe_dump(_config(paper_dir, models_dir, out)), encoding="utf-8")
    proc = _driver(cfg_path, cluster)
    _when_running(out / "pseudo.jsonl", lambda: proc.send_signal(signal.SIGKILL), timeout=180).join()
    assert proc.wait(timeout=60) == -signal.SIGKILL, cfg_path.with_suffix(".stderr").read_text()
    assert 0 < len(_lines(out / "pseudo.jsonl")) + len(_lines(out / "records.jsonl")) < N_PSEUDO + N_RECORDS
    proc = _driver(cfg_path, cluster)
    assert proc.wait(timeout=300) == 0, cfg_path.with_suffix(".stderr").read_text()
    _assert_same_run(out, reference)


class _CrashingTokenizer:
    """Kills its process (SIGKILL) when asked to encode a prompt holding ``marker``."""

    def __init__(self, tokenizer, marker: str):
        self.tokenizer, self.marker = tokenizer, marker

    def encode_batch(self, prompts):
        if any(self.marker in p for p in prompts):
            os.kill(os.getpid(), signal.SIGKILL)
        return self.tokenizer.encode_batch(prompts)


class _CrashOn:
    """An opener whose engines kill their worker on any batch with ``marker`` in a prompt (an input that
    crashes the engine, as a segfault would)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __call__(self, spec):
        engine = open_engine(spec)
        return type("CrashingEngine", (), {"__getattr__": lambda _, name: getattr(engine, name),
                                           "tokenizer": _CrashingTokenizer(engine.tokenizer, self.marker)})()


def test_a_batch_that_kills_its_workers_stops_the_run_naming_it(cluster, paper_dir, models_dir, tmp_path):
    import ray
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this file
    pack = crossicl.paper.Pack(paper_dir)
    item = pack.target_items("ARC-Challenge")[5]
    marker = crossicl.PromptBuilder(pack.tasks, style="paper").render_input("ARC-Challenge", item)
    with RayExecutor(workers=2, max_failures=2, opener=_CrashOn(marker)) as ex:
        with pytest.raises(RuntimeError, match=rf"ARC-Challenge/.* item {item.id}\b.*: a Ray worker died 2 times "
                                               "running this batch"):
            E.Experiment(_config(paper_dir, models_dir, tmp_path)).run(progress=False, executor=ex)
    recs = _lines(tmp_path / "records.jsonl")
    assert item.id not in {r["id"] for r in recs if r["target"] == "ARC-Challenge"}


def test_a_death_is_counted_against_the_batch_running_not_one_finished_before_it(cluster, models_dir):
    """The worker finished batch 1 and died running batch 2; Ray reports batch 2's failure first (the order
    that made the run above name another batch now and then): batch 1 keeps its result, batch 2 is blamed."""
    import ray
    from ray.exceptions import RayError
    from crossicl.ray_executor import _Job
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    stories = models_dir / "stories260K"
    spec = ModelSpec("stories260K", str(stories / "stories260K.bin"), str(stories / "tok512.model"), threads=1)
    decode = dict(DEFAULTS["decode"], max_new_tokens=2)
    ok, bad = (_Job(n, Batch([p], [f"t/zero-shot item {n}"])) for n, p in ((1, "Once upon a time"), (2, "CRASH")))
    with RayExecutor(workers=1, opener=_CrashOn("CRASH")) as ex:
        ex.start(wait=True)
        slot = ex._slots[0]
        slot.jobs = [(slot.actor.run.remote(spec, j.batch, decode), j) for j in (ok, bad)]
        running = {r: (slot, j) for r, j in slot.jobs}
        ok_ref, bad_ref = (r for r, _ in slot.jobs)
        ray.wait([ok_ref, bad_ref], num_returns=2, timeout=120)
        with pytest.raises(RayError) as died:
            ray.get(bad_ref)
        running.pop(bad_ref)
        queue = collections.deque()
        ex._lost(slot, bad_ref, died.value, queue, running)
        assert (ok.failures, bad.failures, list(queue), list(running)) == (0, 1, [bad], [ok_ref])
        assert ray.get(ok_ref).outs  # batch 1's result is still there for map's loop
        assert (ex.deaths, ex.requeued) == (1, 1)


def test_an_engine_error_on_a_worker_is_the_local_runs_error(cluster, models_dir):
    stories = models_dir / "stories260K"
    spec = ModelSpec("stories260K", str(stories / "stories260K.bin"), str(stories / "tok512.model"), threads=1)
    batch = Batch(["Once upon a time " * 200], ["t/zero-shot/None/k=0/seed=None item 7"])
    decode = dict(DEFAULTS["decode"], truncation="none")
    with pytest.raises(ValueError) as local:
        LocalExecutor().run(spec, batch, decode)
    with RayExecutor(workers=1) as ex, pytest.raises(ValueError) as remote:
        list(ex.map(spec, [("tag", batch)], decode))
    assert str(remote.value) == str(local.value)
    assert str(local.value).startswith("t/zero-shot/None/k=0/seed=None item 7: ")


def test_ray_is_optional_and_its_options_need_it(paper_dir, models_dir, tmp_path, capsys):
    r = subprocess.run([sys.executable, "-c", "import sys, crossicl, crossicl.cli; print('ray' in sys.modules)"],
                       capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "False", r.stderr
    cfg_path = tmp_path / "grid.yaml"
    cfg_path.write_text(yaml.safe_dump(_config(paper_dir, models_dir, tmp_path / "run")), encoding="utf-8")
    assert crossicl.cli.main(["run", str(cfg_path), "--workers", "2"]) == 1
    assert "--workers" in capsys.readouterr().err and not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        RayExecutor(workers=0)
