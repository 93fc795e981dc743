"""crossicl.Engine on stories260K (llama2.c checkpoint + tok512.model): golden run, Python surface, errors."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

import crossicl
from tolerance import STORIES260K, approx, assert_close, bf16_rel, gamma, model_rel

if not getattr(crossicl, "has_engine", False):
    pytest.skip("crossicl built without the engine", allow_module_level=True)


@pytest.fixture(scope="module")
def stories(models_dir):
    return models_dir / "stories260K"


@pytest.fixture(scope="module")
def golden(stories):
    return json.loads((stories / "golden.json").read_text())


@pytest.fixture(scope="module")
def engine(stories):
    return crossicl.Engine(str(stories / "stories260K.bin"), tokenizer=str(stories / "tok512.model"))


@pytest.fixture(scope="module")
def bare(stories):
    return crossicl.Engine(stories / "stories260K.bin")  # os.PathLike, no tokenizer


def test_config_and_tokenizer(engine, bare):
    c = engine.config
    assert (c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads) == (64, 172, 5, 8, 4)
    assert (c.vocab_size, c.max_seq_len, c.head_dim) == (512, 512, 8)
    assert (c.dim, c.hidden_dim, c.n_layers, c.vocab_size) == (STORIES260K.dim, STORIES260K.hidden_dim,
                                                               STORIES260K.n_layers, STORIES260K.vocab_size)
    assert c.tie_word_embeddings and c.rope_scaling.type == ""
    assert engine.n_ctx == 512 and engine.dtype == "Float" and engine.device == "cpu"
    assert isinstance(engine.tokenizer, crossicl.Tokenizer)
    assert engine.tokenizer.vocab_size == 512 and engine.tokenizer.bos_id == 1
    assert bare.tokenizer is None


def test_golden_logits_and_greedy_ids(bare, golden):
    for case in golden["cases"]:
        ids = case["prompt_ids"]
        logits = bare.logits(ids)
        assert logits.shape == (len(ids), 512) and logits.dtype == np.float32
        # llama2.c's run.c sums in its own order: both within the float32 bound of the logits
        assert_close(logits[-1], case["last_logits"], model_rel(bare.config, tokens=len(ids), output="logits"))
        out = bare.generate([ids], max_new_tokens=60, stop=[], stop_at_eos=False)
        assert out[0].token_ids == case["greedy_ids"]
        assert out[0].text == ""  # no tokenizer


def test_golden_text(engine, golden):
    cases = [c for c in golden["cases"] if c["prompt"]]
    for case in cases:
        assert engine.encode(case["prompt"]) == case["prompt_ids"]
    outs = engine.generate([c["prompt"] for c in cases], max_new_tokens=60, stop=[])
    for case, out in zip(cases, outs):
        assert out.token_ids == case["greedy_ids"]
        assert out.text.strip() == case["greedy_text"].strip()
        assert out.finish_reason == "length" and out.truncated == 0


def test_stop_strings_cut_text(engine, golden):
    case = golden["cases"][1]  # "Once upon a time" -> ", there was a little girl named Lily. She ..."
    out = engine.generate(case["prompt"], max_new_tokens=60, stop=["."])[0]
    assert out.finish_reason == "stop"
    assert out.text == ", there was a little girl named Lily"
    assert out.token_ids == case["greedy_ids"][: len(out.token_ids)]
    assert len(out.token_ids) < 60
    many = engine.generate([case["prompt"]], max_new_tokens=60, stop=["girl", "Lily"])[0]
    assert many.text == ", there was a little "


def test_score_reuses_prompt_and_matches_logits(engine):
    prompt = "Once upon a time"
    res = engine.score(prompt, [", there was", " Lily", " in a big park"])
    assert len(res) == 3
    for cont, r in zip([", there was", " Lily", " in a big park"], res):
        joint = engine.encode(prompt + cont)
        p = engine.encode(prompt)
        assert joint[: len(p)] == p and r.token_ids == joint[len(p):]
        logits = engine.logits(joint).astype(np.float64)
        rel = model_rel(engine.config, tokens=len(joint), output="logprobs")
        scale = float(np.abs(logits[len(p) - 1:]).max())  # log-prob errors scale with the logits
        lp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) - \
            logits.max(-1, keepdims=True)
        want = [lp[len(p) - 1 + i, t] for i, t in enumerate(r.token_ids)]
        assert_close(r.logprobs, want, rel, scale=scale)
        assert r.sum == approx(sum(want), rel, scale=len(want) * scale)
        assert r.mean == approx(sum(want) / len(want), rel, scale=scale)
        assert r.first == approx(np.exp(want[0]), rel * (abs(want[0]) + scale))  # d exp(x) = exp(x) dx
        assert r.first_logprob == approx(want[0], rel, scale=scale)
    assert res[0].sum > res[2].sum  # the model's own continuation is far likelier


def test_score_candidates_that_split_the_prompt_at_different_tokens(engine):
    # A continuation that merges with the prompt's last token(s) is scored from where its joint tokenization leaves
    # the prompt: here "me" re-tokenizes "ti" (split 4 of 6 prompt tokens), "ger" only the last token (5), " x"
    # nothing (6); each candidate's log-probs are those of the joint text's own logits from its split on.
    items = {"Once upon a ti": ["me", " x", "ger"], "Lily went to the pa": ["rk", " and", "n"]}
    results = engine.score_batch(list(items), list(items.values()))
    splits = []
    for (prompt, conts), res in zip(items.items(), results):
        p = engine.encode(prompt)
        for cont, r in zip(conts, res):
            joint = engine.encode(prompt + cont)
            split = next(i for i, (a, b) in enumerate(zip(joint, p + [-1])) if a != b)
            splits.append(len(p) - split)
            assert r.token_ids == joint[split:]
            logits = engine.logits(joint).astype(np.float64)
            lp = logits - logits.max(-1, keepdims=True)
            lp -= np.log(np.exp(lp).sum(-1, keepdims=True))
            rel = model_rel(engine.config, tokens=len(joint), output="logprobs")
            scale = float(np.abs(logits[split - 1:]).max())
            assert_close(r.logprobs, [lp[split - 1 + i, t] for i, t in enumerate(r.token_ids)], rel, scale=scale)
            # is_greedy from the score's own rows against this forward's argmax, where no row is a near-tie that
            # the two batch shapes' rounding could flip
            rows = logits[split - 1:split - 1 + len(r.token_ids)]
            top2 = np.sort(rows, axis=1)[:, -2:]
            if (top2[:, 1] - top2[:, 0] > 2 * rel * scale).all():
                assert r.greedy == all(int(np.argmax(row)) == t for row, t in zip(rows, r.token_ids))
    assert sorted(set(splits)) == [0, 1, 2]  # the three cases: at the prompt's end, one and two tokens before


def test_hidden_states_pooling(engine):
    prompts = ["Once upon a time", "Lily and Tom went to the park"]
    none = engine.hidden_states(prompts, layers=[0, 2, -1], pooling="none")
    assert [h.shape for h in none] == [(3, 5, 64), (3, 12, 64)]
    mean = engine.hidden_states(prompts, layers=[0, 2, -1], pooling="mean")
    assert mean.shape == (2, 3, 64)
    rel = model_rel(engine.config, tokens=12)
    assert_close(mean[1], none[1].mean(1), rel + gamma(12))  # + the mean over 12 tokens
    last = engine.hidden_states(prompts, layers=[0, 2, 5], pooling="last")
    assert_close(last[0], none[0][:, -1], rel)
    span = engine.hidden_states(prompts, layers=[2], begin=1, end=3)
    assert_close(span[0, 0], none[0][1, 1:3].mean(0), rel + gamma(2))
    # layer 0 is the embedding row of each token
    emb0 = engine.hidden_states([[1, 7]], layers=[0], pooling="none")[0][0]
    assert not np.allclose(emb0[0], emb0[1])


def test_truncation(engine):
    long = "Once upon a time " * 200
    with pytest.raises(ValueError, match="truncation"):
        engine.generate([long], max_new_tokens=4)
    n = len(engine.encode(long))
    left = engine.generate([long], max_new_tokens=4, truncation="left", stop=[])[0]
    right = engine.generate([long], max_new_tokens=4, truncation="right", stop=[])[0]
    assert left.truncated == right.truncated == n - (512 - 4)
    assert len(left.token_ids) == len(right.token_ids) == 4
    short = engine.generate(["Once upon a time"], max_new_tokens=2, truncation="left")[0]
    assert short.truncated == 0


def test_bad_input_raises_value_error(engine, bare, stories):
    with pytest.raises(ValueError, match="empty"):
        engine.generate([""])
    with pytest.raises(ValueError, match="UTF-8"):
        engine.generate(["bad \ud800 text"])
    with pytest.raises(ValueError, match="UTF-8"):
        engine.generate([b"\xff\xfe"])
    with pytest.raises(ValueError, match="700"):
        engine.logits([1, 700])
    with pytest.raises(ValueError, match="-3"):
        engine.generate([[1, -3]])
    with pytest.raises(ValueError, match="layer 9"):
        engine.hidden_states(["Once"], layers=[9])
    with pytest.raises(ValueError, match="pooling"):
        engine.hidden_states(["Once"], pooling="max")
    with pytest.raises(ValueError, match="tokenizer"):
        bare.generate(["Once upon a time"])
    with pytest.raises(ValueError, match="continuation 1 is empty"):
        engine.score("Once", [" upon", ""])
    with pytest.raises(ValueError, match="cuda"):
        crossicl.Engine(str(stories / "stories260K.bin"), device="cuda")
    with pytest.raises(ValueError, match="float64"):
        crossicl.Engine(str(stories / "stories260K.bin"), dtype="float64")
    with pytest.raises(crossicl.LoadError, match="nowhere.bin"):
        crossicl.Engine(str(stories / "nowhere.bin"))
    with pytest.raises(TypeError):
        engine.generate(["Once"], 5)  # options are keyword-only


def test_bfloat16_engine(stories, golden):
    e = crossicl.Engine(str(stories / "stories260K.bin"), dtype="bfloat16", threads=1)
    case = golden["cases"][1]
    got = e.logits(case["prompt_ids"])[-1]
    want = np.array(case["last_logits"], dtype=np.float32)
    assert_close(got, want, bf16_rel(e.config))  # one 2**-8 per bfloat16 rounding point
    assert got.argmax() == want.argmax()


def test_ctrl_c_raises_keyboard_interrupt(bare):
    if not hasattr(signal, "setitimer"):
        pytest.skip("no setitimer")
    prompts = [[1, 403 + i] for i in range(16)]
    signal.setitimer(signal.ITIMER_REAL, 0.05)
    def interrupt(*_):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.05)
    try:
        with pytest.raises(KeyboardInterrupt):
            for _ in range(50):  # far longer than the timer
                bare.generate(prompts, max_new_tokens=500, stop=[], stop_at_eos=False)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    # the engine is still usable afterwards
    assert len(bare.generate([[1, 403]], max_new_tokens=3, stop=[])[0].token_ids) == 3


def test_calls_from_threads_and_numpy_ids(bare, golden):
    import threading

    case = golden["cases"][2]
    want = case["greedy_ids"][:20]
    results = [None] * 4

    def work(i):
        results[i] = bare.generate([np.array(case["prompt_ids"])], max_new_tokens=20, stop=[])[0].token_ids

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [want] * 4
    np.testing.assert_array_equal(bare.logits(np.array(case["prompt_ids"], dtype=np.int32)).argmax(-1)[-1],
                                  want[0])


def test_engine_options_are_parsed_once_and_list_the_valid_names(engine, stories):
    # truncation, pooling and dtype are the names of the C++ enums; a bad one is a ValueError naming them all
    valid = r"truncation must be 'none', 'left' or 'right'"
    with pytest.raises(crossicl.InvalidArgument, match=valid + r" \(got 'middle'\)"):
        engine.generate(["Once"], truncation="middle")
    with pytest.raises(crossicl.InvalidArgument, match=valid):
        engine.score("Once", [" upon"], truncation="Left")
    with pytest.raises(crossicl.InvalidArgument, match=valid):
        engine.hidden_states(["Once"], truncation="")
    with pytest.raises(crossicl.InvalidArgument, match=r"pooling must be 'mean', 'last' or 'none' \(got 'max'\)"):
        engine.hidden_states(["Once"], pooling="max")
    with pytest.raises(crossicl.InvalidArgument, match=r"float64.*float32, bfloat16 or float16"):
        crossicl.Engine(str(stories / "stories260K.bin"), dtype="float64")
    # every accepted name works; "bf16" is an alias of "bfloat16"
    for t in ("none", "left", "right"):
        assert engine.score("Once upon", [" a time"], truncation=t)[0].truncated == 0
    assert crossicl.Engine(str(stories / "stories260K.bin"), dtype="bf16").dtype == "BFloat16"


@pytest.mark.parametrize("max_new_tokens", [10**12, 2**62, 2**63 - 1])
def test_max_new_tokens_of_any_size_stops_at_the_window(engine, bare, max_new_tokens):
    # they sized the KV arena unclamped: 10^12 aborted, 2^62 wrapped its size, 2^63 - 1 overflowed prompt + it
    out = bare.generate([[1, 403], [1, 261, 378]], max_new_tokens=max_new_tokens, stop=[], stop_at_eos=False)
    assert [r.finish_reason for r in out] == ["window", "window"]
    assert [len(r.token_ids) for r in out] == [512 - 2 + 1, 512 - 3 + 1]
    assert engine.generate(["Once upon a time"], max_new_tokens=max_new_tokens, stop=["."])[0].finish_reason == "stop"
    # truncation keeps room for max_new_tokens: there is none left for the prompt
    with pytest.raises(ValueError, match=rf"\(max_new_tokens={max_new_tokens}, n_ctx=512\)"):
        engine.generate(["Once upon a time"], max_new_tokens=max_new_tokens, truncation="left")


ARENA_CHILD = """
import resource, sys
import crossicl
e = crossicl.Engine(sys.argv[1], threads=1, cache_bytes=0)
e.generate([[1, 403]], max_new_tokens=2, stop=[])  # torch's allocator and pools are set up
vm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmSize:")) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + (1 << 30), resource.RLIM_INFINITY))
for m in (10**7, 10**12, 2**62, 2**63 - 1):
    out = e.generate([[1, 403]] * 4, max_new_tokens=m, stop=[], stop_at_eos=False)
    assert [r.finish_reason for r in out] == ["window"] * 4, m
print("ok")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status, sets RLIMIT_AS")
def test_kv_arena_stays_within_n_ctx_per_prompt(stories):
    """Under an address-space limit of 1 GiB above what the process maps: 4 prompts with max_new_tokens=10^7 asked
    for 4 x 12.8 GB of KV before the clamp; now each reserves at most n_ctx = 512 positions (0.6 MiB)."""
    proc = subprocess.run([sys.executable, "-c", ARENA_CHILD, str(stories / "stories260K.bin")], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-4000:]


def test_threads_is_capped_by_the_cpus_available(stories):
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    before = torch.get_num_threads()
    try:
        e = crossicl.Engine(str(stories / "stories260K.bin"), threads=10**6)
        assert e.threads == cpus and torch.get_num_threads() == cpus
        assert crossicl.Engine(str(stories / "stories260K.bin")).threads == 0
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match=r"n_ctx must be in \[0, 2\^31-1\] \(n_ctx=2147483648\)"):
        crossicl.Engine(str(stories / "stories260K.bin"), n_ctx=2**31)
