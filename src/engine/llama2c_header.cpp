#include "detail/llama2c_header.h"

#include <cstring>

#include <fmt/format.h>

#include "crossicl/core/error.h"
#include "detail/checked_size.h"

namespace crossicl::detail {

Llama2cLayout parse_llama2c_header(const std::uint8_t* data, std::size_t size, const std::string& path) {
  if (size < kLlama2cHeaderBytes)
    throw LoadError(fmt::format("{}: file too small for the llama2.c header (expected at least {} bytes, got {})",
                                path, kLlama2cHeaderBytes, size));
  std::int32_t h[7];
  std::memcpy(h, data, kLlama2cHeaderBytes);
  for (int i = 0; i < 7; ++i) {
    if (i != 5 && h[i] <= 0)
      throw LoadError(fmt::format("{}: header field {} must be > 0 (got {}; header dim={}, hidden_dim={}, "
                                  "n_layers={}, n_heads={}, n_kv_heads={}, vocab_size={}, seq_len={})",
                                  path, i, h[i], h[0], h[1], h[2], h[3], h[4], h[5], h[6]));
  }
  if (h[5] == 0 || h[5] == INT32_MIN) throw LoadError(fmt::format("{}: header vocab_size is {}", path, h[5]));

  Llama2cLayout layout;
  Config& c = layout.config;
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

  layout.q_dim = checked_dim_product(c.n_heads, c.head_dim, path, "n_heads * head_dim");
  layout.kv_dim = checked_dim_product(c.n_kv_heads, c.head_dim, path, "n_kv_heads * head_dim");
  const std::uint64_t L = c.n_layers, dim = c.dim, hidden = c.hidden_dim, hd = c.head_dim;
  const std::uint64_t q_dim = layout.q_dim, kv_dim = layout.kv_dim;
  // Element counts of the stored blocks, in file order (Llama2cBlock).
  const std::uint64_t counts[kLlama2cBlockCount] = {
      checked_mul(c.vocab_size, dim, path),
      checked_mul(L, dim, path),
      checked_mul(L, checked_mul(q_dim, dim, path), path),
      checked_mul(L, checked_mul(kv_dim, dim, path), path),
      checked_mul(L, checked_mul(kv_dim, dim, path), path),
      checked_mul(L, checked_mul(dim, q_dim, path), path),
      checked_mul(L, dim, path),
      checked_mul(L, checked_mul(hidden, dim, path), path),
      checked_mul(L, checked_mul(dim, hidden, path), path),
      checked_mul(L, checked_mul(hidden, dim, path), path),
      dim,
      checked_mul(c.max_seq_len, hd / 2, path),
      checked_mul(c.max_seq_len, hd / 2, path),
      c.tie_word_embeddings ? 0 : checked_mul(c.vocab_size, dim, path),
  };
  std::uint64_t expected = kLlama2cHeaderBytes;
  for (int i = 0; i < kLlama2cBlockCount; ++i) {
    layout.offsets[i] = expected;
    const std::uint64_t bytes = checked_mul(counts[i], sizeof(float), path);
    if (__builtin_add_overflow(expected, bytes, &expected))
      throw LoadError(fmt::format("{}: tensor sizes overflow", path));
  }
  if (expected != size)
    throw LoadError(fmt::format("{}: llama2.c checkpoint size mismatch for the header (dim={}, hidden_dim={}, "
                                "n_layers={}, n_heads={}, n_kv_heads={}, vocab_size={}, seq_len={}): expected {} "
                                "bytes, got {}",
                                path, h[0], h[1], h[2], h[3], h[4], h[5], h[6], expected, size));
  return layout;
}

}  // namespace crossicl::detail
