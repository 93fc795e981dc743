// What the tokenizer targets (fuzz_gguf, fuzz_tokenizer_json) do with a tokenizer they loaded: encode each text
// (with offsets, which must lie inside it, one per id), decode the ids back, and decode the first ids of the
// vocabulary with and without the special tokens.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "crossicl/core/error.h"
#include "crossicl/engine/tokenizer.h"

namespace crossicl::fuzz {

inline void exercise_tokenizer(const Tokenizer& tok, const std::vector<std::string>& texts) {
  for (const std::string& text : texts) {
    try {
      std::vector<TokenOffset> offs;
      const auto ids = tok.encode_with_offsets(text, offs, true, true);
      if (offs.size() != ids.size()) __builtin_trap();
      for (const auto& [b, e] : offs)
        if (b > e || e > text.size()) __builtin_trap();
      tok.decode(ids, true);
      tok.decode(tok.encode(text, false, false), false);
    } catch (const InvalidArgument&) {  // text that is not UTF-8
    }
  }
  std::vector<std::int32_t> all;
  for (std::int32_t id = 0; id < std::min(tok.vocab_size(), 300); ++id) {
    all.push_back(id);
    tok.piece(id);
  }
  tok.decode(all, true);
  tok.decode(all, false);
}

}  // namespace crossicl::fuzz
