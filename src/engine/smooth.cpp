// Calibration and SmoothQuant smoothing for Quantize::Int8 (detail/engine_quant.h).
#include <algorithm>
#include <cstdint>
#include <vector>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "crossicl/core/error.h"
#include "detail/engine_quant.h"
#include "detail/engine_transformer.h"

namespace crossicl::detail {
namespace {

// s_j = a_j^alpha / w_j^(1 - alpha), 1 where either maximum is 0 (a channel the calibration never saw, or one
// no row of the weight reads), clamped so that no factor under- or overflows what it scales.
at::Tensor smoothing_factors(const at::Tensor& a,  // [in] activation channel maxima
                             const at::Tensor& w,  // [in] weight column maxima
                             double alpha) {       // -> [in] float32
  const at::Tensor live = (a > 0).logical_and(w > 0);
  const at::Tensor s = a.clamp_min(1e-30).pow(alpha) / w.clamp_min(1e-30).pow(1.0 - alpha);
  return at::where(live, s.clamp(1e-4, 1e4), at::ones_like(s));
}

const at::Tensor& observed(const ActStats& stats, std::size_t layer, ActSlot slot, std::int64_t in) {
  const at::Tensor& a = stats.amax.at(layer)[slot];
  if (!a.defined() || a.numel() != in)
    throw InvalidArgument(fmt::format("smoothing: layer {} input {} has no calibration maxima of {} channels",
                                      layer, static_cast<int>(slot), in));
  return a;
}

}  // namespace

void ActStats::observe(std::int64_t layer, ActSlot slot, const at::Tensor& x) {
  if (x.size(0) == 0) return;
  if (static_cast<std::int64_t>(amax.size()) <= layer) amax.resize(layer + 1);
  const at::Tensor m = x.abs().amax(0).to(at::kFloat);  // [in]
  at::Tensor& cur = amax[layer][slot];
  cur = cur.defined() ? at::maximum(cur, m) : m;
}

ActStats calibrate(const Model& model, const std::vector<std::vector<std::int32_t>>& sequences) {
  const Config& c = model.config();
  ActStats stats;
  stats.amax.resize(c.n_layers);
  DecodeOptions options;
  options.logits = false;
  for (const std::vector<std::int32_t>& ids : sequences) {
    const std::int64_t len = std::min<std::int64_t>(static_cast<std::int64_t>(ids.size()), c.max_seq_len);
    if (len == 0) continue;
    Batch batch;
    for (std::int64_t i = 0; i < len; ++i) batch.add(ids[i], static_cast<std::int32_t>(i), 0, false);
    const BatchPlan plan = plan_batch(batch, options, c, len, [](std::int32_t) { return std::int64_t{0}; });
    const at::TensorOptions kv_opts = at::TensorOptions().dtype(model.dtype()).device(model.device());
    std::vector<at::Tensor> k, v;  // per layer [n_kv_heads, len, head_dim]
    for (std::int64_t l = 0; l < c.n_layers; ++l) {
      k.push_back(at::zeros({c.n_kv_heads, len, c.head_dim}, kv_opts));
      v.push_back(at::zeros({c.n_kv_heads, len, c.head_dim}, kv_opts));
    }
    forward(model, plan, {SeqKv{&k, &v}}, options, &stats);
  }
  return stats;
}

void smooth_layers(std::vector<LayerWeights>& layers, const Config& c, const ActStats& stats, double alpha) {
  if (!(alpha >= 0 && alpha <= 1)) throw InvalidArgument(fmt::format("smoothing alpha must be in [0, 1] (got {})", alpha));
  const std::int64_t nh = c.n_heads, kvh = c.n_kv_heads, hd = c.head_dim, group = nh / kvh;
  for (std::size_t li = 0; li < layers.size(); ++li) {
    LayerWeights& l = layers[li];
    const std::int64_t H = l.w13.size(0) / 2;
    const std::int64_t nq = l.wq.size(0), nk = l.wk.size(0), nv = l.wv.size(0);
    // Output projection: one factor per key-value channel (the value rows are shared by `group` query heads).
    {
      const at::Tensor a = observed(stats, li, kSlotO, nh * hd).view({kvh, group, hd}).amax(1);  // [kvh, hd]
      const at::Tensor w = l.wo.abs().amax(0).view({kvh, group, hd}).amax(1);                    // [kvh, hd]
      const at::Tensor s = smoothing_factors(a.flatten(), w.flatten(), alpha);                    // [kvh * hd]
      at::Tensor row_scale = at::ones({l.wqkv.size(0)}, l.wqkv.options());  // value rows divided by s
      row_scale.narrow(0, (nh + kvh) * hd, kvh * hd).copy_(s.reciprocal());
      l.wqkv = l.wqkv * row_scale.unsqueeze(1);
      l.wo = l.wo * s.view({kvh, 1, hd}).expand({kvh, group, hd}).reshape({1, nh * hd});
    }
    // Down projection: its input silu(gate) * up is divided through the up rows.
    {
      const at::Tensor s = smoothing_factors(observed(stats, li, kSlotDown, H), l.w2.abs().amax(0), alpha);  // [H]
      at::Tensor row_scale = at::ones({2 * H}, l.w13.options());
      row_scale.narrow(0, H, H).copy_(s.reciprocal());
      l.w13 = l.w13 * row_scale.unsqueeze(1);
      l.w2 = l.w2 * s.unsqueeze(0);
    }
    // qkv and gate/up read RMSNorm outputs: the norm weights take the division.
    const std::int64_t dim = l.attention_norm.size(0);
    {
      const at::Tensor s = smoothing_factors(observed(stats, li, kSlotQkv, dim), l.wqkv.abs().amax(0), alpha);
      l.attention_norm = l.attention_norm / s;
      l.wqkv = l.wqkv * s.unsqueeze(0);
    }
    {
      const at::Tensor s = smoothing_factors(observed(stats, li, kSlotGateUp, dim), l.w13.abs().amax(0), alpha);
      l.ffn_norm = l.ffn_norm / s;
      l.w13 = l.w13 * s.unsqueeze(0);
    }
    // The parts as views of the new fused tensors, so nothing keeps the old ones alive.
    l.wq = l.wqkv.narrow(0, 0, nq);
    l.wk = l.wqkv.narrow(0, nq, nk);
    l.wv = l.wqkv.narrow(0, nq + nk, nv);
    l.w1 = l.w13.narrow(0, 0, H);
    l.w3 = l.w13.narrow(0, H, H);
  }
}

}  // namespace crossicl::detail
