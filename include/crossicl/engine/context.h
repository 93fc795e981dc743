// A Context runs a Model's forward pass and owns the key/value cache of the sequences it serves (llama.cpp's
// llama_context). decode checks and packs a batch, makes room in the cache, and runs the forward pass of
// src/engine/transformer.cpp (attention and feed-forward for each layer) with the cache's rows.
// Sequences are identified by integer ids; each has its own cached positions 0..len-1.
// A batch must continue each of its sequences: the positions of a sequence's tokens in one batch are
// consecutive and start at the sequence's cached length (a new sequence starts at 0).
// Prefix sharing: seq_cp(src, dst, n) gives `dst` the first n cached positions of `src` (a copy of the cache
// rows, no recomputation), so a prompt is computed once and continued in several ways.
// A Context is not thread-safe; use one per thread.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include <ATen/core/Tensor.h>

#include "crossicl/engine/batch.h"
#include "crossicl/engine/model.h"

namespace crossicl {

/// Sizes of a Context.
struct ContextOptions {
  std::int64_t n_ctx = 0;  // most positions per sequence (0 = the model's max_seq_len)
};

/// What decode returns for the batch entries with output = 1, in batch order.
struct DecodeOutput {
  at::Tensor logits;                // [n_outputs, vocab_size] float32 on the CPU (undefined if not requested)
  std::vector<at::Tensor> hidden;   // one [n_outputs, dim] float32 CPU tensor per requested layer
};

/// What decode computes besides the KV cache update.
struct DecodeOptions {
  bool logits = true;                 // return logits of the output tokens
  std::vector<int> hidden_layers;     // hidden states to return: 0 = embeddings, i = output of block i,
                                      // n_layers = final-norm output (as HF output_hidden_states)
};

/// KV cache + forward pass over a shared Model.
///
///   crossicl::Context ctx(model);
///   crossicl::Batch b; b.add(1, 0, 0, false); b.add(403, 1, 0, true);
///   at::Tensor logits = ctx.decode(b).logits;   // [1, vocab]
class Context {
 public:
  explicit Context(std::shared_ptr<const Model> model, ContextOptions options = {});

  /// Runs the batch, appending its keys/values to each sequence's cache. Throws InvalidArgument (naming the
  /// entry and value) for mismatched vector sizes, ids out of range, non-consecutive positions, a sequence
  /// past n_ctx or a hidden layer outside [0, n_layers]; the cache is unchanged when it throws.
  DecodeOutput decode(const Batch& batch, const DecodeOptions& options = {});

  /// Cached positions of a sequence (0 when unknown).
  std::int64_t seq_len(std::int32_t seq) const;
  /// Drops a sequence's cache.
  void seq_rm(std::int32_t seq);
  /// Truncates a sequence's cache to its first n cached positions (no-op when it holds n or fewer, or is
  /// unknown). Unlike llama.cpp's seq_keep, other sequences are untouched.
  void seq_truncate(std::int32_t seq, std::int64_t n);
  /// Makes `dst` hold a copy of the first `n` cached positions of `src` (-1 = all); replaces `dst`'s contents
  /// (keeping room it reserved, so seq_reserve then seq_cp allocates once).
  void seq_cp(std::int32_t src, std::int32_t dst, std::int64_t n = -1);
  /// Makes room for n positions (at most n_ctx) in a sequence's cache, creating it if needed, so that filling
  /// it up to n allocates nothing more. Without it the cache grows geometrically as positions arrive.
  void seq_reserve(std::int32_t seq, std::int64_t n);
  /// Allocates one buffer for n positions from which later seq_reserve and seq_cp calls take their rooms (first
  /// come, while it lasts; others allocate their own), so the KV of a wave of sequences is one allocation, big
  /// enough for the allocator to map and unmap it instead of fragmenting the heap. A room is not returned to the
  /// buffer when its sequence is dropped; the buffer is freed by clear() (or replaced by the next reserve_arena).
  /// n is not clamped (a wave holds several sequences; the caller bounds it): InvalidArgument naming n and the
  /// model's sizes when n < 0 or n * n_layers * 2 * n_kv_heads * head_dim overflows int64; an allocation that
  /// cannot be made is torch's error.
  void reserve_arena(std::int64_t n);
  /// Drops every sequence and the arena.
  void clear();
  /// A copy of the cached keys/values of positions [begin, begin + n) of a sequence.
  /// // [n_layers, 2 (k, v), n_kv_heads, n, head_dim] in the model's dtype and device
  at::Tensor seq_kv(std::int32_t seq, std::int64_t begin, std::int64_t n) const;
  /// As seq_kv, written into `out` ([n_layers, 2, n_kv_heads, n, head_dim], any dtype and device; n = out.size(3)).
  void seq_kv_into(std::int32_t seq, std::int64_t begin, const at::Tensor& out) const;
  /// Appends keys/values [n_layers, 2, n_kv_heads, n, head_dim] (as seq_kv returns) to a sequence's cache as
  /// its next n positions (a new sequence starts at 0). InvalidArgument for a wrong shape or past n_ctx.
  void seq_append_kv(std::int32_t seq, const at::Tensor& kv);
  /// Appends several such tensors in order (one copy each, no concatenation); checked before anything is copied.
  void seq_append_kv(std::int32_t seq, const std::vector<at::Tensor>& kv);

  std::int64_t n_ctx() const { return n_ctx_; }
  const Model& model() const { return *model_; }

 private:
  struct SeqCache {
    at::Tensor room;            // [n_layers, 2, n_kv_heads, capacity, head_dim] (undefined before reserve)
    std::vector<at::Tensor> k;  // per layer [n_kv_heads, capacity, head_dim], views of room
    std::vector<at::Tensor> v;  // per layer [n_kv_heads, capacity, head_dim], views of room
    std::int64_t len = 0;       // filled positions
  };
  // Grows the cache to hold n positions: exactly n when `exact`, else geometrically (decode steps).
  void reserve(SeqCache& cache, std::int64_t n, bool exact = false);
  // InvalidArgument (naming `what`) unless t is [n_layers, 2, n_kv_heads, n, head_dim] for some n.
  void check_kv_shape(const char* what, const at::Tensor& t) const;
  // The cached positions [begin, begin + n) of a sequence, InvalidArgument (naming `what`) if not all are cached.
  at::Tensor cached_rows(const char* what, std::int32_t seq, std::int64_t begin, std::int64_t n) const;

  std::shared_ptr<const Model> model_;
  std::int64_t n_ctx_;
  std::map<std::int32_t, SeqCache> seqs_;
  at::Tensor arena_;              // [arena positions * n_layers * 2 * n_kv_heads * head_dim] (undefined if none)
  std::int64_t arena_size_ = 0;   // positions it holds
  std::int64_t arena_used_ = 0;   // positions handed out
};

}  // namespace crossicl
