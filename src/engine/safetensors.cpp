// HF model directories: config.json + model.safetensors (or model.safetensors.index.json + shards). The header
// of each safetensors file is parsed and checked by detail/safetensors_header.h.
#include <filesystem>
#include <map>

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "crossicl/core/error.h"
#include "crossicl/engine/weights.h"
#include "detail/engine_mmap.h"
#include "detail/io.h"
#include "detail/json.h"
#include "detail/safetensors_header.h"

namespace crossicl {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// A mapped shard and its checked header.
struct StFile {
  std::shared_ptr<detail::MappedFile> file;
  detail::SafetensorsHeader header;
};

StFile parse_safetensors(const std::string& path) {
  StFile st;
  st.file = detail::MappedFile::open(path);
  st.header = detail::parse_safetensors_header(st.file->data(), st.file->size(), path);
  return st;
}

c10::ScalarType float_dtype(const std::string& d, const std::string& path, const std::string& name) {
  if (d == "F32") return at::kFloat;
  if (d == "F16") return at::kHalf;
  if (d == "BF16") return at::kBFloat16;
  throw LoadError(fmt::format("{}: tensor '{}' has dtype {} (supported: F32, F16, BF16)", path, name, d));
}

std::string shape_str(c10::IntArrayRef s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

}  // namespace

Weights load_hf_dir(const std::string& dir, c10::ScalarType dtype) {
  const fs::path root(dir);
  if (!fs::is_directory(root)) throw LoadError(fmt::format("{}: not a directory", dir));
  const fs::path config_path = root / "config.json";
  if (!fs::exists(config_path)) throw LoadError(fmt::format("{}: missing config.json", dir));
  Weights w;
  w.config = Config::from_hf_json(config_path.string());
  w.dtype = dtype;
  const Config& c = w.config;

  std::map<std::string, StFile> files;           // file name -> parsed file
  std::map<std::string, std::string> owner;      // tensor name -> file name
  const fs::path index_path = root / "model.safetensors.index.json";
  const fs::path single_path = root / "model.safetensors";
  if (fs::exists(index_path)) {
    json idx;
    try {
      idx = detail::parse_json(detail::read_file(index_path.string()), index_path.string());
    } catch (const json::exception& e) {
      throw LoadError(fmt::format("{}: invalid JSON: {}", index_path.string(), detail::utf8_lossy(e.what())));
    }
    if (!idx.is_object() || !idx.contains("weight_map") || !idx["weight_map"].is_object())
      throw LoadError(fmt::format("{}: no weight_map object", index_path.string()));
    for (auto it = idx["weight_map"].begin(); it != idx["weight_map"].end(); ++it) {
      if (!it.value().is_string())
        throw LoadError(fmt::format("{}: weight_map entry '{}' is not a file name", index_path.string(), it.key()));
      const std::string file = it.value().get<std::string>();
      if (file.find('/') != std::string::npos || file == "..")
        throw LoadError(fmt::format("{}: shard name '{}' is not a plain file name", index_path.string(), file));
      owner[it.key()] = file;
      if (!files.count(file)) files.emplace(file, parse_safetensors((root / file).string()));
    }
  } else if (fs::exists(single_path)) {
    files.emplace("model.safetensors", parse_safetensors(single_path.string()));
    for (const auto& [name, e] : files.begin()->second.header.entries) owner[name] = "model.safetensors";
  } else {
    throw LoadError(fmt::format("{}: neither model.safetensors nor model.safetensors.index.json found", dir));
  }

  auto get = [&](const std::string& name, std::vector<std::int64_t> shape) {
    auto o = owner.find(name);
    if (o == owner.end()) throw LoadError(fmt::format("{}: tensor '{}' not found", dir, name));
    const StFile& f = files.at(o->second);
    auto e = f.header.entries.find(name);
    if (e == f.header.entries.end())
      throw LoadError(fmt::format("{}: tensor '{}' is listed for this shard but missing", f.file->path(), name));
    if (e->second.shape != shape)
      throw LoadError(fmt::format("{}: tensor '{}' has shape {}, expected {} from config.json", f.file->path(), name,
                                  shape_str(e->second.shape), shape_str(shape)));
    const c10::ScalarType stored = float_dtype(e->second.dtype, f.file->path(), name);
    return detail::mapped_tensor(f.file, f.header.data_start + e->second.begin, shape, stored, dtype);
  };

  const std::string cfg = config_path.string();
  const std::int64_t q_dim = detail::checked_dim_product(c.n_heads, c.head_dim, cfg, "n_heads * head_dim");
  const std::int64_t kv_dim = detail::checked_dim_product(c.n_kv_heads, c.head_dim, cfg, "n_kv_heads * head_dim");
  w.tok_embeddings = get("model.embed_tokens.weight", {c.vocab_size, c.dim});
  for (std::int64_t l = 0; l < c.n_layers; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    LayerWeights lw;
    lw.attention_norm = get(p + "input_layernorm.weight", {c.dim});
    lw.wq = get(p + "self_attn.q_proj.weight", {q_dim, c.dim});
    lw.wk = get(p + "self_attn.k_proj.weight", {kv_dim, c.dim});
    lw.wv = get(p + "self_attn.v_proj.weight", {kv_dim, c.dim});
    lw.wo = get(p + "self_attn.o_proj.weight", {c.dim, q_dim});
    lw.ffn_norm = get(p + "post_attention_layernorm.weight", {c.dim});
    lw.w1 = get(p + "mlp.gate_proj.weight", {c.hidden_dim, c.dim});
    lw.w2 = get(p + "mlp.down_proj.weight", {c.dim, c.hidden_dim});
    lw.w3 = get(p + "mlp.up_proj.weight", {c.hidden_dim, c.dim});
    w.layers.push_back(std::move(lw));
  }
  w.norm = get("model.norm.weight", {c.dim});
  w.output = c.tie_word_embeddings ? w.tok_embeddings : get("lm_head.weight", {c.vocab_size, c.dim});
  return w;
}

}  // namespace crossicl
