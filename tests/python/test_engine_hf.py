"""crossicl.Engine against HF transformers' LlamaForCausalLM on random tiny checkpoints saved as HF dirs."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("safetensors")

import crossicl  # noqa: E402

if not getattr(crossicl, "has_engine", False):
    pytest.skip("crossicl built without the engine", allow_module_level=True)

from hf_fixtures import save_random_llama  # noqa: E402
from tolerance import approx, assert_close, bf16_rel, gamma, model_rel  # noqa: E402

LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 16}

CASES = {
    "mha_untied": dict(seed=1),
    "gqa_tied": dict(seed=2, num_key_value_heads=2, tie_word_embeddings=True, rope_theta=500000.0),
    "llama3_scaling": dict(seed=3, num_key_value_heads=1, rope_theta=500000.0, rope_scaling=LLAMA3),
    "odd_hidden_sharded": dict(seed=4, hidden_size=72, intermediate_size=100, num_attention_heads=9,
                               num_key_value_heads=3, max_shard_size="40KB"),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request, tmp_path_factory):
    kw = dict(CASES[request.param])
    path = tmp_path_factory.mktemp(request.param)
    model = save_random_llama(path, **kw)
    engine = crossicl.Engine(str(path))
    return request.param, path, model, engine


def _ids(seed, n, vocab=128):
    return np.random.default_rng(seed).integers(3, vocab, size=n).tolist()


def test_checkpoint_files(case):
    name, path, model, engine = case
    if name == "odd_hidden_sharded":
        assert (path / "model.safetensors.index.json").exists()
        assert len(list(path.glob("model-*.safetensors"))) > 1
    cfg = model.config
    assert engine.config.dim == cfg.hidden_size
    assert engine.config.n_kv_heads == cfg.num_key_value_heads
    assert engine.config.tie_word_embeddings == bool(cfg.tie_word_embeddings)
    if name == "llama3_scaling":
        assert engine.config.rope_scaling.type == "llama3"
        assert engine.config.rope_theta == 500000.0


def test_logits_match_hf(case):
    _, _, model, engine = case
    ids = _ids(0, 64)
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0].float().numpy()
    got = engine.logits(ids)
    assert got.shape == ref.shape == (64, 128)
    rel = model_rel(engine.config, tokens=64, output="logits")  # HF sums in its own order
    assert_close(got, ref, rel)
    # chunks of 20 tokens: causal SDPA, then SDPA with a mask over cached positions, then matmul attention
    chunked = crossicl.Engine(str(case[1]), max_batch_tokens=20).logits(ids)
    assert_close(chunked, ref, rel)


def test_greedy_matches_hf_generate(case):
    _, _, model, engine = case
    prompt = _ids(1, 8)
    with torch.no_grad():
        ref = model.generate(torch.tensor([prompt]), max_new_tokens=32, do_sample=False, min_new_tokens=32)
    ref_new = ref[0, len(prompt):].tolist()
    out = engine.generate([prompt], max_new_tokens=32, stop=[], stop_at_eos=False)
    assert out[0].token_ids == ref_new
    assert out[0].finish_reason == "length"
    assert len(out[0].logprobs) == 32 and all(lp <= 0 for lp in out[0].logprobs)


def test_batched_equals_one_by_one(case):
    _, _, _, engine = case
    prompts = [_ids(2, 5), _ids(3, 13), _ids(4, 9)]
    batched = engine.generate(prompts, max_new_tokens=12, stop=[], stop_at_eos=False)
    alone = [engine.generate([p], max_new_tokens=12, stop=[], stop_at_eos=False)[0] for p in prompts]
    assert [b.token_ids for b in batched] == [a.token_ids for a in alone]
    # log-prob errors scale with the logits: the largest |log-prob| of the call as the absolute term's scale
    assert_close(np.concatenate([b.logprobs for b in batched]), np.concatenate([a.logprobs for a in alone]),
                 model_rel(engine.config, tokens=13 + 12, output="logprobs"))


def test_hidden_states_match_hf(case):
    _, _, model, engine = case
    ids = _ids(5, 20)
    with torch.no_grad():
        ref = model(torch.tensor([ids]), output_hidden_states=True).hidden_states
    n_layers = engine.config.n_layers
    assert len(ref) == n_layers + 1
    got = engine.hidden_states([ids], layers=list(range(n_layers + 1)), pooling="none")
    assert len(got) == 1 and got[0].shape == (n_layers + 1, 20, engine.config.dim)
    for layer in range(n_layers + 1):  # layer l is l layers deep; the output norm adds a reduction over dim
        rel = model_rel(engine.config, tokens=20) + (gamma(engine.config.dim) if layer == n_layers else 0)
        assert_close(got[0][layer], ref[layer][0].numpy(), rel, err_msg=f"layer {layer}")
    mean = engine.hidden_states([ids], layers=[0, -1], pooling="mean", begin=2, end=10)
    rel = model_rel(engine.config, tokens=20, output="logits")  # "logits" adds gamma_dim for the output norm
    assert_close(mean[0, 1], ref[-1][0, 2:10].mean(0).numpy(), rel + gamma(8))
    last = engine.hidden_states([ids, ids[:7]], layers=[1], pooling="last")
    assert last.shape == (2, 1, engine.config.dim)
    assert_close(last[0, 0], ref[1][0, -1].numpy(), model_rel(engine.config, tokens=20))


def test_score_matches_hf(case):
    _, _, model, engine = case
    prompt, conts = _ids(6, 10), [_ids(7, 3), _ids(8, 1), _ids(9, 5)]
    res = engine.score(prompt, conts)
    for c, r in zip(conts, res):
        with torch.no_grad():
            logits = model(torch.tensor([prompt + c])).logits[0].double()
        lp = torch.log_softmax(logits, -1)
        want = [lp[len(prompt) - 1 + i, t].item() for i, t in enumerate(c)]
        assert r.token_ids == c
        rel = model_rel(engine.config, tokens=len(prompt) + len(c), output="logprobs")
        scale = logits[len(prompt) - 1:].abs().max().item()  # log-prob errors scale with the logits
        assert_close(r.logprobs, want, rel, scale=scale)
        assert r.sum == approx(sum(want), rel, scale=len(c) * scale)
        assert r.mean == approx(sum(want) / len(c), rel, scale=scale)
        assert r.first == approx(np.exp(want[0]), rel * (abs(want[0]) + scale))  # d exp(x) = exp(x) dx


@pytest.mark.parametrize("file_dtype", ["bfloat16", "float16", "float32"])
def test_file_dtypes(tmp_path, file_dtype):
    dtype = getattr(torch, file_dtype)
    saved = save_random_llama(tmp_path, seed=11, dtype=dtype, num_key_value_heads=2)
    ids = _ids(10, 48)
    from transformers import LlamaForCausalLM

    ref32 = LlamaForCausalLM.from_pretrained(str(tmp_path), dtype=torch.float32).eval()
    with torch.no_grad():
        want = ref32(torch.tensor([ids])).logits[0].numpy()
    # float32 compute on a bf16 file: exact up to float32 rounding
    e32 = crossicl.Engine(str(tmp_path), dtype="float32")
    got = e32.logits(ids)
    assert_close(got, want, model_rel(e32.config, tokens=48, output="logits"))
    # bfloat16 compute: close to HF's bfloat16 model
    e16 = crossicl.Engine(str(tmp_path), dtype="bfloat16")
    assert e16.dtype == "BFloat16"
    with torch.no_grad():
        want16 = saved.to(torch.bfloat16)(torch.tensor([ids])).logits[0].float().numpy()
    got16 = e16.logits(ids)
    # both round to bfloat16, at different points: each within bf16_rel of the exact logits
    assert_close(got16, want16, 2 * bf16_rel(e16.config))
    assert (got16.argmax(-1) == want16.argmax(-1)).mean() > 0.8
