// llama2.c legacy (v0) checkpoints: 7 int32 header fields, then fp32 tensors in a fixed order.
#include <cstring>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "crossicl/core/error.h"
#include "crossicl/engine/weights.h"
#include "detail/engine_mmap.h"
#include "detail/engine_ops.h"

namespace crossicl {
Weights load_llama2c(const std::string& path, c10::ScalarType dtype) {
  using detail::checked_mul;
  auto file = detail::MappedFile::open(path);
  constexpr std::size_t kHeader = 7 * sizeof(std::int32_t);
  if (file->size() < kHeader)
    throw LoadError(fmt::format("{}: file too small for the llama2.c header (expected at least {} bytes, got {})",
                                path, kHeader, file->size()));
  std::int32_t h[7];
  std::memcpy(h, file->data(), kHeader);
  for (int i = 0; i < 7; ++i) {
    if (i != 5 && h[i] <= 0)
      throw LoadError(fmt::format("{}: header field {} must be > 0 (got {}; header dim={}, hidden_dim={}, "
                                  "n_layers={}, n_heads={}, n_kv_heads={}, vocab_size={}, seq_len={})",
                                  path, i, h[i], h[0], h[1], h[2], h[3], h[4], h[5], h[6]));
  }
  if (h[5] == 0 || h[5] == INT32_MIN) throw LoadError(fmt::format("{}: header vocab_size is {}", path, h[5]));

  Weights w;
  Config& c = w.config;
  c.dim = h[0];
  c.hidden_dim = h[1];
  c.n_layers = h[2];
  c.n_heads = h[3];
  c.n_kv_heads = h[4];
  c.vocab_size = h[5] < 0 ? -static_cast<std::int64_t>(h[5]) : h[5];
  c.max_seq_len = h[6];
  c.norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  c.tie_word_embeddings = h[5] > 0;
  c.bos_id = 1;
  c.eos_ids = {2};
  c.validate(path);
  w.dtype = dtype;

  const std::uint64_t L = c.n_layers, dim = c.dim, hidden = c.hidden_dim, hd = c.head_dim;
  const std::uint64_t q_dim = checked_mul(c.n_heads, hd, path), kv_dim = checked_mul(c.n_kv_heads, hd, path);
  // Element counts of the stored blocks, in file order.
  struct Block {
    const char* name;
    std::uint64_t count;
  };
  const Block blocks[] = {
      {"token_embedding", checked_mul(c.vocab_size, dim, path)},
      {"rms_att", checked_mul(L, dim, path)},
      {"wq", checked_mul(L, checked_mul(q_dim, dim, path), path)},
      {"wk", checked_mul(L, checked_mul(kv_dim, dim, path), path)},
      {"wv", checked_mul(L, checked_mul(kv_dim, dim, path), path)},
      {"wo", checked_mul(L, checked_mul(dim, q_dim, path), path)},
      {"rms_ffn", checked_mul(L, dim, path)},
      {"w1", checked_mul(L, checked_mul(hidden, dim, path), path)},
      {"w2", checked_mul(L, checked_mul(dim, hidden, path), path)},
      {"w3", checked_mul(L, checked_mul(hidden, dim, path), path)},
      {"rms_final", dim},
      {"freq_cis_real", checked_mul(c.max_seq_len, hd / 2, path)},
      {"freq_cis_imag", checked_mul(c.max_seq_len, hd / 2, path)},
      {"wcls", c.tie_word_embeddings ? 0 : checked_mul(c.vocab_size, dim, path)},
  };
  std::uint64_t expected = kHeader;
  std::uint64_t offsets[std::size(blocks)];
  for (std::size_t i = 0; i < std::size(blocks); ++i) {
    offsets[i] = expected;
    const std::uint64_t bytes = checked_mul(blocks[i].count, sizeof(float), path);
    if (__builtin_add_overflow(expected, bytes, &expected))
      throw LoadError(fmt::format("{}: tensor sizes overflow", path));
  }
  if (expected != file->size())
    throw LoadError(fmt::format("{}: llama2.c checkpoint size mismatch for the header (dim={}, hidden_dim={}, "
                                "n_layers={}, n_heads={}, n_kv_heads={}, vocab_size={}, seq_len={}): expected {} "
                                "bytes, got {}",
                                path, h[0], h[1], h[2], h[3], h[4], h[5], h[6], expected, file->size()));

  auto block = [&](int i, std::vector<std::int64_t> shape) {
    return detail::mapped_tensor(file, offsets[i], shape, at::kFloat, dtype);
  };
  const std::int64_t Li = c.n_layers;
  w.tok_embeddings = block(0, {c.vocab_size, c.dim});
  at::Tensor rms_att = block(1, {Li, c.dim});
  at::Tensor wq = block(2, {Li, static_cast<std::int64_t>(q_dim), c.dim});
  at::Tensor wk = block(3, {Li, static_cast<std::int64_t>(kv_dim), c.dim});
  at::Tensor wv = block(4, {Li, static_cast<std::int64_t>(kv_dim), c.dim});
  at::Tensor wo = block(5, {Li, c.dim, static_cast<std::int64_t>(q_dim)});
  at::Tensor rms_ffn = block(6, {Li, c.dim});
  at::Tensor w1 = block(7, {Li, c.hidden_dim, c.dim});
  at::Tensor w2 = block(8, {Li, c.dim, c.hidden_dim});
  at::Tensor w3 = block(9, {Li, c.hidden_dim, c.dim});
  w.norm = block(10, {c.dim});
  w.output = c.tie_word_embeddings ? w.tok_embeddings : block(13, {c.vocab_size, c.dim});
  for (std::int64_t l = 0; l < Li; ++l) {
    LayerWeights lw;
    lw.attention_norm = rms_att[l];
    lw.wq = detail::interleaved_to_half(wq[l], c.n_heads, c.head_dim);
    lw.wk = detail::interleaved_to_half(wk[l], c.n_kv_heads, c.head_dim);
    lw.wv = wv[l];
    lw.wo = wo[l];
    lw.ffn_norm = rms_ffn[l];
    lw.w1 = w1[l];
    lw.w2 = w2[l];
    lw.w3 = w3[l];
    w.layers.push_back(std::move(lw));
  }
  return w;
}

}  // namespace crossicl
