// Helpers for the engine tests: temporary directories and hand-written safetensors files.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace crossicl::test {

/// A fresh directory under the system temp dir, removed on destruction.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& tag) {
    static int counter = 0;
    path = std::filesystem::temp_directory_path() / fmt::format("crossicl_{}_{}_{}", tag, ::getpid(), counter++);
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string str(const std::string& rel = "") const { return rel.empty() ? path.string() : (path / rel).string(); }
};

/// One tensor of a hand-written safetensors file (F32 data; offsets computed unless overridden).
struct StTensor {
  std::string name;
  std::vector<std::int64_t> shape;
  std::vector<float> data;
  std::int64_t begin = -1, end = -1;  // -1 = packed after the previous tensor
};

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

/// Writes a safetensors file; `header_len_override` >= 0 replaces the length prefix, `data_bytes` >= 0 cuts or
/// pads the data section.
inline void write_safetensors(const std::string& path, const std::vector<StTensor>& tensors,
                              std::int64_t header_len_override = -1, std::int64_t data_bytes = -1) {
  nlohmann::json header = nlohmann::json::object();
  std::string data;
  std::int64_t cursor = 0;
  for (const auto& t : tensors) {
    const std::int64_t nbytes = static_cast<std::int64_t>(t.data.size() * sizeof(float));
    const std::int64_t b = t.begin >= 0 ? t.begin : cursor;
    const std::int64_t e = t.end >= 0 ? t.end : b + nbytes;
    header[t.name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {b, e}}};
    if (static_cast<std::int64_t>(data.size()) < b + nbytes) data.resize(b + nbytes);
    std::memcpy(data.data() + b, t.data.data(), nbytes);
    cursor = std::max(cursor, b + nbytes);
  }
  if (data_bytes >= 0) data.resize(data_bytes);
  std::string h = header.dump();
  while (h.size() % 8) h += ' ';
  std::uint64_t n = header_len_override >= 0 ? static_cast<std::uint64_t>(header_len_override) : h.size();
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  write_file(path, bytes + h + data);
}

/// config.json of a tiny LLaMA: dim 8, hidden 12, 1 layer, 2 heads, 1 kv head, vocab 10, window 32.
inline nlohmann::json tiny_config() {
  return {{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}, {"hidden_size", 8},
          {"intermediate_size", 12}, {"num_hidden_layers", 1}, {"num_attention_heads", 2},
          {"num_key_value_heads", 1}, {"vocab_size", 10}, {"max_position_embeddings", 32},
          {"rms_norm_eps", 1e-5}, {"tie_word_embeddings", true}};
}

/// Random tensors of tiny_config() with HF names.
inline std::vector<StTensor> tiny_tensors(unsigned seed = 1) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 0.3f);
  auto make = [&](const std::string& name, std::vector<std::int64_t> shape, bool ones = false) {
    std::int64_t numel = 1;
    for (auto d : shape) numel *= d;
    StTensor t{name, shape, std::vector<float>(numel)};
    for (auto& x : t.data) x = ones ? 1.f + nd(rng) * 0.1f : nd(rng);
    return t;
  };
  return {make("model.embed_tokens.weight", {10, 8}),
          make("model.layers.0.input_layernorm.weight", {8}, true),
          make("model.layers.0.self_attn.q_proj.weight", {8, 8}),
          make("model.layers.0.self_attn.k_proj.weight", {4, 8}),
          make("model.layers.0.self_attn.v_proj.weight", {4, 8}),
          make("model.layers.0.self_attn.o_proj.weight", {8, 8}),
          make("model.layers.0.post_attention_layernorm.weight", {8}, true),
          make("model.layers.0.mlp.gate_proj.weight", {12, 8}),
          make("model.layers.0.mlp.up_proj.weight", {12, 8}),
          make("model.layers.0.mlp.down_proj.weight", {8, 12}),
          make("model.norm.weight", {8}, true)};
}

/// Writes config.json + model.safetensors of the tiny model into `dir`.
inline void write_tiny_hf(const std::string& dir, const std::vector<StTensor>& tensors,
                          const nlohmann::json& config = tiny_config()) {
  write_file(dir + "/config.json", config.dump());
  write_safetensors(dir + "/model.safetensors", tensors);
}

}  // namespace crossicl::test
