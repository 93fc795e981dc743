"""Float tolerances of the tests, derived from floating-point rounding instead of tuned to one machine.

Why: float32 GEMMs of different shapes (1, 8 or 32 prompts per forward pass, a cached prefix instead of a
computed one) and the kernels MKL / oneDNN / ATen pick per CPU (AVX2, AVX-512, AMX) sum in different orders, so
the same model gives results that differ in the last bits. A fixed absolute tolerance (1e-5) fails by chance on
large values (a hidden state of -10.2 differed by 1.14e-5 on an AVX-512 EPYC, a relative 1.1e-6).

The bound (Higham, Accuracy and Stability of Numerical Algorithms, 3.1): with unit roundoff u, a dot product
of length n computed in any order has

    |fl(a . b) - a . b| <= gamma_n * sum_i |a_i b_i|,   gamma_n = n u / (1 - n u).

u = 2**-24 for float32, 2**-53 for float64, 2**-8 for bfloat16. A chain of operations adds the relative errors
of its steps (to first order), so a network of L layers whose longest reduction is n has a relative error of
at most about L * gamma_n, measured against the magnitude of the values it produces (sum |a_i b_i| is of the
order of max |result|, not of each small result). Hence every comparison here is

    |actual - desired| <= rel * |desired| + rel * scale,   scale = max |desired| unless given,

a relative term plus an absolute term that scales with the values compared (never a fixed 1e-5).

For an engine output (`model_rel`):
  * per layer n = max(dim, hidden_dim, tokens) + 40: the projections reduce over dim, the FFN down-projection
    over hidden_dim, attention's softmax-weighted sum over the tokens so far (a RoPE angle pos * inv_freq in
    float32 is off by up to pos * u, also covered by tokens); the + 40 counts the element-wise steps on the
    path, in units of u (two RMSNorms at ~8 u each with rsqrt, RoPE ~7 u with cos/sin, softmax ~7 u with exp,
    SiLU-gate ~8 u with exp, two residual adds): vectorised exp/rsqrt/sin are 1-2 ulp and differ per ISA;
  * hidden states: n_layers * gamma_n;
  * logits: + gamma_(dim + 8) (final RMSNorm and the LM head, a reduction over dim);
  * log-probs: + gamma_(vocab + 8) (log-softmax sums vocab exponentials; exp, log, subtraction). A log-prob is
    a logit minus logsumexp, so its absolute error scales with the logits, not with the log-prob: compare
    log-probs with scale = max |logits| when the logits are at hand, else with the largest |log-prob| of the
    whole call.

The bound is worst case (every rounding at its largest, all in one direction); real differences grow like
sqrt(n) u and are 10-1000x smaller. It is used for the difference of two float32 results as is, not doubled.
It is still tight enough to catch a real bug: stories260K log-probs get rel = 9.8e-5, SmolLM2-135M 5.8e-3 (on a
log-prob of -2.3 whose call's largest |log-prob| is 5: 0.013 + 0.029), while a wrong KV block or position moves
log-probs by 0.1-10.

Other cases: cosines of pooled hidden states (`cosine_rel`) and of the selectors carry an absolute error (|cos| <= 1,
scale 1); bfloat16 (`bf16_rel`) counts one 2**-8 per rounding point, worst case again (about 0.3 for stories260K,
vacuous for deep models); float64 results of a few operations (accuracies, gains) get f64_rel(n) with n the
operations on both sides, a difference scaled by its operands; p-values and special functions against SciPy keep
relative 1e-12 .. 1e-9 (continued fractions; a normal quantile good to ~1e-9). Comparisons exact by design (token
ids, greedy outputs, the cosine selector's bit-identical blocking) stay exact; tolerances that come from the data
(values rounded to 4 or 6 decimals in a file, Monte Carlo intervals) say so where they are used.

CROSSICL_TOL_REPORT=path appends, for every assert_close, the largest |diff| / allowed: the margin left on this
machine (1 = at the bound).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import numpy as np
import pytest

U = 2.0 ** -24  # float32 unit roundoff
U_F64 = 2.0 ** -53
U_BF16 = 2.0 ** -8


def gamma(n: int, u: float = U) -> float:
    """Higham's gamma_n = n u / (1 - n u): the relative error bound of a length-n float sum or dot product."""
    n = max(int(n), 1)
    if n * u >= 1:
        raise ValueError(f"gamma_{n} undefined for u={u}")
    return n * u / (1 - n * u)


def f32_rel(n: int, depth: int = 1) -> float:
    """Relative bound of `depth` chained float32 reductions of length <= n: depth * gamma_n."""
    return depth * gamma(n, U)


def f64_rel(n: int, depth: int = 1) -> float:
    """As f32_rel for float64 (u = 2**-53)."""
    return depth * gamma(n, U_F64)


@dataclass(frozen=True)
class Dims:
    """The sizes of a model that set its rounding (the fields of crossicl.ModelConfig they share)."""
    dim: int
    hidden_dim: int
    n_layers: int
    vocab_size: int


# stories260K.bin's llama2.c header (64, 172, 5, 8, 4, 512, 512), also in golden.json["config"] and checked by
# tests/python/test_engine.py::test_config_and_tokenizer.
STORIES260K = Dims(dim=64, hidden_dim=172, n_layers=5, vocab_size=512)
# SmolLM2-135M (HuggingFaceTB config.json: hidden_size 576, intermediate_size 1536, 30 layers, vocab 49152).
SMOLLM2_135M = Dims(dim=576, hidden_dim=1536, n_layers=30, vocab_size=49152)

# bfloat16 activations are rounded at about 15 points per layer (RMSNorm out, fused qkv, RoPE, attention out,
# o-proj, residual, RMSNorm, gate/up, SiLU*up, down, residual, and the bf16 weights of the 4 products); the
# head adds 3 (final norm, LM-head weights, logits). GEMMs accumulate in float32, negligible next to 2**-8.
BF16_ROUNDINGS_PER_LAYER = 15
BF16_HEAD_ROUNDINGS = 3


# Element-wise float32 steps per layer, per final norm and per log-softmax, in units of u (see above).
LAYER_ELEMENTWISE = 40
NORM_ELEMENTWISE = 8
SOFTMAX_ELEMENTWISE = 8


def model_rel(config, *, tokens: int = 0, output: str = "hidden") -> float:
    """Relative float32 bound of an engine output of a model with `config` (a crossicl.ModelConfig or Dims).

    tokens: the longest sequence (prompt + generated) attended over; output: "hidden", "logits" or "logprobs".
    """
    if output not in ("hidden", "logits", "logprobs"):
        raise ValueError(f"output must be hidden, logits or logprobs, not {output!r}")
    n = max(config.dim, config.hidden_dim, tokens) + LAYER_ELEMENTWISE
    rel = f32_rel(n, config.n_layers)
    if output in ("logits", "logprobs"):
        rel += gamma(config.dim + NORM_ELEMENTWISE)
    if output == "logprobs":
        rel += gamma(config.vocab_size + SOFTMAX_ELEMENTWISE)
    return rel


def cosine_rel(config, *, tokens: int = 0) -> float:
    """Bound on |cos(a, b)| errors of pooled hidden states, an absolute error (compare with scale=1).

    Each of the two vectors carries the hidden-state bound plus its mean over <= tokens rows (gamma_tokens) and a
    rounding to float32; a relative perturbation e of one vector turns it by at most e radians, moving the
    cosine by at most e; the cosine's own dot product and norms add gamma_dim.
    """
    one = model_rel(config, tokens=tokens) + gamma(tokens) + U
    return 2 * one + gamma(config.dim) + 4 * U


def bf16_rel(config) -> float:
    """Relative bound of bfloat16 logits against exact arithmetic: one u_bf16 per rounding point."""
    return (config.n_layers * BF16_ROUNDINGS_PER_LAYER + BF16_HEAD_ROUNDINGS) * U_BF16


def _scale(desired, scale) -> float:
    if scale is not None:
        return float(scale)
    d = np.abs(np.asarray(desired, dtype=np.float64))
    return float(d.max()) if d.size else 0.0


def assert_close(actual, desired, rel: float, *, scale=None, err_msg: str = "") -> None:
    """np.testing.assert_allclose with rtol=rel and atol=rel * scale (scale: max |desired| unless given)."""
    s = _scale(desired, scale)
    a, d = np.asarray(actual, dtype=np.float64), np.asarray(desired, dtype=np.float64)
    if os.environ.get("CROSSICL_TOL_REPORT") and a.shape == d.shape and a.size:
        _report(np.abs(a - d) / (rel * np.abs(d) + rel * s + 1e-300), err_msg)
    np.testing.assert_allclose(a, d, rtol=rel, atol=rel * s, err_msg=f"{err_msg} (rel={rel:.3g}, scale={s:.3g})")


def _report(ratio, what: str) -> None:
    """CROSSICL_TOL_REPORT=path: appends the largest |diff| / allowed of each comparison (the margin left)."""
    f = sys._getframe(1)
    while f.f_back is not None and not os.path.basename(f.f_code.co_filename).startswith("test_"):
        f = f.f_back
    with open(os.environ["CROSSICL_TOL_REPORT"], "a") as out:
        out.write(f"{float(np.nanmax(ratio)):.3e} {os.path.basename(f.f_code.co_filename)}:{f.f_lineno} {what!r}\n")


def assert_close_f32(actual, desired, n: int, depth: int = 1, *, scale=None, err_msg: str = "") -> None:
    """assert_close with rel = f32_rel(n, depth)."""
    assert_close(actual, desired, f32_rel(n, depth), scale=scale, err_msg=err_msg)


def approx(desired, rel: float, *, scale=None):
    """pytest.approx(desired, rel=rel, abs=rel * scale) (scale: max |desired| unless given)."""
    s = _scale(desired, scale)
    return pytest.approx(desired, rel=rel, abs=rel * s)


def approx_f32(desired, n: int, depth: int = 1, *, scale=None):
    return approx(desired, f32_rel(n, depth), scale=scale)


def approx_f64(desired, n: int, depth: int = 1, *, scale=None):
    return approx(desired, f64_rel(n, depth), scale=scale)


SCORE_KEYS = ("label_logprobs", "label_first_logprobs")
"""Record fields ({label: log-prob}) that two runs computing a unit in different batch shapes may differ in."""


def assert_same_record(a: dict, b: dict, rel: float, scale: float) -> None:
    """Two records of one unit: every field equal but the label log-probs (:data:`SCORE_KEYS`), which may differ
    within rel * (|b| + scale) (the float32 bound of the batch shapes) plus 1e-6 (the records' 6-decimal
    rounding: one quantum between two roundings)."""
    assert {k: v for k, v in a.items() if k not in SCORE_KEYS} == {k: v for k, v in b.items() if k not in SCORE_KEYS}
    for key in SCORE_KEYS:
        la, lb = a.get(key, {}), b.get(key, {})
        assert la.keys() == lb.keys(), key
        assert all(abs(la[x] - lb[x]) <= rel * (abs(lb[x]) + scale) + 1e-6 for x in la), (key, la, lb)
