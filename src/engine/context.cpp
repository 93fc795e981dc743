#include "crossicl/engine/context.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <c10/util/ParallelGuard.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "crossicl/core/error.h"
#include "detail/engine_kernels.h"
#include "detail/engine_ops.h"

namespace crossicl {
namespace {

// Query chunks up to this length use the attention loop (CPU) or plain matmuls; longer ones torch's fused SDPA.
constexpr std::int64_t kSmallQuery = 16;
// Forward passes of up to this many tokens run RMSNorm, RoPE and SiLU-gate as the scalar CPU loops, which save
// ATen's per-op overhead; larger ones (prefill) as ATen's vectorised ops, which are faster per element.
constexpr std::int64_t kLoopRows = 64;

}  // namespace

Context::Context(std::shared_ptr<const Model> model, ContextOptions options) : model_(std::move(model)) {
  if (!model_) throw InvalidArgument("Context needs a model (got null)");
  if (options.n_ctx < 0) throw InvalidArgument(fmt::format("n_ctx must be >= 0 (n_ctx={})", options.n_ctx));
  n_ctx_ = options.n_ctx > 0 ? options.n_ctx : model_->config().max_seq_len;
}

std::int64_t Context::seq_len(std::int32_t seq) const {
  auto it = seqs_.find(seq);
  return it == seqs_.end() ? 0 : it->second.len;
}

void Context::seq_rm(std::int32_t seq) { seqs_.erase(seq); }

void Context::seq_keep(std::int32_t seq, std::int64_t n) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return;
  if (n < 0) throw InvalidArgument(fmt::format("seq_keep: n must be >= 0 (n={})", n));
  it->second.len = std::min(it->second.len, n);
}

void Context::seq_cp(std::int32_t src, std::int32_t dst, std::int64_t n) {
  c10::InferenceMode guard;
  auto it = seqs_.find(src);
  const std::int64_t have = it == seqs_.end() ? 0 : it->second.len;
  if (n < 0) n = have;
  if (n > have)
    throw InvalidArgument(fmt::format("seq_cp: sequence {} has {} cached positions, asked for {}", src, have, n));
  if (src == dst) {
    seq_keep(src, n);
    return;
  }
  const SeqCache& from = it->second;  // seqs_ is a map: the reference survives inserting dst
  SeqCache& to = seqs_[dst];
  to.len = 0;
  if (n > 0) {
    reserve(to, n, /*exact=*/true);
    to.room.narrow(3, 0, n).copy_(from.room.narrow(3, 0, n));  // [n_layers, 2, n_kv_heads, n, head_dim]
  }
  to.len = n;
}

void Context::seq_reserve(std::int32_t seq, std::int64_t n) {
  c10::InferenceMode guard;
  if (n < 0) throw InvalidArgument(fmt::format("seq_reserve: n must be >= 0 (n={})", n));
  reserve(seqs_[seq], std::min(n, n_ctx_), /*exact=*/true);
}

void Context::reserve_arena(std::int64_t n) {
  c10::InferenceMode guard;
  if (n < 0) throw InvalidArgument(fmt::format("reserve_arena: n must be >= 0 (n={})", n));
  const Config& c = model_->config();
  arena_ = n == 0 ? at::Tensor()
                  : at::empty({n * c.n_layers * 2 * c.n_kv_heads * c.head_dim},
                              at::TensorOptions().dtype(model_->dtype()).device(model_->device()));
  arena_size_ = n;
  arena_used_ = 0;
}

void Context::clear() {
  seqs_.clear();
  arena_ = at::Tensor();
  arena_size_ = arena_used_ = 0;
}

void Context::check_kv_shape(const char* what, const at::Tensor& t) const {
  const Config& c = model_->config();
  if (t.dim() != 5 || t.size(0) != c.n_layers || t.size(1) != 2 || t.size(2) != c.n_kv_heads ||
      t.size(4) != c.head_dim)
    throw InvalidArgument(fmt::format("{} must be [{}, 2, {}, n, {}] (got {})", what, c.n_layers, c.n_kv_heads,
                                      c.head_dim, fmt::join(t.sizes(), "x")));
}

at::Tensor Context::cached_rows(const char* what, std::int32_t seq, std::int64_t begin, std::int64_t n) const {
  auto it = seqs_.find(seq);
  const std::int64_t have = it == seqs_.end() ? 0 : it->second.len;
  if (begin < 0 || n < 0 || begin + n > have)
    throw InvalidArgument(fmt::format("{}: positions [{}, {}) are not cached in sequence {} ({} cached)", what, begin,
                                      begin + n, seq, have));
  return n == 0 ? at::Tensor() : it->second.room.narrow(3, begin, n);  // [n_layers, 2, n_kv_heads, n, head_dim]
}

at::Tensor Context::seq_kv(std::int32_t seq, std::int64_t begin, std::int64_t n) const {
  c10::InferenceMode guard;
  const Config& c = model_->config();
  const at::Tensor rows = cached_rows("seq_kv", seq, begin, n);
  at::Tensor out = at::empty({c.n_layers, 2, c.n_kv_heads, n, c.head_dim},
                             at::TensorOptions().dtype(model_->dtype()).device(model_->device()));
  if (n > 0) out.copy_(rows);
  return out;
}

void Context::seq_kv_into(std::int32_t seq, std::int64_t begin, const at::Tensor& out) const {
  c10::InferenceMode guard;
  check_kv_shape("seq_kv_into: out", out);
  const at::Tensor rows = cached_rows("seq_kv_into", seq, begin, out.size(3));
  if (rows.defined()) out.copy_(rows);
}

void Context::seq_append_kv(std::int32_t seq, const at::Tensor& kv) {
  seq_append_kv(seq, std::vector<at::Tensor>{kv});
}

void Context::seq_append_kv(std::int32_t seq, const std::vector<at::Tensor>& kv) {
  c10::InferenceMode guard;
  std::int64_t n = 0;
  for (const at::Tensor& t : kv) {
    check_kv_shape("seq_append_kv: kv", t);
    n += t.size(3);
  }
  SeqCache& s = seqs_[seq];
  if (s.len + n > n_ctx_)
    throw InvalidArgument(fmt::format("seq_append_kv: sequence {} would hold {} positions, more than n_ctx={}", seq,
                                      s.len + n, n_ctx_));
  if (n == 0) return;
  reserve(s, s.len + n);
  for (const at::Tensor& t : kv) {
    s.room.narrow(3, s.len, t.size(3)).copy_(t);  // [n_layers, 2, n_kv_heads, n_t, head_dim]
    s.len += t.size(3);
  }
}

void Context::reserve(SeqCache& cache, std::int64_t n, bool exact) {
  const std::int64_t cap = cache.room.defined() ? cache.room.size(3) : 0;
  if (n <= cap) return;
  const std::int64_t new_cap = exact ? n : std::max(n, std::min(n_ctx_, std::max<std::int64_t>(64, 2 * cap)));
  const Config& c = model_->config();
  at::Tensor room;  // [n_layers, 2, n_kv_heads, new_cap, head_dim]
  if (exact && arena_.defined() && arena_used_ + new_cap <= arena_size_) {
    const std::int64_t per_pos = c.n_layers * 2 * c.n_kv_heads * c.head_dim;
    room = arena_.narrow(0, arena_used_ * per_pos, new_cap * per_pos)
               .view({c.n_layers, 2, c.n_kv_heads, new_cap, c.head_dim});
    arena_used_ += new_cap;
  } else {
    room = at::empty({c.n_layers, 2, c.n_kv_heads, new_cap, c.head_dim},
                     at::TensorOptions().dtype(model_->dtype()).device(model_->device()));
  }
  if (cache.len > 0) room.narrow(3, 0, cache.len).copy_(cache.room.narrow(3, 0, cache.len));
  cache.room = room;
  cache.k.resize(c.n_layers);
  cache.v.resize(c.n_layers);
  for (std::int64_t l = 0; l < c.n_layers; ++l) {
    cache.k[l] = room[l][0];  // [n_kv_heads, cap, head_dim]
    cache.v[l] = room[l][1];  // [n_kv_heads, cap, head_dim]
  }
}

DecodeOutput Context::decode(const Batch& batch, const DecodeOptions& options) {
  c10::InferenceMode guard;
  const Config& c = model_->config();
  const Weights& W = model_->weights();
  const std::size_t n = batch.tokens.size();
  if (batch.pos.size() != n || batch.seq_id.size() != n || batch.output.size() != n)
    throw InvalidArgument(fmt::format("batch vectors differ in size (tokens={}, pos={}, seq_id={}, output={})", n,
                                      batch.pos.size(), batch.seq_id.size(), batch.output.size()));
  if (n == 0) throw InvalidArgument("batch is empty");
  for (int layer : options.hidden_layers)
    if (layer < 0 || layer > c.n_layers)
      throw InvalidArgument(fmt::format("hidden layer {} out of range [0, {}]", layer, c.n_layers));

  // Group the entries by sequence (in order of first appearance) and check each continues its cache.
  struct Group {
    std::int32_t seq;
    std::int64_t p0;            // first position = cached length before this batch
    std::vector<std::int64_t> idx;  // batch indices, in position order
  };
  std::vector<Group> groups;
  std::map<std::int32_t, std::size_t> group_of;
  for (std::size_t i = 0; i < n; ++i) {
    if (batch.tokens[i] < 0 || batch.tokens[i] >= c.vocab_size)
      throw InvalidArgument(
          fmt::format("token id {} out of range [0, {}) at batch entry {}", batch.tokens[i], c.vocab_size, i));
    if (batch.seq_id[i] < 0)
      throw InvalidArgument(fmt::format("seq_id must be >= 0 (seq_id={} at batch entry {})", batch.seq_id[i], i));
    auto [it, fresh] = group_of.emplace(batch.seq_id[i], groups.size());
    if (fresh) groups.push_back({batch.seq_id[i], seq_len(batch.seq_id[i]), {}});
    Group& g = groups[it->second];
    const std::int64_t expected = g.p0 + static_cast<std::int64_t>(g.idx.size());
    if (batch.pos[i] != expected)
      throw InvalidArgument(fmt::format("position {} of sequence {} at batch entry {} does not continue its cache "
                                        "(expected position {})",
                                        batch.pos[i], batch.seq_id[i], i, expected));
    if (expected >= n_ctx_)
      throw InvalidArgument(fmt::format("sequence {} exceeds the context window (position {}, n_ctx={})",
                                        batch.seq_id[i], expected, n_ctx_));
    g.idx.push_back(static_cast<std::int64_t>(i));
  }

  // Packed order: the tokens of each sequence contiguous, no padding.
  std::vector<std::int64_t> order, packed_pos(n), packed_tok(n);
  std::vector<std::int64_t> packed_index_of(n);
  for (const Group& g : groups)
    for (std::int64_t i : g.idx) {
      packed_index_of[i] = static_cast<std::int64_t>(order.size());
      order.push_back(i);
    }
  for (std::size_t j = 0; j < n; ++j) {
    packed_tok[j] = batch.tokens[order[j]];
    packed_pos[j] = batch.pos[order[j]];
  }
  std::vector<std::int64_t> out_rows;  // packed rows of the output entries, in batch order
  for (std::size_t i = 0; i < n; ++i)
    if (batch.output[i]) out_rows.push_back(packed_index_of[i]);

  for (const Group& g : groups) reserve(seqs_[g.seq], g.p0 + static_cast<std::int64_t>(g.idx.size()));

  const c10::Device dev = model_->device();
  const auto long_opts = at::TensorOptions().dtype(at::kLong);
  const std::int64_t N = static_cast<std::int64_t>(n);
  at::Tensor tokens = at::tensor(packed_tok, long_opts).to(dev);  // [n]
  at::Tensor positions = at::tensor(packed_pos, long_opts).to(dev);  // [n]
  at::Tensor rows = at::tensor(out_rows, long_opts).to(dev);  // [n_out]
  at::Tensor cos, sin;  // [n, 1, head_dim]
  detail::rope_cos_sin(positions, model_->inv_freq(), model_->dtype(), cos, sin);

  const std::int64_t nh = c.n_heads, kvh = c.n_kv_heads, hd = c.head_dim;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  DecodeOutput out;
  std::vector<at::Tensor> hidden(c.n_layers + 1);  // requested layers only, [n_out, dim]
  auto wanted = [&](std::int64_t layer) {
    return std::find(options.hidden_layers.begin(), options.hidden_layers.end(), layer) !=
           options.hidden_layers.end();
  };

  // Float32/bfloat16 on the CPU: short-query attention, and RMSNorm, RoPE and SiLU-gate of small passes, run as
  // single loops (detail/engine_kernels.h); elsewhere as ATen ops.
  const bool cpu_loops = detail::cpu_kernels(W.tok_embeddings);
  const bool kernels = cpu_loops && N <= kLoopRows;
  auto norm = [&](const at::Tensor& t, const at::Tensor& w) {
    return kernels ? detail::rms_norm_cpu(t, w, c.norm_eps) : detail::rms_norm(t, w, c.norm_eps);
  };
  at::Tensor x = W.tok_embeddings.index_select(0, tokens);  // [n, dim]
  if (wanted(0)) hidden[0] = x.index_select(0, rows);
  for (std::int64_t l = 0; l < c.n_layers; ++l) {
    const LayerWeights& L = W.layers[l];
    at::Tensor h = norm(x, L.attention_norm);                               // [n, dim]
    at::Tensor qkv = detail::linear(h, L.wqkv).view({N, nh + 2 * kvh, hd});  // [n, n_heads + 2 n_kv_heads, head_dim]
    at::Tensor q, k;
    if (kernels) {
      detail::rope_qk_cpu(qkv, nh + kvh, cos, sin);  // in place on the query and key heads
      q = qkv.narrow(1, 0, nh);                      // [n, n_heads, head_dim]
      k = qkv.narrow(1, nh, kvh);                    // [n, n_kv_heads, head_dim]
    } else {
      at::Tensor qk = detail::apply_rope(qkv.narrow(1, 0, nh + kvh), cos, sin);  // [n, n_heads + n_kv_heads, head_dim]
      q = qk.narrow(1, 0, nh);
      k = qk.narrow(1, nh, kvh);
    }
    at::Tensor v = qkv.narrow(1, nh + kvh, kvh);  // [n, n_kv_heads, head_dim]

    at::Tensor attn = at::empty({N, nh, hd}, q.options());  // [n, n_heads, head_dim]
    std::int64_t start = 0;
    for (const Group& g : groups) {
      const std::int64_t len = static_cast<std::int64_t>(g.idx.size());
      const std::int64_t T = g.p0 + len;  // keys visible to the last query
      SeqCache& cache = seqs_[g.seq];
      cache.k[l].narrow(1, g.p0, len).copy_(k.narrow(0, start, len).transpose(0, 1));
      cache.v[l].narrow(1, g.p0, len).copy_(v.narrow(0, start, len).transpose(0, 1));
      at::Tensor rows_out = attn.narrow(0, start, len);  // [len, n_heads, head_dim]
      if (len <= kSmallQuery && cpu_loops) {
        // Decode steps: one loop over (query, head). torch's CPU flash kernel costs milliseconds per call for
        // one query, and the matmul formulation below is ~8 small ops per layer.
        detail::attend_cpu(q.narrow(0, start, len), cache.k[l], cache.v[l], g.p0, scale, rows_out);
        start += len;
        continue;
      }
      at::Tensor K = cache.k[l].narrow(1, 0, T).unsqueeze(0);  // [1, n_kv_heads, T, head_dim]
      at::Tensor V = cache.v[l].narrow(1, 0, T).unsqueeze(0);  // [1, n_kv_heads, T, head_dim]
      at::Tensor Q = q.narrow(0, start, len).transpose(0, 1).unsqueeze(0);  // [1, n_heads, len, head_dim]
      at::Tensor o;  // [n_heads, len, head_dim]
      if (len <= kSmallQuery) {
        // Short chunks off the CPU kernels' dtypes: plain matmuls, on this thread (an intra-op parallel region
        // costs more than these tiny ops, milliseconds when the cores are shared).
        c10::ParallelGuard serial(true);
        const std::int64_t group = nh / kvh;  // query heads per kv head (HF repeat_kv order)
        at::Tensor Qg = Q[0].reshape({kvh, group * len, hd});                  // [n_kv_heads, group * len, head_dim]
        at::Tensor scores = at::matmul(Qg, K[0].transpose(1, 2)) * scale;     // [n_kv_heads, group * len, T]
        if (len > 1) {
          at::Tensor qpos = at::arange(g.p0, T, long_opts.device(dev)).unsqueeze(1);  // [len, 1]
          at::Tensor kpos = at::arange(0, T, long_opts.device(dev)).unsqueeze(0);     // [1, T]
          at::Tensor hide = (kpos > qpos).repeat({group, 1});                         // [group * len, T]
          scores = scores.masked_fill(hide, -std::numeric_limits<float>::infinity());
        }
        at::Tensor probs = at::softmax(scores, -1, at::kFloat).to(scores.scalar_type());  // [n_kv_heads, group*len, T]
        o = at::matmul(probs, V[0]).view({nh, len, hd});                                    // [n_heads, len, head_dim]
      } else {
        std::optional<at::Tensor> mask;
        bool causal = false;
        if (g.p0 == 0) {
          causal = true;
        } else {
          // query i (position p0 + i) sees keys 0..p0 + i
          at::Tensor qpos = at::arange(g.p0, T, long_opts.device(dev)).unsqueeze(1);  // [len, 1]
          at::Tensor kpos = at::arange(0, T, long_opts.device(dev)).unsqueeze(0);     // [1, T]
          mask = kpos <= qpos;                                                         // [len, T]
        }
        o = at::scaled_dot_product_attention(Q, K, V, mask, 0.0, causal, scale,
                                             /*enable_gqa=*/nh != kvh)[0];  // [n_heads, len, head_dim]
      }
      rows_out.copy_(o.transpose(0, 1));
      start += len;
    }
    x.add_(detail::linear(attn.view({N, nh * hd}), L.wo));  // [n, dim]
    h = norm(x, L.ffn_norm);                                // [n, dim]
    at::Tensor gu = detail::linear(h, L.w13);               // [n, 2 hidden_dim] (gate, up)
    at::Tensor ff;                                          // [n, hidden_dim]
    if (kernels) {
      ff = detail::silu_mul_cpu(gu);
    } else {
      const std::int64_t H = L.w1.size(0);
      ff = at::silu(gu.narrow(1, 0, H)) * gu.narrow(1, H, H);
    }
    x.add_(detail::linear(ff, L.w2));  // [n, dim]
    if (l + 1 < c.n_layers && wanted(l + 1)) hidden[l + 1] = x.index_select(0, rows);
  }
  at::Tensor xo = norm(x.index_select(0, rows), W.norm);  // [n_out, dim]
  if (wanted(c.n_layers)) hidden[c.n_layers] = xo;
  if (options.logits) out.logits = detail::linear(xo, W.output).to(at::kFloat).cpu().contiguous();  // [n_out, vocab]
  for (int layer : options.hidden_layers) out.hidden.push_back(hidden[layer].to(at::kFloat).cpu().contiguous());

  for (const Group& g : groups) seqs_[g.seq].len = g.p0 + static_cast<std::int64_t>(g.idx.size());
  return out;
}

}  // namespace crossicl
