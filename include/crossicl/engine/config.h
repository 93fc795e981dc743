// Hyper-parameters of a LLaMA-family decoder: sizes, normalisation epsilon and rotary position embedding (RoPE)
// settings, read from an HF `config.json` or from a llama2.c checkpoint header. A Config is a plain value; the
// Model validates it once on load (every size > 0, heads dividing the hidden size unless head_dim is explicit,
// n_heads a multiple of n_kv_heads).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace crossicl {

/// RoPE frequency scaling. Only LLaMA-3's scheme ("llama3") is supported besides none.
struct RopeScaling {
  std::string type;                              // "" = no scaling, "llama3"
  double factor = 1.0;                           // divides the low frequencies (wavelength > low_freq_wavelen)
  double low_freq_factor = 1.0;                  // low_freq_wavelen = original_max_position_embeddings / this
  double high_freq_factor = 4.0;                 // high_freq_wavelen = original_max_position_embeddings / this
  std::int64_t original_max_position_embeddings = 8192;  // context length the frequencies were trained for
};

/// Sizes and settings of a LLaMA-family model (names follow llama2.c / HF).
///
///   crossicl::Config c = crossicl::Config::from_hf_json("model_dir/config.json");
///   int hd = c.head_dim;  // dim / n_heads unless config.json sets head_dim
struct Config {
  std::int64_t dim = 0;          // hidden size (HF hidden_size)
  std::int64_t hidden_dim = 0;   // feed-forward inner size (HF intermediate_size)
  std::int64_t n_layers = 0;     // transformer blocks
  std::int64_t n_heads = 0;      // query heads
  std::int64_t n_kv_heads = 0;   // key/value heads (== n_heads: multi-head; fewer: grouped-query attention)
  std::int64_t vocab_size = 0;   // rows of the embedding and of the classifier
  std::int64_t max_seq_len = 0;  // context window in tokens (HF max_position_embeddings, llama2.c seq_len)
  std::int64_t head_dim = 0;     // per-head size; 0 on input means dim / n_heads
  double norm_eps = 1e-5;        // RMSNorm epsilon (HF rms_norm_eps)
  double rope_theta = 10000.0;   // RoPE base
  RopeScaling rope_scaling;      // RoPE frequency scaling (type "" = none)
  bool tie_word_embeddings = false;  // classifier shares the token embedding matrix
  std::int32_t bos_id = -1;      // BOS id from config.json (-1 = unknown; the tokenizer's wins when present)
  std::vector<std::int32_t> eos_ids;  // EOS ids from config.json (empty = unknown)

  /// Reads an HF `config.json` of a LlamaForCausalLM (model_type "llama"); any other architecture, a missing
  /// field, a field of the wrong JSON type, bos_token_id / eos_token_id (a number or a list) outside
  /// [0, vocab_size), or an unsupported option (attention_bias, mlp_bias, hidden_act other than silu, a
  /// rope_scaling type other than llama3/default) throws LoadError naming the file, the key and the value.
  static Config from_hf_json(const std::string& path);

  /// Fills head_dim when 0 and checks the sizes; throws LoadError mentioning `source` and the field when
  /// inconsistent or out of range: every size must be > 0; dim, hidden_dim, n_layers, n_heads, n_kv_heads,
  /// head_dim and n_heads*head_dim at most 2^24 (so that products of sizes fit in int64); vocab_size at most
  /// limits().max_vocab_size; max_seq_len at most INT32_MAX (positions are int32).
  void validate(const std::string& source);
};

}  // namespace crossicl
