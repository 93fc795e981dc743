#include "crossicl/engine/config.h"

#include <cstdint>
#include <type_traits>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "crossicl/core/error.h"
#include "crossicl/core/limits.h"
#include "detail/io.h"
#include "detail/json.h"

namespace crossicl {
namespace {

using nlohmann::json;

// Largest accepted size of one dimension (dim, hidden_dim, heads, head_dim, n_heads*head_dim, layers): far above
// every real model, and small enough that no product of two or three sizes overflows int64.
constexpr std::int64_t kMaxDimension = std::int64_t{1} << 24;

// A JSON integer as int64; an unsigned value above INT64_MAX is reported instead of wrapping.
bool to_int64(const json& v, std::int64_t& out) {
  if (v.is_number_unsigned()) {
    if (v.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX)) return false;
  } else if (!v.is_number_integer()) {
    return false;
  }
  out = v.get<std::int64_t>();
  return true;
}

std::int64_t required_int(const json& j, const char* key, const std::string& path) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer())
    throw LoadError(fmt::format("{}: config field '{}' is missing or not an integer", path, key));
  std::int64_t v = 0;
  if (!to_int64(*it, v))
    throw LoadError(fmt::format("{}: config field '{}' is out of range ({})", path, key, detail::short_dump(*it)));
  return v;
}

// j[key] as a T (double, bool or std::string), `fallback` when absent or null; a value of another JSON type is a
// LoadError naming the key and the value, not nlohmann's bare type_error.
template <class T>
T value_or(const json& j, const char* key, const T& fallback, const std::string& path) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  const char* kind = "number";
  bool ok = it->is_number();
  if constexpr (std::is_same_v<T, bool>) {
    kind = "boolean";
    ok = it->is_boolean();
  } else if constexpr (std::is_same_v<T, std::string>) {
    kind = "string";
    ok = it->is_string();
  }
  if (!ok)
    throw LoadError(fmt::format("{}: config field '{}' is not a {} ({})", path, key, kind, detail::short_dump(*it)));
  return it->get<T>();
}

double number_or(const json& j, const char* key, double fallback, const std::string& path) {
  return value_or<double>(j, key, fallback, path);
}

bool bool_or(const json& j, const char* key, bool fallback, const std::string& path) {
  return value_or<bool>(j, key, fallback, path);
}

std::string string_or(const json& j, const char* key, const std::string& fallback, const std::string& path) {
  return value_or<std::string>(j, key, fallback, path);
}

// A token id of config.json (bos_token_id, an eos_token_id entry) as an id of the vocabulary.
std::int32_t token_id(const json& v, const char* key, std::int64_t vocab_size, const std::string& path) {
  std::int64_t id = -1;
  if (!to_int64(v, id) || id < 0 || id >= vocab_size)
    throw LoadError(fmt::format("{}: config field '{}' must be a token id in [0, vocab_size={}) (got {})", path, key,
                                vocab_size, detail::short_dump(v)));
  return static_cast<std::int32_t>(id);
}

void read_rope_scaling(const json& rs, Config& c, const std::string& path) {
  if (rs.is_null()) return;
  if (!rs.is_object()) throw LoadError(fmt::format("{}: rope_scaling is not an object", path));
  std::string type = string_or(rs, "rope_type", string_or(rs, "type", std::string(), path), path);
  if (type.empty() || type == "default") return;
  if (type != "llama3")
    throw LoadError(fmt::format("{}: unsupported rope_scaling type '{}' (supported: llama3)", path, type));
  c.rope_scaling.type = type;
  c.rope_scaling.factor = number_or(rs, "factor", 8.0, path);
  c.rope_scaling.low_freq_factor = number_or(rs, "low_freq_factor", 1.0, path);
  c.rope_scaling.high_freq_factor = number_or(rs, "high_freq_factor", 4.0, path);
  // Range-checked as a double: casting one outside int64 (1e30, inf, NaN) is undefined behaviour.
  const double original = number_or(rs, "original_max_position_embeddings", 8192, path);
  if (!(original >= 1 && original <= INT32_MAX))
    throw LoadError(fmt::format("{}: rope_scaling original_max_position_embeddings must be in [1, {}] (got {})",
                                path, INT32_MAX, original));
  c.rope_scaling.original_max_position_embeddings = static_cast<std::int64_t>(original);
}

Config read_config(const json& j, const std::string& path) {
  if (!j.is_object()) throw LoadError(fmt::format("{}: config is not a JSON object", path));

  const std::string model_type = string_or(j, "model_type", std::string(), path);
  bool llama = model_type == "llama";
  std::string arch_names;
  if (auto a = j.find("architectures"); a != j.end() && a->is_array()) {
    llama = false;
    for (const auto& name : *a) {
      const std::string n = name.is_string() ? name.get<std::string>() : detail::short_dump(name);
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
  c.tie_word_embeddings = bool_or(j, "tie_word_embeddings", false, path);
  if (auto r = j.find("rope_scaling"); r != j.end()) read_rope_scaling(*r, c, path);
  // Newer transformers write the RoPE settings under rope_parameters.
  if (auto r = j.find("rope_parameters"); r != j.end() && r->is_object()) {
    c.rope_theta = number_or(*r, "rope_theta", c.rope_theta, path);
    read_rope_scaling(*r, c, path);
  }
  if (bool_or(j, "attention_bias", false, path))
    throw LoadError(fmt::format("{}: attention_bias=true is not supported", path));
  if (bool_or(j, "mlp_bias", false, path)) throw LoadError(fmt::format("{}: mlp_bias=true is not supported", path));
  const std::string act = string_or(j, "hidden_act", "silu", path);
  if (act != "silu") throw LoadError(fmt::format("{}: unsupported hidden_act '{}' (expected silu)", path, act));
  c.validate(path);  // vocab_size is checked before the token ids are compared with it
  if (auto b = j.find("bos_token_id"); b != j.end() && !b->is_null())
    c.bos_id = token_id(*b, "bos_token_id", c.vocab_size, path);
  if (auto e = j.find("eos_token_id"); e != j.end() && !e->is_null()) {
    if (e->is_array()) {
      for (const auto& x : *e) c.eos_ids.push_back(token_id(x, "eos_token_id", c.vocab_size, path));
    } else {
      c.eos_ids.push_back(token_id(*e, "eos_token_id", c.vocab_size, path));
    }
  }
  return c;
}

}  // namespace

Config Config::from_hf_json(const std::string& path) {
  const std::string text = detail::read_file(path);  // a regular file only: a FIFO is refused, not waited on
  json j;
  try {
    j = detail::parse_json(text, path);
  } catch (const json::exception& e) {
    throw LoadError(fmt::format("{}: invalid JSON: {}", path, e.what()));
  }
  try {
    return read_config(j, path);
  } catch (const json::exception& e) {  // a type error the checks above missed: still a LoadError naming the file
    throw LoadError(fmt::format("{}: {}", path, e.what()));
  }
}

void Config::validate(const std::string& source) {
  if (dim <= 0 || hidden_dim <= 0 || n_layers <= 0 || n_heads <= 0 || n_kv_heads <= 0 || vocab_size <= 0 ||
      max_seq_len <= 0)
    throw LoadError(fmt::format(
        "{}: sizes must be > 0 (dim={}, hidden_dim={}, n_layers={}, n_heads={}, n_kv_heads={}, vocab_size={}, "
        "max_seq_len={})",
        source, dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, max_seq_len));
  const std::pair<const char*, std::int64_t> sizes[] = {{"dim", dim},         {"hidden_dim", hidden_dim},
                                                        {"n_layers", n_layers}, {"n_heads", n_heads},
                                                        {"n_kv_heads", n_kv_heads}, {"head_dim", head_dim}};
  for (const auto& [name, value] : sizes)
    if (value > kMaxDimension)
      throw LoadError(fmt::format("{}: {} must be <= {} (got {})", source, name, kMaxDimension, value));
  if (const std::int64_t max_vocab = limits().max_vocab_size; vocab_size > max_vocab)
    throw LoadError(fmt::format("{}: vocab_size {} is more than Limits.max_vocab_size ({})", source, vocab_size,
                                max_vocab));
  // Positions are int32 (Batch).
  if (max_seq_len > INT32_MAX)
    throw LoadError(fmt::format("{}: max_seq_len must be <= {} (got {})", source, INT32_MAX, max_seq_len));
  if (head_dim == 0) {
    if (dim % n_heads != 0)
      throw LoadError(fmt::format("{}: dim must be divisible by n_heads (dim={}, n_heads={})", source, dim, n_heads));
    head_dim = dim / n_heads;
  }
  if (head_dim <= 0 || head_dim % 2 != 0)
    throw LoadError(fmt::format("{}: head_dim must be even and > 0 (head_dim={})", source, head_dim));
  // Both sizes are <= 2^24 here, so the products cannot overflow.
  if (n_heads * head_dim > kMaxDimension)
    throw LoadError(fmt::format("{}: n_heads*head_dim must be <= {} (n_heads={}, head_dim={})", source,
                                kMaxDimension, n_heads, head_dim));
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
