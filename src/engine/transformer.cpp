#include "detail/engine_transformer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <optional>

#include <ATen/ATen.h>
#include <c10/util/ParallelGuard.h>
#include <fmt/format.h>

#include "crossicl/core/error.h"
#include "detail/engine_gemv.h"
#include "detail/engine_kernels.h"
#include "detail/engine_ops.h"
#include "detail/engine_profile.h"
#include "detail/engine_quant.h"
#include "detail/engine_team.h"

namespace crossicl::detail {
namespace {

// Query chunks up to this length use the attention loop (CPU) or plain matmuls; longer ones torch's fused SDPA.
constexpr std::int64_t kSmallQuery = 16;
// On the CPU loops, longer chunks with at most this many (query, key) pairs also take the loop: SDPA's fixed cost
// (~150 us a call) outweighs its faster arithmetic below about 48 x 48 (scoring short contexts: 44 us a call in
// the loop against SDPA's 145 at 48 queries).
constexpr std::int64_t kSmallScores = 48 * 48;

// A decode step's activations on the CPU loops (at most kGemvMaxRows rows, no calibration), allocated with their
// views once per forward pass: each layer's norms, products, SiLU and quantisations write into them. Made per
// layer, the tensors and views were about 25 ATen calls a layer (allocations, narrow, view; 5 % of a bfloat16
// decode step on the calling thread, SmolLM2-135M, perf), while the other threads waited for the next product.
// Float models use the float buffers, int8 models (every block's four Linear layers quantised) the int8 ones.
struct StepBuffers {
  at::Tensor qkv;        // [n, (n_heads + 2 n_kv_heads) * head_dim] fused projection
  at::Tensor heads;      // qkv as [n, n_heads + 2 n_kv_heads, head_dim]
  at::Tensor q, k, v;    // heads' query, key and value heads
  at::Tensor attn;       // [n, n_heads, head_dim] attention output
  at::Tensor attn_rows;  // attn as [n, n_heads * head_dim]
  // float weights
  at::Tensor h;          // [n, dim] RMSNorm of the residual stream
  at::Tensor gu;         // [n, 2 hidden] fused gate and up projection
  at::Tensor gate;       // gu's gate half
  at::Tensor ff;         // [n, hidden] silu(gate) * up
  // int8 weights
  QuantWeight hq;        // [n, dim] RMSNorm of the residual stream, quantised
  QuantWeight attn_q;    // [n, n_heads * head_dim] attention output, quantised
  QuantWeight ff_q;      // [n, hidden] silu(gate) * up, quantised
};

// What every layer of one forward pass shares.
struct Pass {
  const Config& c;
  const BatchPlan& plan;
  const std::vector<SeqKv>& kv;  // one per plan.seqs entry
  // Float32/bfloat16 on the CPU (int8 models included): short-query attention, RMSNorm, RoPE and SiLU-gate run as
  // the single loops of detail/engine_kernels.h, at any number of tokens: one pass over the activations where
  // ATen's formulation makes several (pow, mean, rsqrt, mul; flip, mul, add; silu, mul), which took 15 % of a
  // float32 prefill (benchmarks/profile_prefill.py). Elsewhere (CUDA) ATen ops (detail/engine_ops.h).
  bool cpu_loops;
  at::Tensor cos, sin;           // [n, 1, head_dim] RoPE tables of the packed positions
  double scale;                  // attention scale 1 / sqrt(head_dim)
  ActStats* stats;               // calibration: Linear input maxima recorded here (null = not gathered)
  const StepBuffers* buf;        // a decode step's buffers (null: each layer makes its tensors)
  // A decode step's weight products in order (4 per block: wqkv, wo, w13, w2; then the head), as the bytes each
  // reads (int8 codes on int8 layers), for the team's threads to stream the next one while they wait.
  std::vector<std::pair<const void*, std::int64_t>> products;
};

// The bytes a weight matrix spans from its first element, as Pass::products lists them (its rows' stride or a
// transposed view included); none for an empty tensor or one with negative strides.
std::pair<const void*, std::int64_t> bytes_of(const at::Tensor& w) {
  std::int64_t last = 0;  // offset of the last element, in elements
  for (std::int64_t d = 0; d < w.dim(); ++d) {
    if (w.size(d) == 0 || w.stride(d) < 0) return {nullptr, 0};
    last += (w.size(d) - 1) * w.stride(d);
  }
  return {w.data_ptr(), (last + 1) * static_cast<std::int64_t>(w.element_size())};
}

// Tells a decode step's team that the product coming next is product k of block `layer` (as Pass::products
// numbers them), so that its threads stream the one after it while they wait.
void before_product(const Pass& p, std::int64_t layer, std::int64_t k) {
  Team* team = Team::current();
  const std::size_t next = static_cast<std::size_t>(layer * 4 + k + 1);
  if (team && next < p.products.size()) team->set_next(p.products[next].first, p.products[next].second);
}

// The buffers of a pass over x [n, dim] when it is a decode step on the CPU loops whose weights all take the
// matrix-vector kernels: float ones by gemv_applies, or every block's four Linear layers int8 (Int8Options'
// keep_float keeps none of them float); else none (prefill, calibration, CUDA).
std::optional<StepBuffers> step_buffers(const Config& c, const Weights& W, const std::vector<QuantLayer>* Q,
                                        const at::Tensor& x, bool cpu_loops, const ActStats* stats) {
  const std::int64_t n = x.size(0), dim = x.size(1), nh = c.n_heads, kvh = c.n_kv_heads, hd = c.head_dim;
  if (!cpu_loops || stats || n > kGemvMaxRows || W.layers.empty()) return std::nullopt;
  StepBuffers b;
  std::int64_t hidden = 0;
  if (Q) {
    for (const QuantLayer& L : *Q)
      if (!L.wqkv.q.defined() || !L.wo.q.defined() || !L.w13.q.defined() || !L.w2.q.defined() ||
          L.w13.q.size(0) != (*Q)[0].w13.q.size(0))
        return std::nullopt;
    hidden = (*Q)[0].w13.q.size(0) / 2;
    auto quant = [&](std::int64_t k) {  // q [n, k] int8, scale [n] float32
      return QuantWeight{at::empty({n, k}, x.options().dtype(at::kChar)), at::empty({n}, x.options())};
    };
    b.hq = quant(dim);
    b.attn_q = quant(nh * hd);
    b.ff_q = quant(hidden);
  } else {
    b.h = at::empty_like(x);  // [n, dim]
    hidden = W.layers[0].w13.size(0) / 2;
    for (const LayerWeights& L : W.layers)
      if (!detail::gemv_applies(b.h, L.wqkv) || !detail::gemv_applies(b.h, L.w13) || L.wo.size(0) != dim ||
          L.w2.size(0) != dim || L.w13.size(0) != 2 * hidden)
        return std::nullopt;
    b.gu = at::empty({n, 2 * hidden}, x.options());
    b.gate = b.gu.narrow(1, 0, hidden);
    b.ff = at::empty({n, hidden}, x.options());
  }
  b.qkv = at::empty({n, (nh + 2 * kvh) * hd}, x.options());
  b.heads = b.qkv.view({n, nh + 2 * kvh, hd});
  b.q = b.heads.narrow(1, 0, nh);
  b.k = b.heads.narrow(1, nh, kvh);
  b.v = b.heads.narrow(1, nh + kvh, kvh);
  b.attn = at::empty({n, nh, hd}, x.options());
  b.attn_rows = b.attn.view({n, nh * hd});
  return b;
}

// The int8 weight of a block's Linear layer `m`, or null when the model is float or keeps that layer in float32
// (Int8Options::keep_float).
const QuantWeight* quantized(const QuantLayer* Q, QuantWeight QuantLayer::*m) {
  return Q && (Q->*m).q.defined() ? &(Q->*m) : nullptr;
}

// x W^T by the weight's representation: the int8 one when the model is quantised (`q` not null), else float.
// Records x's channel maxima as input `slot` of block `layer` when the pass gathers them.
at::Tensor project(const Pass& p, std::int64_t layer, ActSlot slot,
                   const at::Tensor& x,  // [n, in]
                   const at::Tensor& w,  // [out, in] float (undefined when quantised)
                   const QuantWeight* q) {  // -> [n, out]
  if (p.stats) p.stats->observe(layer, slot, x);
  return q ? detail::linear_int8(x, *q) : detail::linear(x, w);
}

// residual += x W^T, a block's output projection added to the residual stream: int8 models add in the rescale of
// the int8 product, float decode steps as the matrix-vector kernel's epilogue (no tensor of their own); larger
// float passes through add_.
void project_add(const Pass& p, std::int64_t layer, ActSlot slot,
                 const at::Tensor& x,   // [n, in]
                 const at::Tensor& w,   // [out, in] float (undefined when quantised)
                 const QuantWeight* q,  // int8 weight or null
                 at::Tensor& residual,  // [n, out] residual stream, updated
                 const QuantWeight* codes = nullptr) {  // a decode step's buffer for x's int8 codes, or null
  if (p.stats) p.stats->observe(layer, slot, x);
  if (q)
    detail::linear_int8_add(detail::quantize_rows(x, active_isa(), codes), *q, residual);
  else if (detail::gemv_applies(x, w) && residual.is_contiguous())
    detail::gemv_into(x, w, residual, /*add=*/true);  // decode steps: added as each thread's rows are summed
  else
    residual.add_(detail::linear(x, w));
}

at::Tensor norm(const Pass& p, const at::Tensor& x, const at::Tensor& w) {  // [n, dim] -> [n, dim]
  return p.cpu_loops ? detail::rms_norm_cpu(x, w, p.c.norm_eps)
                                    : detail::rms_norm(x, w, p.c.norm_eps);
}

// A sublayer's first Linear on the RMSNorm of the residual stream: int8 models normalise and quantise each row in
// one pass (quantize_rms_norm, whatever the pass size); float models through norm and project.
at::Tensor norm_project(const Pass& p, std::int64_t layer, ActSlot slot,
                        const at::Tensor& x,       // [n, dim] residual stream
                        const at::Tensor& norm_w,  // [dim] RMSNorm weight
                        const at::Tensor& w,       // [out, dim] float (undefined when quantised)
                        const QuantWeight* q) {    // -> [n, out]
  if (q && !p.stats) return detail::linear_int8(detail::quantize_rms_norm(x, norm_w, p.c.norm_eps), *q);
  return project(p, layer, slot, norm(p, x, norm_w), w, q);
}

// norm_project of a decode step into `out`, the norm (or its int8 codes) in the step's buffer.
void norm_project_into(const Pass& p,
                       const at::Tensor& x,       // [n, dim] residual stream
                       const at::Tensor& norm_w,  // [dim] RMSNorm weight
                       const at::Tensor& w,       // [out, dim] float (undefined when quantised)
                       const QuantWeight* q,      // int8 weight or null
                       const at::Tensor& out) {   // [n, out] buffer, written
  const StepBuffers& b = *p.buf;
  if (q) {
    detail::linear_int8(detail::quantize_rms_norm(x, norm_w, p.c.norm_eps, active_isa(), &b.hq), *q, active_isa(),
                        &out);
  } else {
    detail::rms_norm_cpu_into(x, norm_w, p.c.norm_eps, b.h);
    detail::gemv_into(b.h, w, out, /*add=*/false);
  }
}

// Query positions p0 .. T-1 as a column and key positions 0 .. T-1 as a row, for a causal mask.
void query_key_positions(std::int64_t p0, std::int64_t T, c10::Device device, at::Tensor& qpos, at::Tensor& kpos) {
  const auto long_opts = at::TensorOptions().dtype(at::kLong).device(device);
  qpos = at::arange(p0, T, long_opts).unsqueeze(1);  // [len, 1]
  kpos = at::arange(0, T, long_opts).unsqueeze(0);   // [1, T]
}

// Short query chunks off the CPU loops' dtypes: plain matmuls, on this thread (an intra-op parallel region costs
// more than these tiny ops, milliseconds when the cores are shared).
at::Tensor attend_matmul(const at::Tensor& Q,  // [1, n_heads, len, head_dim]
                         const at::Tensor& K,  // [1, n_kv_heads, T, head_dim]
                         const at::Tensor& V,  // [1, n_kv_heads, T, head_dim]
                         std::int64_t p0, double scale) {  // -> [n_heads, len, head_dim]
  c10::ParallelGuard serial(true);
  const std::int64_t nh = Q.size(1), len = Q.size(2), hd = Q.size(3), kvh = K.size(1), T = K.size(2);
  const std::int64_t group = nh / kvh;  // query heads per kv head (HF repeat_kv order)
  at::Tensor Qg = Q[0].reshape({kvh, group * len, hd});               // [n_kv_heads, group * len, head_dim]
  at::Tensor scores = at::matmul(Qg, K[0].transpose(1, 2)) * scale;  // [n_kv_heads, group * len, T]
  if (len > 1) {
    at::Tensor qpos, kpos;  // [len, 1], [1, T]
    query_key_positions(p0, T, Q.device(), qpos, kpos);
    at::Tensor hide = (kpos > qpos).repeat({group, 1});  // [group * len, T]
    scores = scores.masked_fill(hide, -std::numeric_limits<float>::infinity());
  }
  at::Tensor probs = at::softmax(scores, -1, at::kFloat).to(scores.scalar_type());  // [n_kv_heads, group*len, T]
  return at::matmul(probs, V[0]).view({nh, len, hd});                                // [n_heads, len, head_dim]
}

// Long query chunks (prefill): torch's fused scaled-dot-product attention, causal from position 0, else with
// an explicit mask (query i, at position p0 + i, sees keys 0 .. p0 + i).
at::Tensor attend_sdpa(const at::Tensor& Q,  // [1, n_heads, len, head_dim]
                       const at::Tensor& K,  // [1, n_kv_heads, T, head_dim]
                       const at::Tensor& V,  // [1, n_kv_heads, T, head_dim]
                       std::int64_t p0, double scale) {  // -> [n_heads, len, head_dim]
  std::optional<at::Tensor> mask;
  bool causal = false;
  if (p0 == 0) {
    causal = true;
  } else {
    at::Tensor qpos, kpos;  // [len, 1], [1, T]
    query_key_positions(p0, K.size(2), Q.device(), qpos, kpos);
    mask = kpos <= qpos;  // [len, T]
  }
  return at::scaled_dot_product_attention(Q, K, V, mask, 0.0, causal, scale,
                                          /*enable_gqa=*/Q.size(1) != K.size(1))[0];
}

// Whether a chunk of `len` queries at positions p0 .. goes to the CPU attention loop (decode steps, scoring
// candidates, short prompts): torch's CPU flash kernel costs milliseconds per call for one query, and the matmul
// formulation is ~8 small ops per layer.
bool small_chunk(std::int64_t len, std::int64_t p0) { return len <= kSmallQuery || len * (p0 + len) <= kSmallScores; }

// Attention of one sequence's new queries over its cached keys 0 .. p0 + len - 1 off the CPU loops (CUDA, other
// dtypes) or for chunks too long for them: plain matmuls for short chunks, SDPA for long ones.
void attend(const Pass& p,
            const at::Tensor& q,        // [len, n_heads, head_dim]
            const at::Tensor& k_cache,  // [n_kv_heads, capacity, head_dim]
            const at::Tensor& v_cache,  // [n_kv_heads, capacity, head_dim]
            std::int64_t p0,
            at::Tensor& out) {          // [len, n_heads, head_dim], written
  const std::int64_t len = q.size(0);
  const std::int64_t T = p0 + len;                      // keys visible to the last query
  at::Tensor K = k_cache.narrow(1, 0, T).unsqueeze(0);  // [1, n_kv_heads, T, head_dim]
  at::Tensor V = v_cache.narrow(1, 0, T).unsqueeze(0);  // [1, n_kv_heads, T, head_dim]
  at::Tensor Q = q.transpose(0, 1).unsqueeze(0);        // [1, n_heads, len, head_dim]
  at::Tensor o = len <= kSmallQuery ? attend_matmul(Q, K, V, p0, p.scale)
                                    : attend_sdpa(Q, K, V, p0, p.scale);  // [n_heads, len, head_dim]
  out.copy_(o.transpose(0, 1));
}

// Rows [start, start + len) of new keys or values into cache positions p0 .. p0 + len - 1: on the CPU one memcpy
// per (head, token), else a strided copy_.
void store_kv(const at::Tensor& src,  // [n, n_kv_heads, head_dim] (rows of the fused qkv output)
              const at::Tensor& cache,  // [n_kv_heads, capacity, head_dim] contiguous
              std::int64_t start, std::int64_t len, std::int64_t p0) {
  if (!src.device().is_cpu() || src.stride(2) != 1 || !cache.is_contiguous() ||
      src.scalar_type() != cache.scalar_type()) {
    cache.narrow(1, p0, len).copy_(src.narrow(0, start, len).transpose(0, 1));
    return;
  }
  const std::int64_t heads = src.size(1), hd = src.size(2), cap = cache.size(1), es = src.element_size();
  const auto* sp = static_cast<const char*>(src.data_ptr());
  auto* cp = static_cast<char*>(cache.data_ptr());
  for (std::int64_t h = 0; h < heads; ++h)
    for (std::int64_t t = 0; t < len; ++t)
      std::memcpy(cp + (h * cap + p0 + t) * hd * es, sp + ((start + t) * src.stride(0) + h * src.stride(1)) * es,
                  static_cast<std::size_t>(hd * es));
}

// Self-attention of one block over the packed batch: qkv projection, RoPE on queries and keys, the new keys and
// values into each sequence's cache, attention of each sequence over its cache, output projection added to x.
void attention(const Pass& p, const LayerWeights& L, const QuantLayer* Q, std::int64_t layer,
               at::Tensor& x) {  // [n, dim] residual stream, updated
  CROSSICL_PROFILE("attention_block");
  const std::int64_t n = x.size(0), nh = p.c.n_heads, kvh = p.c.n_kv_heads, hd = p.c.head_dim;
  const QuantWeight* wqkv = quantized(Q, &QuantLayer::wqkv);
  const StepBuffers* b = p.buf;
  at::Tensor qkv, q, k, v;  // [n, nh + 2 kvh, hd] and its query, key and value heads
  if (b) {  // a decode step, into its buffers
    before_product(p, layer, 0);
    norm_project_into(p, x, L.attention_norm, L.wqkv, wqkv, b->qkv);
    qkv = b->heads;
    detail::rope_qk_cpu(qkv, nh + kvh, p.cos, p.sin);  // in place on the query and key heads
    q = b->q, k = b->k, v = b->v;
  } else {
    qkv = norm_project(p, layer, kSlotQkv, x, L.attention_norm, L.wqkv, wqkv).view({n, nh + 2 * kvh, hd});
    if (p.cpu_loops) {
      detail::rope_qk_cpu(qkv, nh + kvh, p.cos, p.sin);
      q = qkv.narrow(1, 0, nh);    // [n, n_heads, head_dim]
      k = qkv.narrow(1, nh, kvh);  // [n, n_kv_heads, head_dim]
    } else {
      at::Tensor qk = detail::apply_rope(qkv.narrow(1, 0, nh + kvh), p.cos, p.sin);  // [n, n_heads + n_kv_heads, hd]
      q = qk.narrow(1, 0, nh);
      k = qk.narrow(1, nh, kvh);
    }
    v = qkv.narrow(1, nh + kvh, kvh);  // [n, n_kv_heads, head_dim]
  }

  at::Tensor attn = b ? b->attn : at::empty({n, nh, hd}, q.options());  // [n, n_heads, head_dim]
  const bool one = p.plan.seqs.size() == 1;  // the whole pass is one sequence's: no per-sequence views
  std::vector<detail::AttendSpan> loop;      // the sequences the CPU loop attends, all in one call
  for (std::size_t s = 0; s < p.plan.seqs.size(); ++s) {
    const SeqSpan& span = p.plan.seqs[s];
    const at::Tensor& k_cache = (*p.kv[s].k)[layer];  // [n_kv_heads, capacity, head_dim]
    const at::Tensor& v_cache = (*p.kv[s].v)[layer];  // [n_kv_heads, capacity, head_dim]
    store_kv(k, k_cache, span.start, span.len, span.p0);
    store_kv(v, v_cache, span.start, span.len, span.p0);
    if (p.cpu_loops && small_chunk(span.len, span.p0)) {
      detail::AttendSpan a;
      a.start = span.start, a.len = span.len, a.p0 = span.p0, a.k = &k_cache, a.v = &v_cache;
      loop.push_back(a);
      continue;
    }
    at::Tensor rows = one ? attn : attn.narrow(0, span.start, span.len);  // [len, n_heads, head_dim]
    attend(p, one ? q : q.narrow(0, span.start, span.len), k_cache, v_cache, span.p0, rows);
  }
  before_product(p, layer, 0);  // the attention loop's threads stream wo after it
  if (!loop.empty()) detail::attend_cpu(q, loop, p.scale, attn);
  before_product(p, layer, 1);
  project_add(p, layer, kSlotO, b ? b->attn_rows : attn.view({n, nh * hd}), L.wo, quantized(Q, &QuantLayer::wo), x,
              b ? &b->attn_q : nullptr);
}

// SwiGLU on h = RMSNorm(x): w2(silu(w1 h) * w3 h), the gate and up projections as one product, added to x.
void feed_forward(const Pass& p, const LayerWeights& L, const QuantLayer* Q, std::int64_t layer,
                  at::Tensor& x) {  // [n, dim] residual stream, updated
  CROSSICL_PROFILE("feed_forward_block");
  const QuantWeight* w13 = quantized(Q, &QuantLayer::w13);
  const QuantWeight* w2 = quantized(Q, &QuantLayer::w2);
  const StepBuffers* b = p.buf;
  if (w13 && w2 && !p.stats) {  // int8 throughout: no float tensor between the norm and the residual
    const Isa isa = active_isa();
    before_product(p, layer, 2);
    const QuantWeight h = detail::linear_int8_silu_mul(
        detail::quantize_rms_norm(x, L.ffn_norm, p.c.norm_eps, isa, b ? &b->hq : nullptr), *w13, isa,
        b ? &b->ff_q : nullptr);
    before_product(p, layer, 3);
    detail::linear_int8_add(h, *w2, x);
    return;
  }
  if (b) {  // a decode step's float layer, into its buffers
    before_product(p, layer, 2);
    norm_project_into(p, x, L.ffn_norm, L.w13, nullptr, b->gu);
    detail::silu_mul_cpu_into(b->gu, b->gate, b->ff);
    before_product(p, layer, 3);
    project_add(p, layer, kSlotDown, b->ff, L.w2, nullptr, x);
    return;
  }
  at::Tensor gu = norm_project(p, layer, kSlotGateUp, x, L.ffn_norm, L.w13, w13);  // [n, 2 hidden]
  if (w2 && !p.stats) {
    detail::linear_int8_add(detail::quantize_silu_mul(gu), *w2, x);
    return;
  }
  at::Tensor ff;  // [n, hidden_dim]
  if (p.cpu_loops) {
    ff = detail::silu_mul_cpu(gu);
  } else {
    const std::int64_t H = gu.size(1) / 2;
    ff = at::silu(gu.narrow(1, 0, H)) * gu.narrow(1, H, H);
  }
  project_add(p, layer, kSlotDown, ff, L.w2, w2, x);
}

}  // namespace

BatchPlan plan_batch(const Batch& batch, const DecodeOptions& options, const Config& c, std::int64_t n_ctx,
                     const std::function<std::int64_t(std::int32_t)>& cached_len) {
  const std::size_t n = batch.tokens.size();
  if (batch.pos.size() != n || batch.seq_id.size() != n || batch.output.size() != n)
    throw InvalidArgument(fmt::format("batch vectors differ in size (tokens={}, pos={}, seq_id={}, output={})", n,
                                      batch.pos.size(), batch.seq_id.size(), batch.output.size()));
  if (n == 0) throw InvalidArgument("batch is empty");
  for (int layer : options.hidden_layers)
    if (layer < 0 || layer > c.n_layers)
      throw InvalidArgument(fmt::format("hidden layer {} out of range [0, {}]", layer, c.n_layers));

  // Group the entries by sequence (in order of first appearance) and check each continues its cache.
  std::vector<SeqSpan> seqs;
  std::vector<std::vector<std::size_t>> entries;  // per sequence: its batch entries, in position order
  std::map<std::int32_t, std::size_t> seq_index;
  for (std::size_t i = 0; i < n; ++i) {
    if (batch.tokens[i] < 0 || batch.tokens[i] >= c.vocab_size)
      throw InvalidArgument(
          fmt::format("token id {} out of range [0, {}) at batch entry {}", batch.tokens[i], c.vocab_size, i));
    if (batch.seq_id[i] < 0)
      throw InvalidArgument(fmt::format("seq_id must be >= 0 (seq_id={} at batch entry {})", batch.seq_id[i], i));
    auto [it, fresh] = seq_index.emplace(batch.seq_id[i], seqs.size());
    if (fresh) {
      seqs.push_back({batch.seq_id[i], cached_len(batch.seq_id[i]), 0, 0});
      entries.emplace_back();
    }
    SeqSpan& s = seqs[it->second];
    const std::int64_t expected = s.p0 + s.len;
    if (batch.pos[i] != expected)
      throw InvalidArgument(fmt::format("position {} of sequence {} at batch entry {} does not continue its cache "
                                        "(expected position {})",
                                        batch.pos[i], batch.seq_id[i], i, expected));
    if (expected >= n_ctx)
      throw InvalidArgument(fmt::format("sequence {} exceeds the context window (position {}, n_ctx={})",
                                        batch.seq_id[i], expected, n_ctx));
    entries[it->second].push_back(i);
    ++s.len;
  }

  // Packed order: the tokens of each sequence contiguous, no padding.
  BatchPlan plan;
  std::vector<std::int64_t> packed_row(n);  // packed row of each batch entry
  for (std::size_t s = 0; s < seqs.size(); ++s) {
    seqs[s].start = static_cast<std::int64_t>(plan.tokens.size());
    for (std::size_t i : entries[s]) {
      packed_row[i] = static_cast<std::int64_t>(plan.tokens.size());
      plan.tokens.push_back(batch.tokens[i]);
      plan.positions.push_back(batch.pos[i]);
    }
  }
  for (std::size_t i = 0; i < n; ++i)
    if (batch.output[i]) plan.out_rows.push_back(packed_row[i]);
  plan.seqs = std::move(seqs);
  return plan;
}

DecodeOutput forward(const Model& model, const BatchPlan& plan, const std::vector<SeqKv>& kv,
                     const DecodeOptions& options, ActStats* stats) {
  CROSSICL_PROFILE("forward");
  const Config& c = model.config();
  const Weights& W = model.weights();
  const auto long_opts = at::TensorOptions().dtype(at::kLong);
  at::Tensor tokens = at::tensor(plan.tokens, long_opts).to(model.device());        // [n]
  at::Tensor positions = at::tensor(plan.positions, long_opts).to(model.device());  // [n]
  at::Tensor rows = at::tensor(plan.out_rows, long_opts).to(model.device());        // [n_out]
  const bool cpu_loops = detail::cpu_kernels(W.norm);  // the norms keep the model's dtype and device
  Pass p{c, plan, kv, cpu_loops, {}, {}, 1.0 / std::sqrt(static_cast<double>(c.head_dim)),
         stats, nullptr};
  detail::rope_cos_sin(positions, model.inv_freq(), model.dtype(), p.cos, p.sin);

  std::vector<at::Tensor> hidden(c.n_layers + 1);  // requested layers only, [n_out, dim]
  auto wanted = [&](std::int64_t layer) {
    return std::find(options.hidden_layers.begin(), options.hidden_layers.end(), layer) !=
           options.hidden_layers.end();
  };
  const bool int8 = model.quantize() == Quantize::Int8;
  const bool int8_head = int8 && model.quant_output().q.defined();  // else keep_float "head": float tables
  at::Tensor x = int8_head ? detail::embedding_int8(model.quant_embeddings(), tokens)
                           : W.tok_embeddings.index_select(0, tokens);  // [n, dim]
  const std::optional<StepBuffers> buf = step_buffers(c, W, int8 ? &model.quant_layers() : nullptr, x, cpu_loops,
                                                      stats);
  p.buf = buf ? &*buf : nullptr;
  if (buf && at::get_num_threads() > 1) {  // a team will run the step
    for (std::int64_t l = 0; l < c.n_layers; ++l) {
      if (int8) {
        const QuantLayer& Q = model.quant_layers()[l];
        for (const QuantWeight* w : {&Q.wqkv, &Q.wo, &Q.w13, &Q.w2}) p.products.push_back(bytes_of(w->q));
      } else {
        const LayerWeights& L = W.layers[l];
        for (const at::Tensor* w : {&L.wqkv, &L.wo, &L.w13, &L.w2}) p.products.push_back(bytes_of(*w));
      }
    }
    p.products.push_back(bytes_of(int8_head ? model.quant_output().q : W.output));
  }
  if (wanted(0)) hidden[0] = x.index_select(0, rows);
  DecodeOutput out;
  // A decode step holds the intra-op threads for its whole pass (detail/engine_team.h); other passes use them per op.
  auto layers = [&] {
    for (std::int64_t l = 0; l < c.n_layers; ++l) {
      const LayerWeights& L = W.layers[l];
      const QuantLayer* Q = int8 ? &model.quant_layers()[l] : nullptr;
      attention(p, L, Q, l, x);     // x [n, dim] residual, updated
      feed_forward(p, L, Q, l, x);  // x [n, dim] residual, updated
      if (l + 1 < c.n_layers && wanted(l + 1)) hidden[l + 1] = x.index_select(0, rows);
    }
    at::Tensor xo = norm(p, x.index_select(0, rows), W.norm);  // [n_out, dim] final norm
    if (wanted(c.n_layers)) hidden[c.n_layers] = xo;
    if (options.logits)  // [n_out, vocab_size]
      out.logits = (int8_head ? detail::linear_int8(xo, model.quant_output()) : detail::linear(xo, W.output))
                       .to(at::kFloat)
                       .cpu()
                       .contiguous();
  };
  if (buf)
    Team::run(layers);
  else
    layers();
  for (int layer : options.hidden_layers) out.hidden.push_back(hidden[layer].to(at::kFloat).cpu().contiguous());
  return out;
}

}  // namespace crossicl::detail
