// Numerical building blocks of the LLaMA forward pass, following HF transformers' LlamaModel operation by
// operation (so float32 results agree to rounding): RMSNorm in float32, RoPE with rotate_half.
#pragma once

#include <ATen/core/Tensor.h>

#include "crossicl/engine/config.h"

namespace crossicl::detail {

/// RMSNorm as HF: x / sqrt(mean(x^2) + eps) computed in float32, cast back, then times `weight`.
at::Tensor rms_norm(const at::Tensor& x,       // [..., dim]
                    const at::Tensor& weight,  // [dim]
                    double eps);

/// x W^T (HF Linear without bias). One row (a decode step of one sequence) goes through the matrix-vector
/// kernel, which streams W at about the memory bandwidth; the GEMM path packs W per call (measured for bfloat16:
/// 1.5-1.6x slower at batch 1 on SmolLM2/TinyLlama shapes; equal for float32).
/// bfloat16 on a CPU without a bfloat16 GEMM (bf16_mm_is_fast) goes through linear_bf16_via_float.
at::Tensor linear(const at::Tensor& x,  // [n, in]
                  const at::Tensor& w); // [out, in] -> [n, out]

/// Whether ATen's bfloat16 GEMM has a fast kernel on this CPU: oneDNN's wants AVX512_BF16 or AMX-BF16. Without
/// them it ran SmolLM2's layer shapes at 20-22 GFLOP/s on an AMD EPYC (Zen 3, AVX2, 2 threads), where float32
/// torch.mm ran them at 100-190, and bfloat16 prefilled at a sixth of float32's speed.
bool bf16_mm_is_fast();

/// Rows [r0, r0 + m) of w (bfloat16 or int8 on the CPU, unit column stride) widened to float32, which is exact,
/// into dst (m rows of w.size(1)), split over the intra-op threads.
void widen_rows(const at::Tensor& w, std::int64_t r0, std::int64_t m, float* dst);

/// x W^T of bfloat16 CPU tensors through float32 GEMMs: x and panels of W's rows (at most `panel_floats`
/// elements each, in a buffer of the calling thread) widened to float32, which is exact, then each panel's product
/// rounded to bfloat16 as ATen's bfloat16 GEMM rounds its float32 sums. The result differs from at::linear's by the
/// order of the float32 additions only.
at::Tensor linear_bf16_via_float(const at::Tensor& x,  // [n, in] bfloat16
                                 const at::Tensor& w,  // [out, in] bfloat16, unit column stride
                                 std::int64_t panel_floats = std::int64_t{4} << 20);  // -> [n, out] bfloat16

/// RoPE inverse frequencies 1 / theta^(2i / head_dim), i < head_dim/2, with llama3 scaling if configured.
at::Tensor rope_inv_freq(const Config& config);  // [head_dim / 2] float32 (CPU)

/// cos and sin tables for `positions`, freqs = pos * inv_freq (float32), cast to dtype: cos = cos(cat(freqs,
/// freqs)) and sin = cat(-sin(freqs), sin(freqs)), rotate_half's sign folded in (for apply_rope only).
void rope_cos_sin(const at::Tensor& positions,  // [n] int64
                  const at::Tensor& inv_freq,   // [head_dim / 2] float32
                  at::ScalarType dtype, at::Tensor& cos, at::Tensor& sin);  // each [n, 1, head_dim]

/// x * cos + rotate_half(x) * sin, rotate_half(x) = cat(-x[..., d/2:], x[..., :d/2]), with the tables of
/// rope_cos_sin (bit-identical to HF's formula: the sign moves from x to sin).
at::Tensor apply_rope(const at::Tensor& x,    // [n, heads, head_dim]
                      const at::Tensor& cos,  // [n, 1, head_dim]
                      const at::Tensor& sin); // [n, 1, head_dim]

/// Reorders each head's rows of a wq/wk weight [heads * head_dim, in] from the interleaved RoPE layout
/// (pairs (2i, 2i+1): Meta's checkpoints, llama2.c, GGUF) to HF's rotate_half layout (pairs (i, i + head_dim/2))
/// as rows [0, 2, 4, ..., 1, 3, 5, ...] of each head; q.k is unchanged because q and k get the same order.
at::Tensor interleaved_to_half(const at::Tensor& w, std::int64_t heads, std::int64_t head_dim);

}  // namespace crossicl::detail
