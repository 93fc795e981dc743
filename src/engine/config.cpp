#include "crossicl/engine/config.h"

#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "crossicl/core/error.h"

namespace crossicl {
namespace {

using nlohmann::json;

std::int64_t required_int(const json& j, const char* key, const std::string& path) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer())
    throw LoadError(fmt::format("{}: config field '{}' is missing or not an integer", path, key));
  return it->get<std::int64_t>();
}

double number_or(const json& j, const char* key, double fallback, const std::string& path) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_number()) throw LoadError(fmt::format("{}: config field '{}' is not a number", path, key));
  return it->get<double>();
}

void read_rope_scaling(const json& rs, Config& c, const std::string& path) {
  if (rs.is_null()) return;
  if (!rs.is_object()) throw LoadError(fmt::format("{}: rope_scaling is not an object", path));
  std::string type = rs.value("rope_type", rs.value("type", std::string()));
  if (type.empty() || type == "default") return;
  if (type != "llama3")
    throw LoadError(fmt::format("{}: unsupported rope_scaling type '{}' (supported: llama3)", path, type));
  c.rope_scaling.type = type;
  c.rope_scaling.factor = number_or(rs, "factor", 8.0, path);
  c.rope_scaling.low_freq_factor = number_or(rs, "low_freq_factor", 1.0, path);
  c.rope_scaling.high_freq_factor = number_or(rs, "high_freq_factor", 4.0, path);
  c.rope_scaling.original_max_position_embeddings =
      static_cast<std::int64_t>(number_or(rs, "original_max_position_embeddings", 8192, path));
}

}  // namespace

Config Config::from_hf_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw LoadError(fmt::format("{}: cannot open config.json", path));
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    throw LoadError(fmt::format("{}: invalid JSON: {}", path, e.what()));
  }
  if (!j.is_object()) throw LoadError(fmt::format("{}: config is not a JSON object", path));

  const std::string model_type = j.value("model_type", std::string());
  bool llama = model_type == "llama";
  std::string arch_names;
  if (auto a = j.find("architectures"); a != j.end() && a->is_array()) {
    llama = false;
    for (const auto& name : *a) {
      const std::string n = name.is_string() ? name.get<std::string>() : name.dump();
      arch_names += (arch_names.empty() ? "" : ", ") + n;
      if (n == "LlamaForCausalLM") llama = true;
    }
  }
  if (!llama)
    throw LoadError(fmt::format("{}: unsupported architecture '{}' (model_type '{}'); expected LlamaForCausalLM",
                                path, arch_names, model_type));

  Config c;
  c.dim = required_int(j, "hidden_size", path);
  c.hidden_dim = required_int(j, "intermediate_size", path);
  c.n_layers = required_int(j, "num_hidden_layers", path);
  c.n_heads = required_int(j, "num_attention_heads", path);
  c.n_kv_heads = j.contains("num_key_value_heads") && !j["num_key_value_heads"].is_null()
                     ? required_int(j, "num_key_value_heads", path)
                     : c.n_heads;
  c.vocab_size = required_int(j, "vocab_size", path);
  c.max_seq_len = j.contains("max_position_embeddings") ? required_int(j, "max_position_embeddings", path) : 2048;
  if (j.contains("head_dim") && !j["head_dim"].is_null()) c.head_dim = required_int(j, "head_dim", path);
  c.norm_eps = number_or(j, "rms_norm_eps", 1e-6, path);
  c.rope_theta = number_or(j, "rope_theta", 10000.0, path);
  c.tie_word_embeddings = j.value("tie_word_embeddings", false);
  if (auto r = j.find("rope_scaling"); r != j.end()) read_rope_scaling(*r, c, path);
  // Newer transformers write the RoPE settings under rope_parameters.
  if (auto r = j.find("rope_parameters"); r != j.end() && r->is_object()) {
    c.rope_theta = number_or(*r, "rope_theta", c.rope_theta, path);
    read_rope_scaling(*r, c, path);
  }
  if (j.value("attention_bias", false)) throw LoadError(fmt::format("{}: attention_bias=true is not supported", path));
  if (j.value("mlp_bias", false)) throw LoadError(fmt::format("{}: mlp_bias=true is not supported", path));
  const std::string act = j.value("hidden_act", std::string("silu"));
  if (act != "silu") throw LoadError(fmt::format("{}: unsupported hidden_act '{}' (expected silu)", path, act));
  if (auto b = j.find("bos_token_id"); b != j.end() && b->is_number_integer()) c.bos_id = b->get<std::int32_t>();
  if (auto e = j.find("eos_token_id"); e != j.end()) {
    if (e->is_number_integer()) c.eos_ids.push_back(e->get<std::int32_t>());
    if (e->is_array())
      for (const auto& x : *e)
        if (x.is_number_integer()) c.eos_ids.push_back(x.get<std::int32_t>());
  }
  c.validate(path);
  return c;
}

void Config::validate(const std::string& source) {
  if (dim <= 0 || hidden_dim <= 0 || n_layers <= 0 || n_heads <= 0 || n_kv_heads <= 0 || vocab_size <= 0 ||
      max_seq_len <= 0)
    throw LoadError(fmt::format(
        "{}: sizes must be > 0 (dim={}, hidden_dim={}, n_layers={}, n_heads={}, n_kv_heads={}, vocab_size={}, "
        "max_seq_len={})",
        source, dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, max_seq_len));
  if (head_dim == 0) {
    if (dim % n_heads != 0)
      throw LoadError(fmt::format("{}: dim must be divisible by n_heads (dim={}, n_heads={})", source, dim, n_heads));
    head_dim = dim / n_heads;
  }
  if (head_dim <= 0 || head_dim % 2 != 0)
    throw LoadError(fmt::format("{}: head_dim must be even and > 0 (head_dim={})", source, head_dim));
  if (n_heads % n_kv_heads != 0)
    throw LoadError(fmt::format("{}: n_heads must be a multiple of n_kv_heads (n_heads={}, n_kv_heads={})", source,
                                n_heads, n_kv_heads));
  if (!(norm_eps > 0)) throw LoadError(fmt::format("{}: norm_eps must be > 0 (norm_eps={})", source, norm_eps));
  if (!(rope_theta > 0)) throw LoadError(fmt::format("{}: rope_theta must be > 0 (rope_theta={})", source, rope_theta));
  if (rope_scaling.type == "llama3" &&
      (!(rope_scaling.factor > 0) || rope_scaling.high_freq_factor == rope_scaling.low_freq_factor ||
       rope_scaling.original_max_position_embeddings <= 0))
    throw LoadError(fmt::format("{}: invalid llama3 rope_scaling (factor={}, low_freq_factor={}, high_freq_factor={})",
                                source, rope_scaling.factor, rope_scaling.low_freq_factor,
                                rope_scaling.high_freq_factor));
}

}  // namespace crossicl
