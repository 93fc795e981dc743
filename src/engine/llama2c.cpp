// llama2.c legacy (v0) checkpoints: 7 int32 header fields, then fp32 tensors in a fixed order (the header and
// the layout it implies are checked by detail/llama2c_header.h).
#include <ATen/ATen.h>
#include <fmt/format.h>

#include "crossicl/core/error.h"
#include "crossicl/engine/weights.h"
#include "detail/engine_mmap.h"
#include "detail/engine_ops.h"
#include "detail/llama2c_header.h"

namespace crossicl {
Weights load_llama2c(const std::string& path, c10::ScalarType dtype) {
  auto file = detail::MappedFile::open(path);
  const detail::Llama2cLayout layout = detail::parse_llama2c_header(file->data(), file->size(), path);
  Weights w;
  w.config = layout.config;
  w.dtype = dtype;
  const Config& c = w.config;

  auto block = [&](detail::Llama2cBlock i, std::vector<std::int64_t> shape) {
    return detail::mapped_tensor(file, layout.offsets[i], shape, at::kFloat, dtype);
  };
  const std::int64_t Li = c.n_layers;
  w.tok_embeddings = block(detail::kLlama2cTokenEmbedding, {c.vocab_size, c.dim});
  at::Tensor rms_att = block(detail::kLlama2cRmsAtt, {Li, c.dim});
  at::Tensor wq = block(detail::kLlama2cWq, {Li, layout.q_dim, c.dim});
  at::Tensor wk = block(detail::kLlama2cWk, {Li, layout.kv_dim, c.dim});
  at::Tensor wv = block(detail::kLlama2cWv, {Li, layout.kv_dim, c.dim});
  at::Tensor wo = block(detail::kLlama2cWo, {Li, c.dim, layout.q_dim});
  at::Tensor rms_ffn = block(detail::kLlama2cRmsFfn, {Li, c.dim});
  at::Tensor w1 = block(detail::kLlama2cW1, {Li, c.hidden_dim, c.dim});
  at::Tensor w2 = block(detail::kLlama2cW2, {Li, c.dim, c.hidden_dim});
  at::Tensor w3 = block(detail::kLlama2cW3, {Li, c.hidden_dim, c.dim});
  w.norm = block(detail::kLlama2cRmsFinal, {c.dim});
  w.output = c.tie_word_embeddings ? w.tok_embeddings : block(detail::kLlama2cWcls, {c.vocab_size, c.dim});
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
