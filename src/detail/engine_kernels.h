// Hand-written CPU kernels for the small per-token operations of the forward pass (RMSNorm, RoPE, SiLU-gate,
// attention of short query chunks). With ATen each of these is several dispatched ops, and at batch 1 those
// ops cost as much as a third of a decode step (SmolLM2-135M, profiled: benchmarks/profile_decode.py); here each
// is one loop. They compute in float32 and round to the tensor's dtype where HF's op sequence does, so float32
// results agree with the ATen formulation to rounding and bfloat16 results round at the same points.
// Each kernel runs on the instruction-set path `isa` (crossicl/core/isa.h), by default the active one.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

#include "crossicl/core/isa.h"

namespace crossicl::detail {

/// Whether the kernels below handle `x`: a CPU tensor of float32 or bfloat16.
bool cpu_kernels(const at::Tensor& x);

/// HF LlamaRMSNorm: weight * (x / sqrt(mean(x^2) + eps)), the normalisation in float32 and rounded to x's dtype
/// before the weight product.
at::Tensor rms_norm_cpu(const at::Tensor& x,       // [n, dim] contiguous
                        const at::Tensor& weight,  // [dim]
                        double eps,                // -> [n, dim]
                        Isa isa = active_isa());
/// The same into `out` (a decode step's buffer, kept for all its layers).
void rms_norm_cpu_into(const at::Tensor& x,       // [n, dim] contiguous
                       const at::Tensor& weight,  // [dim] contiguous, x's dtype
                       double eps,
                       const at::Tensor& out,     // [n, dim] contiguous, x's dtype, written
                       Isa isa = active_isa());

/// silu(gate) * up of the fused gate/up projection output, rounded after the SiLU and after the product (HF).
/// The SiLU is ATen's vectorised op applied in place: gu's gate half holds silu(gate) afterwards.
at::Tensor silu_mul_cpu(at::Tensor gu,  // [n, 2 * hidden] contiguous (gate, up), gate overwritten -> [n, hidden]
                        Isa isa = active_isa());
/// The same into `out`, with the view of gu's gate half given (a decode step makes it once for all its layers).
void silu_mul_cpu_into(const at::Tensor& gu,   // [n, 2 * hidden] contiguous (gate, up), gate overwritten
                       at::Tensor gate,        // gu.narrow(1, 0, hidden)
                       const at::Tensor& out,  // [n, hidden] contiguous, gu's dtype, written
                       Isa isa = active_isa());

/// RoPE in place on the query and key heads of the fused qkv projection output: x * cos + rotate_half(x) * sin
/// with the tables of rope_cos_sin (sin signed), rounded after each product and after the sum (HF).
void rope_qk_cpu(at::Tensor& qkv,        // [n, n_heads + 2 * n_kv_heads, head_dim] contiguous
                 std::int64_t heads,     // leading heads to rotate: n_heads + n_kv_heads
                 const at::Tensor& cos,  // [n, 1, head_dim]
                 const at::Tensor& sin,  // [n, 1, head_dim]
                 Isa isa = active_isa());

/// Causal attention of one sequence's `len` new queries (positions p0 .. p0 + len - 1) over its cached keys
/// 0 .. p0 + len - 1, grouped-query (query head h reads kv head h / (n_heads / n_kv_heads)). Scores, softmax and
/// the weighted sum in float32 (e^x vectorised, within 1.2 ulps); the output rounded once to the dtype.
void attend_cpu(const at::Tensor& q,  // [len, n_heads, head_dim] (row stride may exceed n_heads * head_dim)
                const at::Tensor& k,  // [n_kv_heads, capacity, head_dim] contiguous cache
                const at::Tensor& v,  // [n_kv_heads, capacity, head_dim] contiguous cache
                std::int64_t p0, double scale,
                at::Tensor& out,      // [len, n_heads, head_dim] contiguous rows, written
                Isa isa = active_isa());
/// One sequence's share of a batched attend_cpu: its `len` new queries are rows [start, start + len) of q and out,
/// at positions p0 .. p0 + len - 1, over its own cache.
struct AttendSpan {
  std::int64_t start = 0;         // first row in q and out
  std::int64_t len = 0;           // its queries
  std::int64_t p0 = 0;            // position of its first query (keys before it are cached)
  const at::Tensor* k = nullptr;  // [n_kv_heads, capacity, head_dim] contiguous cache
  const at::Tensor* v = nullptr;  // [n_kv_heads, capacity, head_dim] contiguous cache
};
/// attend_cpu of several sequences of a packed pass in one parallel loop (same bits per query as one at a time):
/// many short chunks, e.g. scoring candidates or a decode step of a batch, share one thread wake-up.
void attend_cpu(const at::Tensor& q,                  // [n, n_heads, head_dim] (row stride may exceed n_heads * head_dim)
                const std::vector<AttendSpan>& spans,  // disjoint rows of q
                double scale,
                at::Tensor& out,                       // [n, n_heads, head_dim] contiguous rows, the spans' rows written
                Isa isa = active_isa());
/// For each row i of logits: the log-probability of targets[i] under softmax(logits[i]), and whether targets[i] is
/// the row's argmax (the lowest id among equal maxima, as torch.argmax). One pass over the row for the maximum,
/// one for the sum of exponentials (vectorised e^x within 1.2 ulps, sums in double per block of 256 values); a row
/// holding NaN gives a NaN log-probability and greedy false.
void token_logprobs_cpu(const at::Tensor& logits,      // [n, vocab] float32 CPU, unit stride along vocab
                        const std::int32_t* targets,   // [n] ids in [0, vocab)
                        float* logprob, bool* greedy,  // [n] each, written
                        Isa isa = active_isa());
/// For each row i of logits: its argmax (the greedy next token, the lowest id among equal maxima, as torch.argmax
/// where the row holds no NaN) into ids[i] and that token's log-probability into logprob[i], computed as
/// token_logprobs_cpu does: the step of greedy decoding in two passes over the row, where log_softmax, argmax and
/// an index took five ATen ops.
void greedy_tokens_cpu(const at::Tensor& logits,  // [n, vocab] float32 CPU, unit stride along vocab
                       std::int32_t* ids,         // [n] written
                       float* logprob,            // [n] written
                       Isa isa = active_isa());
}  // namespace crossicl::detail
