"""Random tiny HF LLaMA checkpoints for engine tests and benchmarks (needs torch + transformers).

``save_random_llama(dir, **config)`` initialises a LlamaForCausalLM with weights large enough that logits are
well separated (HF's default init makes them nearly uniform, so greedy ties would be decided by rounding),
saves it as an HF directory with safetensors (sharded when ``max_shard_size`` is given) and returns the model.
"""
from __future__ import annotations

import pathlib

import torch

TINY = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=4, vocab_size=128, max_position_embeddings=128, rms_norm_eps=1e-5)


def llama_config(**overrides):
    """LlamaConfig from TINY + overrides; rope_theta / rope_scaling are mapped to this transformers' fields."""
    import transformers
    from transformers import LlamaConfig

    kw = dict(TINY)
    kw.update(overrides)
    theta = kw.pop("rope_theta", 10000.0)
    scaling = kw.pop("rope_scaling", None)
    if int(transformers.__version__.split(".")[0]) >= 5:
        params = {"rope_type": "default", "rope_theta": theta}
        if scaling:
            params.update(scaling)
        kw["rope_parameters"] = params
    else:
        kw["rope_theta"] = theta
        if scaling:
            kw["rope_scaling"] = scaling
    return LlamaConfig(**kw)


def random_llama(seed: int = 0, **overrides):
    """An eval-mode float32 LlamaForCausalLM with N(0, 0.2) weights and norms near 1."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(llama_config(**overrides)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model


def save_random_llama(path, *, seed: int = 0, dtype: torch.dtype = torch.float32, max_shard_size=None,
                      **overrides):
    """Saves random_llama(seed, **overrides) as an HF directory (safetensors) in `dtype`; returns the model."""
    path = pathlib.Path(path)
    model = random_llama(seed, **overrides)
    to_save = model.to(dtype) if dtype != torch.float32 else model
    kwargs = {}
    if max_shard_size is not None:
        kwargs["max_shard_size"] = max_shard_size
    to_save.save_pretrained(str(path), **kwargs)
    return to_save
