// Loaders of the concrete tokenizers behind crossicl::Tokenizer::from_file.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "crossicl/engine/tokenizer.h"

namespace crossicl::detail {

/// SentencePiece model from the bytes of a `tokenizer.model` file (`path` names it in errors).
std::unique_ptr<Tokenizer> load_sentencepiece_tokenizer(const std::string& path, const std::string& bytes);

/// HF `tokenizer.json` (BPE) from its text; reads `tokenizer_config.json` beside `path` when present.
std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& path, const std::string& json_text);

/// HF BPE from a tokenizer.json document built in memory (`what` names it in errors), with the given BOS/EOS.
std::unique_ptr<Tokenizer> load_hf_tokenizer_json(const std::string& what, const nlohmann::json& root,
                                                  std::int32_t bos_id, std::int32_t eos_id);

}  // namespace crossicl::detail
