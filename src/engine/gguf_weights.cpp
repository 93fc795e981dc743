// GGUF checkpoints of the "llama" architecture: config from `llama.*` metadata, tensors by llama.cpp's names,
// dequantised on load to the engine's dtype (F32/F16/BF16 tensors whose dtype matches are views of the mapping).
// llama.cpp's converter stores wq/wk with each head's rows interleaved (Meta's layout, as llama2.c); they are
// reordered for the forward pass's rotate_half exactly as llama2.c checkpoints are.
#include <filesystem>
#include <fstream>

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "crossicl/core/error.h"
#include "crossicl/engine/gguf.h"
#include "crossicl/engine/weights.h"
#include "detail/engine_mmap.h"
#include "detail/engine_ops.h"

namespace crossicl {

namespace {

std::int64_t meta_int(const GGUFReader& g, const std::string& key, std::int64_t fallback = -1) {
  if (!g.has(key)) {
    if (fallback >= 0) return fallback;
    throw LoadError(fmt::format("{}: missing metadata '{}'", g.path(), key));
  }
  return g.get_int(key);
}

// One tensor as [numpy shape] in `dtype`; a view of the mapping when no conversion is needed.
at::Tensor gguf_tensor(const GGUFReader& g, const std::shared_ptr<detail::MappedFile>& file, const std::string& name,
                       std::vector<std::int64_t> expected, c10::ScalarType dtype) {
  const GGUFTensorInfo& t = g.tensor(name);
  std::vector<std::int64_t> shape(t.shape.rbegin(), t.shape.rend());
  if (shape != expected)
    throw LoadError(fmt::format("{}: tensor '{}' has shape [{}], expected [{}]", g.path(), name,
                                fmt::join(shape, ", "), fmt::join(expected, ", ")));
  switch (t.type) {
    case GGMLType::F32: return detail::mapped_tensor(file, t.offset, shape, at::kFloat, dtype);
    case GGMLType::F16: return detail::mapped_tensor(file, t.offset, shape, at::kHalf, dtype);
    case GGMLType::BF16: return detail::mapped_tensor(file, t.offset, shape, at::kBFloat16, dtype);
    default: {
      at::Tensor out = at::empty(shape, at::TensorOptions().dtype(at::kFloat));
      g.read_f32(t, out.data_ptr<float>());
      return dtype == at::kFloat ? out : out.to(dtype);
    }
  }
}

}  // namespace

bool is_gguf_file(const std::string& path) {
  // Only a regular file is opened: opening a FIFO would block until a writer appears.
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return false;
  std::ifstream f(path, std::ios::binary);
  char magic[4] = {};
  return f.read(magic, 4) && std::string(magic, 4) == "GGUF";
}

std::unique_ptr<GGUFFile> GGUFFile::open(const std::string& path) {
  auto map = detail::MappedFile::open(path);
  std::unique_ptr<GGUFFile> f(new GGUFFile());
  f->reader_ = std::make_unique<GGUFReader>(map->data(), map->size(), path);
  f->mapping_ = std::move(map);
  return f;
}

std::unique_ptr<Tokenizer> tokenizer_from_gguf(const std::string& path) {
  auto file = detail::MappedFile::open(path);
  GGUFReader g(file->data(), file->size(), path);
  return Tokenizer::from_vocab(vocab_from_gguf(g));
}

Weights load_gguf(const std::string& path, c10::ScalarType dtype) {
  auto file = detail::MappedFile::open(path);
  GGUFReader g(file->data(), file->size(), path);
  const std::string arch = g.get_string("general.architecture");
  if (arch != "llama")
    throw LoadError(fmt::format("{}: architecture '{}' is not supported (supported: llama)", path, arch));
  for (const char* unsupported : {"llama.rope.scaling.type", "llama.rope.scaling.factor"})
    if (g.has(unsupported) && !(g.value_type(unsupported) == 8 && g.get_string(unsupported) == "none"))
      throw LoadError(fmt::format("{}: metadata '{}' (RoPE scaling stored in GGUF) is not supported", path, unsupported));
  if (g.has_tensor("rope_freqs.weight"))
    throw LoadError(fmt::format("{}: tensor 'rope_freqs.weight' (LLaMA-3.1 RoPE factors) is not supported", path));

  Weights w;
  Config& c = w.config;
  c.dim = meta_int(g, "llama.embedding_length");
  c.hidden_dim = meta_int(g, "llama.feed_forward_length");
  c.n_layers = meta_int(g, "llama.block_count");
  c.n_heads = meta_int(g, "llama.attention.head_count");
  c.n_kv_heads = meta_int(g, "llama.attention.head_count_kv", c.n_heads);
  c.max_seq_len = meta_int(g, "llama.context_length");
  c.head_dim = meta_int(g, "llama.attention.key_length", 0);
  c.norm_eps = g.has("llama.attention.layer_norm_rms_epsilon") ? g.get_float("llama.attention.layer_norm_rms_epsilon") : 1e-5;
  c.rope_theta = g.has("llama.rope.freq_base") ? g.get_float("llama.rope.freq_base") : 10000.0;
  const GGUFTensorInfo& emb = g.tensor("token_embd.weight");
  c.vocab_size = emb.shape.size() == 2 ? emb.shape[1] : 0;
  c.tie_word_embeddings = !g.has_tensor("output.weight");
  // Token ids must name a row of the embedding (checked before narrowing to int32).
  auto token_id = [&](const char* key) -> std::int32_t {
    const std::int64_t id = g.get_int(key);
    if (id < 0 || id >= c.vocab_size)
      throw LoadError(fmt::format("{}: metadata '{}' = {} is outside the vocabulary (size {})", path, key, id,
                                  c.vocab_size));
    return static_cast<std::int32_t>(id);
  };
  c.validate(path);
  c.bos_id = g.has("tokenizer.ggml.bos_token_id") ? token_id("tokenizer.ggml.bos_token_id") : -1;
  if (g.has("tokenizer.ggml.eos_token_id")) c.eos_ids = {token_id("tokenizer.ggml.eos_token_id")};
  w.dtype = dtype;

  const std::int64_t dim = c.dim, hd = c.head_dim;
  const std::int64_t q_dim = detail::checked_dim_product(c.n_heads, hd, path, "n_heads * head_dim");
  const std::int64_t kv_dim = detail::checked_dim_product(c.n_kv_heads, hd, path, "n_kv_heads * head_dim");
  w.tok_embeddings = gguf_tensor(g, file, "token_embd.weight", {c.vocab_size, dim}, dtype);
  w.norm = gguf_tensor(g, file, "output_norm.weight", {dim}, dtype);
  w.output = c.tie_word_embeddings ? w.tok_embeddings : gguf_tensor(g, file, "output.weight", {c.vocab_size, dim}, dtype);
  for (std::int64_t l = 0; l < c.n_layers; ++l) {
    auto name = [&](const char* part) { return fmt::format("blk.{}.{}.weight", l, part); };
    LayerWeights lw;
    lw.attention_norm = gguf_tensor(g, file, name("attn_norm"), {dim}, dtype);
    lw.wq = detail::interleaved_to_half(gguf_tensor(g, file, name("attn_q"), {q_dim, dim}, dtype), c.n_heads, hd);
    lw.wk = detail::interleaved_to_half(gguf_tensor(g, file, name("attn_k"), {kv_dim, dim}, dtype), c.n_kv_heads, hd);
    lw.wv = gguf_tensor(g, file, name("attn_v"), {kv_dim, dim}, dtype);
    lw.wo = gguf_tensor(g, file, name("attn_output"), {dim, q_dim}, dtype);
    lw.ffn_norm = gguf_tensor(g, file, name("ffn_norm"), {dim}, dtype);
    lw.w1 = gguf_tensor(g, file, name("ffn_gate"), {c.hidden_dim, dim}, dtype);
    lw.w2 = gguf_tensor(g, file, name("ffn_down"), {dim, c.hidden_dim}, dtype);
    lw.w3 = gguf_tensor(g, file, name("ffn_up"), {c.hidden_dim, dim}, dtype);
    w.layers.push_back(std::move(lw));
  }
  return w;
}

}  // namespace crossicl
