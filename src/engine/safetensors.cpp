// HF model directories: config.json + model.safetensors (or model.safetensors.index.json + shards).
// safetensors layout: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets}},
// then the data; offsets are relative to the start of the data.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <cstring>

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "crossicl/core/error.h"
#include "crossicl/engine/weights.h"
#include "detail/engine_mmap.h"

namespace crossicl {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct StEntry {
  std::string dtype_name;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0, end = 0;  // byte range relative to the data section
};

struct StFile {
  std::shared_ptr<detail::MappedFile> file;
  std::uint64_t data_start = 0;
  std::map<std::string, StEntry> entries;
};

std::uint64_t dtype_size(const std::string& d) {
  if (d == "F64" || d == "I64" || d == "U64") return 8;
  if (d == "F32" || d == "I32" || d == "U32") return 4;
  if (d == "F16" || d == "BF16" || d == "I16" || d == "U16") return 2;
  if (d == "I8" || d == "U8" || d == "BOOL" || d == "F8_E4M3" || d == "F8_E5M2") return 1;
  return 0;
}

StFile parse_safetensors(const std::string& path) {
  StFile st;
  st.file = detail::MappedFile::open(path);
  const std::uint64_t size = st.file->size();
  if (size < 8)
    throw LoadError(fmt::format("{}: too small for a safetensors header (expected at least 8 bytes, got {})", path,
                                size));
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | st.file->data()[i];
  if (n > size - 8)
    throw LoadError(fmt::format("{}: safetensors header length {} exceeds the file ({} bytes after the length)", path,
                                n, size - 8));
  st.data_start = 8 + n;
  const std::uint64_t data_size = size - st.data_start;
  json header;
  try {
    header = json::parse(st.file->data() + 8, st.file->data() + 8 + n);
  } catch (const json::exception& e) {
    throw LoadError(fmt::format("{}: invalid safetensors JSON header: {}", path, e.what()));
  }
  if (!header.is_object()) throw LoadError(fmt::format("{}: safetensors header is not a JSON object", path));
  std::vector<std::pair<std::string, const StEntry*>> by_offset;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    const std::string& name = it.key();
    const json& t = it.value();
    if (!t.is_object() || !t.contains("dtype") || !t.contains("shape") || !t.contains("data_offsets") ||
        !t["dtype"].is_string() || !t["shape"].is_array() || !t["data_offsets"].is_array() ||
        t["data_offsets"].size() != 2)
      throw LoadError(fmt::format("{}: tensor '{}': malformed header entry {}", path, name, t.dump()));
    StEntry e;
    e.dtype_name = t["dtype"].get<std::string>();
    const std::uint64_t elem = dtype_size(e.dtype_name);
    if (elem == 0) throw LoadError(fmt::format("{}: tensor '{}': unknown dtype '{}'", path, name, e.dtype_name));
    std::uint64_t numel = 1;
    for (const auto& d : t["shape"]) {
      if (!d.is_number_unsigned())
        throw LoadError(fmt::format("{}: tensor '{}': bad shape {}", path, name, t["shape"].dump()));
      const std::uint64_t dim = d.get<std::uint64_t>();
      if (dim > static_cast<std::uint64_t>(INT64_MAX))
        throw LoadError(fmt::format("{}: tensor '{}': bad shape {}", path, name, t["shape"].dump()));
      e.shape.push_back(static_cast<std::int64_t>(dim));
      numel = detail::checked_mul(numel, dim, fmt::format("{}: tensor '{}'", path, name));
    }
    const json& off = t["data_offsets"];
    if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      throw LoadError(fmt::format("{}: tensor '{}': bad data_offsets {}", path, name, off.dump()));
    e.begin = off[0].get<std::uint64_t>();
    e.end = off[1].get<std::uint64_t>();
    if (!(e.begin <= e.end && e.end <= data_size))
      throw LoadError(fmt::format("{}: tensor '{}': data_offsets [{}, {}] outside the data section ({} bytes)", path,
                                  name, e.begin, e.end, data_size));
    const std::uint64_t bytes = detail::checked_mul(numel, elem, fmt::format("{}: tensor '{}'", path, name));
    if (bytes != e.end - e.begin)
      throw LoadError(fmt::format("{}: tensor '{}': {} {} needs {} bytes but data_offsets span {}", path, name,
                                  e.dtype_name, t["shape"].dump(), bytes, e.end - e.begin));
    st.entries.emplace(name, std::move(e));
  }
  for (const auto& [name, e] : st.entries) by_offset.emplace_back(name, &e);
  std::sort(by_offset.begin(), by_offset.end(), [](const auto& a, const auto& b) {
    return a.second->begin != b.second->begin ? a.second->begin < b.second->begin : a.second->end < b.second->end;
  });
  for (std::size_t i = 1; i < by_offset.size(); ++i) {
    const auto& [pn, p] = by_offset[i - 1];
    const auto& [cn, cur] = by_offset[i];
    if (cur->begin < p->end)
      throw LoadError(fmt::format("{}: tensors '{}' [{}, {}] and '{}' [{}, {}] overlap", path, pn, p->begin, p->end,
                                  cn, cur->begin, cur->end));
  }
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
    std::ifstream in(index_path);
    json idx;
    try {
      idx = json::parse(in);
    } catch (const json::exception& e) {
      throw LoadError(fmt::format("{}: invalid JSON: {}", index_path.string(), e.what()));
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
    for (const auto& [name, e] : files.begin()->second.entries) owner[name] = "model.safetensors";
  } else {
    throw LoadError(fmt::format("{}: neither model.safetensors nor model.safetensors.index.json found", dir));
  }

  auto get = [&](const std::string& name, std::vector<std::int64_t> shape) {
    auto o = owner.find(name);
    if (o == owner.end()) throw LoadError(fmt::format("{}: tensor '{}' not found", dir, name));
    const StFile& f = files.at(o->second);
    auto e = f.entries.find(name);
    if (e == f.entries.end())
      throw LoadError(fmt::format("{}: tensor '{}' is listed for this shard but missing", f.file->path(), name));
    if (e->second.shape != shape)
      throw LoadError(fmt::format("{}: tensor '{}' has shape {}, expected {} from config.json", f.file->path(), name,
                                  shape_str(e->second.shape), shape_str(shape)));
    const c10::ScalarType stored = float_dtype(e->second.dtype_name, f.file->path(), name);
    return detail::mapped_tensor(f.file, f.data_start + e->second.begin, shape, stored, dtype);
  };

  const std::int64_t q_dim = c.n_heads * c.head_dim, kv_dim = c.n_kv_heads * c.head_dim;
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
