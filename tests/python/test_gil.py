"""Long C++ calls release the GIL: while one runs in a worker thread, the main thread keeps running Python.

Each check times the call in the worker and watches the main thread's progress meanwhile: with the GIL
released the main thread's longest stall is a small fraction of the call; with the GIL held it stalls for the
whole call. The calls are sized to take well over the interpreter's switch interval (5 ms), so a held GIL fails."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import crossicl


def longest_stall_during(call) -> tuple[float, float]:
    """(seconds the call took in a worker thread, the main thread's longest pause between two turns of a loop
    that runs from just before the worker starts until the call has returned)."""
    done = threading.Event()
    took = [0.0]

    def worker():
        t0 = time.perf_counter()
        call()
        took[0] = time.perf_counter() - t0
        done.set()

    t = threading.Thread(target=worker)
    last = time.perf_counter()
    stall = 0.0
    t.start()
    while not done.is_set():
        now = time.perf_counter()
        stall = max(stall, now - last)
        last = now
    stall = max(stall, time.perf_counter() - last)
    t.join()
    return took[0], stall


def assert_releases_gil(call, min_seconds: float = 0.3):
    took, stall = longest_stall_during(call)
    assert took >= min_seconds, f"the call took {took:.3f} s: too short to tell (make it larger)"
    # Held, the main thread would stall for about `took`; released, only for scheduling hiccups.
    assert stall < 0.5 * took, f"main thread stalled {stall:.3f} s during a {took:.3f} s call: GIL held"


def sized(make_call, min_seconds: float = 0.6):
    """Grows the problem until one call takes min_seconds (machines differ by 10x), then returns that call. Twice
    assert_releases_gil's minimum, so that a faster repeat of the call still clears it."""
    scale = 1
    while True:
        call = make_call(scale)
        t0 = time.perf_counter()
        call()
        if time.perf_counter() - t0 >= min_seconds or scale >= 1 << 12:
            return call
        scale *= 2


def test_the_check_catches_a_held_gil():
    # A worker that keeps the GIL for its whole call, as a C++ call without a release would: with a switch
    # interval of 2 s the interpreter never hands the GIL to the waiting main thread during a pure-Python loop.
    import sys
    old = sys.getswitchinterval()
    sys.setswitchinterval(2.0)
    try:
        took, stall = longest_stall_during(lambda: sum(range(5_000_000)))
    finally:
        sys.setswitchinterval(old)
    assert stall >= 0.5 * took > 0


def test_cosine_select_releases_the_gil():
    rng = np.random.default_rng(0)

    def make(scale):
        pool = rng.standard_normal((2000 * scale, 64)).astype(np.float32)
        q = rng.standard_normal((200, 64)).astype(np.float32)
        sel = crossicl.CosineTopK(pool, num_threads=1)
        return lambda: sel.select(q, 4)

    assert_releases_gil(sized(make))


def test_bm25_select_releases_the_gil():
    words = np.array([f"w{i}" for i in range(300)])
    rng = np.random.default_rng(1)
    docs = [" ".join(row) for row in rng.choice(words, (3000, 30))]
    queries = [" ".join(row) for row in rng.choice(words, (512, 12))]
    sel = crossicl.BM25TopK(docs, num_threads=1)

    def make(scale):
        batch = queries * scale
        return lambda: sel.select(batch, 4)

    assert_releases_gil(sized(make))


@pytest.mark.model
@pytest.mark.skipif(not getattr(crossicl, "has_engine", False), reason="crossicl built without the engine")
def test_engine_calls_release_the_gil(models_dir):
    stories = models_dir / "stories260K"
    e = crossicl.Engine(str(stories / "stories260K.bin"), tokenizer=str(stories / "tok512.model"), threads=1,
                        cache_bytes=0)
    prompt = "Once upon a time, there was a little girl named Lily."

    def make(scale):
        prompts = [prompt] * (4 * scale)
        return lambda: e.generate(prompts, max_new_tokens=32, stop=[])

    assert_releases_gil(sized(make))

    def make_scores(scale):
        prompts = [prompt] * (16 * scale)
        return lambda: e.score_batch(prompts, [" happy", " sad", " big red ball"])

    assert_releases_gil(sized(make_scores))

    def make_encode(scale):  # takes no engine lock, but a long text takes long
        text = " ".join([prompt] * (64 * scale))
        return lambda: e.encode(text)

    assert_releases_gil(sized(make_encode))
