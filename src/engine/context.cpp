#include "crossicl/engine/context.h"

#include <algorithm>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "crossicl/core/error.h"
#include "detail/engine_transformer.h"

namespace crossicl {

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

void Context::seq_truncate(std::int32_t seq, std::int64_t n) {
  auto it = seqs_.find(seq);
  if (it == seqs_.end()) return;
  if (n < 0) throw InvalidArgument(fmt::format("seq_truncate: n must be >= 0 (n={})", n));
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
    seq_truncate(src, n);
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
  // elements = n * n_layers * 2 * n_kv_heads * head_dim, checked: a wrapped product would size a small buffer
  // that the rooms handed out later overrun
  std::int64_t elements = n;
  for (const std::int64_t f : {c.n_layers, std::int64_t{2}, c.n_kv_heads, c.head_dim})
    if (__builtin_mul_overflow(elements, f, &elements))
      throw InvalidArgument(fmt::format("reserve_arena: n * n_layers * 2 * n_kv_heads * head_dim overflows int64 "
                                        "(n={}, n_layers={}, n_kv_heads={}, head_dim={})",
                                        n, c.n_layers, c.n_kv_heads, c.head_dim));
  arena_ = n == 0 ? at::Tensor()
                  : at::empty({elements}, at::TensorOptions().dtype(model_->dtype()).device(model_->device()));
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
  // Check the batch against the cache (throwing before anything changes) and pack it.
  const detail::BatchPlan plan = detail::plan_batch(batch, options, model_->config(), n_ctx_,
                                                    [this](std::int32_t seq) { return seq_len(seq); });
  // Room in each sequence's cache for its new positions.
  std::vector<detail::SeqKv> kv;
  kv.reserve(plan.seqs.size());
  for (const detail::SeqSpan& s : plan.seqs) {
    SeqCache& cache = seqs_[s.seq];
    reserve(cache, s.p0 + s.len);
    kv.push_back({&cache.k, &cache.v});
  }
  DecodeOutput out = detail::forward(*model_, plan, kv, options);
  for (const detail::SeqSpan& s : plan.seqs) seqs_[s.seq].len = s.p0 + s.len;
  return out;
}

}  // namespace crossicl
