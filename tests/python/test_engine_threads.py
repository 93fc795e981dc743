"""crossicl.Engine from several Python threads (stories260K): calls are serialised without deadlocking, give the
results of a single thread, and Ctrl-C interrupts a call in the main thread promptly, also while another thread's
call holds the engine.

The engine's thread takes the GIL while it holds the engine's lock (the signal poll of a call in the main thread,
the progress callback), so a binding that waited for that lock with the GIL held deadlocked for good
(cache_stats during generate did). Each check therefore runs in a child process (this file run as a script) under
a watchdog: threads are joined with a timeout, and faulthandler dumps every thread's stack and exits if the child
still runs after WATCHDOG_S, so a deadlock fails the test, with the stacks, instead of hanging pytest.
"""
from __future__ import annotations

import faulthandler
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import crossicl
from tolerance import STORIES260K, assert_close, gamma, model_rel

if __name__ != "__main__" and not getattr(crossicl, "has_engine", False):
    pytest.skip("crossicl built without the engine", allow_module_level=True)

WATCHDOG_S = 120  # the child dumps its threads' stacks and exits after this
DEF = "Once upon a time, there was a little girl named Lily. She liked to play in the park with her friends."
PROMPTS = [DEF + " One day she saw a dog.", DEF + " Tom came to play and they", "Lily and Tom went to the park"]
CONTINUATIONS = [" happy", " sad", " big red ball"]
N_THREADS = 4
ROUNDS = 3


def open_engine(stories: pathlib.Path, **kw):
    return crossicl.Engine(str(stories / "stories260K.bin"), tokenizer=str(stories / "tok512.model"), **kw)


# ------------------------------------------------------------------------------------------ the child process


def ops(engine):
    """The calls each thread makes, name -> function returning a JSON-able result."""
    def generate():
        return [{"ids": r.token_ids, "lp": r.logprobs, "text": r.text, "finish": r.finish_reason}
                for r in engine.generate(PROMPTS, max_new_tokens=24, stop=[], stop_at_eos=False)]

    def score():
        return [{"ids": r.token_ids, "lp": r.logprobs, "sum": r.sum} for r in engine.score(PROMPTS[0], CONTINUATIONS)]

    def score_batch():
        return [[{"ids": r.token_ids, "lp": r.logprobs, "sum": r.sum} for r in rs]
                for rs in engine.score_batch(PROMPTS, CONTINUATIONS)]

    def hidden_states():
        return engine.hidden_states(PROMPTS, layers=[0, 2, -1], pooling="mean").tolist()

    def logits():
        return engine.logits(engine.encode(PROMPTS[2])).tolist()

    return {"generate": generate, "score": score, "score_batch": score_batch, "hidden_states": hidden_states,
            "logits": logits}


def child_mix(stories: pathlib.Path) -> None:
    """4 threads (the main thread one of them) each run every op ROUNDS times in a rotated order, with
    cache_stats between ops and clear_cache once a round; prints {"ref": single-thread results, "got": per thread
    per op the results of each round, "stats": cache_stats seen} as JSON."""
    # progress takes the GIL inside the engine's lock on every forward pass, whichever thread calls
    forwards = []
    engine = open_engine(stories, cache_bytes=4 << 20, progress=forwards.append)
    calls = ops(engine)
    names = sorted(calls)
    ref = {name: calls[name]() for name in names}
    engine.clear_cache()
    got = [{name: [] for name in names} for _ in range(N_THREADS)]
    stats = [[] for _ in range(N_THREADS)]
    errors = []
    barrier = threading.Barrier(N_THREADS)

    def work(t: int) -> None:
        try:
            barrier.wait(timeout=60)
            for r in range(ROUNDS):
                order = names[t % len(names):] + names[:t % len(names)]
                for name in order:
                    got[t][name].append(calls[name]())
                    stats[t].append(engine.cache_stats())
                if (t + r) % 2 == 0:
                    engine.clear_cache()
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            errors.append(f"thread {t}: {type(e).__name__}: {e}")

    workers = [threading.Thread(target=work, args=(t,), daemon=True) for t in range(1, N_THREADS)]
    for w in workers:
        w.start()
    work(0)  # in the main thread: its calls poll for signals with the GIL, inside the engine's lock
    deadline = time.monotonic() + 60
    for w in workers:
        w.join(max(0.0, deadline - time.monotonic()))
    if any(w.is_alive() for w in workers):
        print("threads still running after 60 s: deadlock?", file=sys.stderr)
        faulthandler.dump_traceback(all_threads=True)
        os._exit(3)
    json.dump({"ref": ref, "got": got, "stats": stats, "errors": errors, "forwards": len(forwards)}, sys.stdout)


def child_sigint(stories: pathlib.Path, mode: str) -> None:
    """Runs long calls until SIGINT; prints "ready" once they run, then "interrupted <monotonic time> <busy>"
    when KeyboardInterrupt reaches the main thread (busy: whether the worker's call was in flight then).

    mode "main": the main thread generates alone. mode "waiting": a worker thread runs long generates (its progress
    callback sleeps, so each takes seconds) while the main thread calls cache_stats and generate, which mostly
    wait for the worker's call to finish: the interrupt must not wait for it."""
    worker_thread = None

    def slow_worker(_tokens):
        if threading.current_thread() is worker_thread:
            time.sleep(0.01)

    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when the parent ignores SIGINT
    engine = open_engine(stories, threads=1, progress=slow_worker)
    prompts = [[1, 403 + i] for i in range(8)]
    stop = threading.Event()
    busy = threading.Event()

    def worker():
        while not stop.is_set():
            busy.set()
            engine.generate(prompts, max_new_tokens=500, stop=[], stop_at_eos=False)  # ~5 s with the sleeps
            busy.clear()

    if mode == "waiting":
        worker_thread = threading.Thread(target=worker, daemon=True)
        worker_thread.start()
        while not busy.is_set():
            time.sleep(0.01)
    print("ready", flush=True)
    try:
        t_end = time.monotonic() + 60
        while time.monotonic() < t_end:
            if mode == "waiting":
                engine.cache_stats()
            engine.generate(prompts, max_new_tokens=500, stop=[], stop_at_eos=False)
        print("not interrupted", flush=True)
        os._exit(4)
    except KeyboardInterrupt:
        print(f"interrupted {time.monotonic()!r} {busy.is_set()}", flush=True)
    stop.set()
    if worker_thread is not None:
        worker_thread.join(60)
        if worker_thread.is_alive():
            print("worker still running", flush=True)
            os._exit(5)
    # the engine is still usable
    out = engine.generate([[1, 403]], max_new_tokens=3, stop=[])
    print(f"after {len(out[0].token_ids)}", flush=True)


# ----------------------------------------------------------------------------------------------- the tests


@pytest.fixture(scope="module")
def stories(models_dir):
    return models_dir / "stories260K"


def run_child(*args: str, timeout: float = WATCHDOG_S + 30) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"child {args} still running after {timeout} s (deadlock); stderr:\n{e.stderr}")


def lp_rel(tokens: int) -> float:
    return model_rel(STORIES260K, tokens=tokens, output="logprobs")


def same_logprobs(got, want, tokens: int, what: str) -> None:
    """Token ids equal; log-probs within the float32 bound (scale: the largest |log-prob| of the call)."""
    assert [g["ids"] for g in got] == [w["ids"] for w in want], what
    g = np.concatenate([x["lp"] for x in got])
    w = np.concatenate([x["lp"] for x in want])
    assert_close(g, w, lp_rel(tokens), err_msg=what)


def test_threads_mixing_every_call_match_one_thread(stories):
    proc = run_child("mix", str(stories))
    assert proc.returncode == 0, f"child failed (rc={proc.returncode}); stderr:\n{proc.stderr[-6000:]}"
    out = json.loads(proc.stdout)
    assert out["errors"] == []
    assert out["forwards"] > 0
    ref, got = out["ref"], out["got"]
    engine = open_engine(stories)
    longest = max(len(engine.encode(p)) for p in PROMPTS)
    tokens = longest + 24 + max(len(engine.encode(c)) for c in CONTINUATIONS)
    for t in range(N_THREADS):
        for name, runs in got[t].items():
            assert len(runs) == ROUNDS, (t, name)
            for r, res in enumerate(runs):
                what = f"thread {t} round {r} {name}"
                want = ref[name]
                if name == "generate":
                    same_logprobs(res, want, tokens, what)  # greedy ids identical
                    assert [x["text"] for x in res] == [x["text"] for x in want], what
                    assert [x["finish"] for x in res] == [x["finish"] for x in want], what
                elif name == "score":
                    same_logprobs(res, want, tokens, what)
                elif name == "score_batch":
                    same_logprobs([x for xs in res for x in xs], [x for xs in want for x in xs], tokens, what)
                elif name == "hidden_states":  # mean over up to `longest` tokens
                    assert_close(res, want, model_rel(STORIES260K, tokens=longest) + gamma(longest),
                                 err_msg=what)
                else:
                    assert_close(res, want, model_rel(STORIES260K, tokens=longest, output="logits"),
                                 err_msg=what)
    stats = [s for per_thread in out["stats"] for s in per_thread]
    assert len(stats) == N_THREADS * ROUNDS * len(ref)
    for s in stats:
        assert 0 <= s["cached_bytes"] <= s["capacity_bytes"] == 4 << 20
        assert s["hit_tokens"] >= 0 and s["computed_tokens"] >= 0 and s["block_tokens"] == 16


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or os.name != "posix", reason="needs POSIX signals")
@pytest.mark.parametrize("mode", ["main", "waiting"])
def test_ctrl_c_interrupts_the_main_thread_promptly(stories, mode):
    """SIGINT during a long generate in the main thread ("main"), or while the main thread's calls wait for a
    worker thread's seconds-long generate ("waiting"): KeyboardInterrupt within a second or two."""
    proc = subprocess.Popen([sys.executable, __file__, "sigint", str(stories), mode], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # the child's watchdog bounds this wait
        assert line.strip() == "ready", f"child said {line!r}; stderr:\n{proc.stderr.read()[-4000:]}"
        time.sleep(0.5)  # well inside the calls
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=WATCHDOG_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, f"rc={proc.returncode}; stdout:\n{out}\nstderr:\n{err[-4000:]}"
    lines = out.split("\n")
    word, when, busy = lines[0].split()
    assert word == "interrupted"
    # the worker's call takes >= 5 s: a main thread that waited for it to end would take that long
    assert float(when) - sent < 2.5, f"KeyboardInterrupt {float(when) - sent:.2f} s after SIGINT"
    if mode == "waiting":
        assert busy == "True"  # the worker's call was still in flight
    assert lines[1] == "after 3"


if __name__ == "__main__":
    faulthandler.dump_traceback_later(WATCHDOG_S, exit=True)
    if sys.argv[1] == "mix":
        child_mix(pathlib.Path(sys.argv[2]))
    elif sys.argv[1] == "sigint":
        child_sigint(pathlib.Path(sys.argv[2]), sys.argv[3])
    else:
        sys.exit(f"unknown mode {sys.argv[1]!r}")
