// The header of a llama2.c legacy (v0) checkpoint and the layout it implies, computed and checked without torch
// (load_llama2c in llama2c.cpp maps the tensors; tests/fuzz/fuzz_llama2c.cpp fuzzes it). Layout: 7 int32 fields
// (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len), then fp32 blocks in a fixed order; a
// negative vocab_size means an untied classifier (wcls) follows the RoPE tables.
//
//   auto map = detail::MappedFile::open(path);
//   detail::Llama2cLayout l = detail::parse_llama2c_header(map->data(), map->size(), path);
//   // l.offsets[kLlama2cWq] = byte offset of wq, [n_layers, n_heads * head_dim, dim] floats
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "crossicl/engine/config.h"

namespace crossicl::detail {

/// The fp32 blocks of a llama2.c checkpoint, in file order.
enum Llama2cBlock {
  kLlama2cTokenEmbedding, kLlama2cRmsAtt, kLlama2cWq, kLlama2cWk, kLlama2cWv, kLlama2cWo, kLlama2cRmsFfn,
  kLlama2cW1, kLlama2cW2, kLlama2cW3, kLlama2cRmsFinal, kLlama2cFreqCisReal, kLlama2cFreqCisImag, kLlama2cWcls,
  kLlama2cBlockCount
};

/// A checked header: the config it gives (validated) and where each block starts.
struct Llama2cLayout {
  Config config;                                // norm_eps 1e-5, rope_theta 10000, bos 1, eos {2}
  std::int64_t q_dim = 0, kv_dim = 0;           // n_heads * head_dim, n_kv_heads * head_dim
  std::uint64_t offsets[kLlama2cBlockCount]{};  // byte offset of each block (wcls: only when untied)
};

/// Header size in bytes (7 int32 fields).
inline constexpr std::size_t kLlama2cHeaderBytes = 7 * sizeof(std::int32_t);

/// Parses the header of the file image [data, data + size) and checks that the file holds exactly the blocks it
/// announces. Throws LoadError naming `path` and the header fields (a field <= 0, a size overflow, a file size
/// other than the expected one, an invalid config).
Llama2cLayout parse_llama2c_header(const std::uint8_t* data, std::size_t size, const std::string& path);

}  // namespace crossicl::detail
