// A batch of tokens for Context::decode, as in llama.cpp's llama_batch: each entry is one token of one sequence
// at one position, with a flag saying whether its logits (and requested hidden states) are returned. Several
// sequences of different lengths go in one batch without padding; each token attends only to earlier positions
// of its own sequence, so results do not depend on what else is in the batch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace crossicl {

/// Tokens to run through the model in one call.
///
///   crossicl::Batch b;
///   for (int i = 0; i < n; ++i) b.add(ids[i], /*pos=*/i, /*seq_id=*/0, /*output=*/i == n - 1);
///   auto out = ctx.decode(b);  // out.logits: [1, vocab]
struct Batch {
  std::vector<std::int32_t> tokens;   // token ids in [0, vocab_size)
  std::vector<std::int32_t> pos;      // position of each token in its sequence (0 = first)
  std::vector<std::int32_t> seq_id;   // sequence of each token (>= 0); a sequence's KV cache lives in the Context
  std::vector<std::uint8_t> output;   // 1 = return logits / hidden states for this token, 0 = not

  /// Appends one token.
  void add(std::int32_t token, std::int32_t position, std::int32_t seq, bool want_output) {
    tokens.push_back(token);
    pos.push_back(position);
    seq_id.push_back(seq);
    output.push_back(want_output ? 1 : 0);
  }
  std::size_t size() const { return tokens.size(); }
  bool empty() const { return tokens.empty(); }
  void clear() {
    tokens.clear();
    pos.clear();
    seq_id.clear();
    output.clear();
  }
};

}  // namespace crossicl
