// A prefix cache of key/value rows, held by the Engine: a trie whose nodes are blocks of `block_tokens`
// consecutive token ids (the root is the empty prefix), each node holding the keys/values of its block computed
// after the path above it. A prompt whose first k full blocks are in the trie gets their KV copied into its
// sequence and only the rest is computed. The memory of the stored KV is bounded by `capacity_bytes`; when an
// insertion goes over it, the least recently used leaf blocks are evicted (a block is used when it is matched or
// inserted, and then so are its ancestors). Only full blocks are cached, so a prefix is reused in multiples of
// `block_tokens` tokens. The KV lives in slots of slabs (up to kSlabBlocks blocks each) allocated on demand and
// reused after eviction, so the cache never holds more than `capacity_bytes` of KV storage and churn through
// evictions does not fragment the heap. The cache is not thread-safe (the Engine serialises its calls).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <utility>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/TensorOptions.h>

namespace crossicl {

/// Counters of an Engine's prefix cache (all since construction or the last clear_cache()).
struct CacheStats {
  std::int64_t hit_tokens = 0;       // prompt tokens whose KV came from the prefix cache
  std::int64_t computed_tokens = 0;  // tokens run through prefill forward passes (greedy decode steps excluded)
  std::int64_t cached_bytes = 0;     // bytes of KV held by the cache now
  std::int64_t evictions = 0;        // blocks evicted to stay within capacity
  std::int64_t blocks = 0;           // blocks held now
  std::int64_t block_tokens = 0;     // tokens per block
  std::int64_t capacity_bytes = 0;   // the bound on cached_bytes (0 = cache off)
};

/// Trie of token blocks with their KV rows and LRU eviction of leaves.
///
///   crossicl::PrefixCache cache(256 << 20, 16, {n_layers, 2, n_kv_heads, 16, head_dim}, at::kFloat);
///   std::int64_t n = cache.match(ids, ids.size() - 1, &blocks);   // n tokens reused, blocks[i] = KV of block i
///   cache.insert(ids, ids.size(), [&](std::int64_t begin, const at::Tensor& out) { kv_rows_into(begin, out); });
class PrefixCache {
 public:
  /// Writes the KV of tokens [begin, begin + block_tokens) into `out`, a slot of the block shape.
  using Fill = std::function<void(std::int64_t begin, const at::Tensor& out)>;

  /// `capacity_bytes` > 0 bounds the stored KV; `block_tokens` > 0 tokens per block; `block_shape` (sizes >= 1)
  /// and `options` (dtype, device) are those of one block's KV. InvalidArgument otherwise.
  PrefixCache(std::int64_t capacity_bytes, std::int64_t block_tokens, std::vector<std::int64_t> block_shape,
              at::TensorOptions options = {});
  ~PrefixCache();
  PrefixCache(const PrefixCache&) = delete;
  PrefixCache& operator=(const PrefixCache&) = delete;

  std::int64_t block_tokens() const { return block_tokens_; }

  /// Tokens of the longest cached prefix of `ids` made of full blocks and at most `max_tokens` long, without
  /// marking anything used.
  std::int64_t peek(const std::vector<std::int32_t>& ids, std::int64_t max_tokens) const;

  /// As peek, and appends the matched blocks' KV tensors (in order) to `blocks` and marks them used. They are
  /// views of the cache's slots: valid until the next insert or clear.
  std::int64_t match(const std::vector<std::int32_t>& ids, std::int64_t max_tokens, std::vector<at::Tensor>* blocks);

  /// Caches the full blocks of ids[0, n_tokens): blocks already present are marked used, missing ones are
  /// written by fill(begin, slot) straight into a slot of the cache (no temporary). Stops when a block alone does
  /// not fit. If fill throws, its block is dropped and the exception passes on. Returns the number of blocks
  /// added.
  std::int64_t insert(const std::vector<std::int32_t>& ids, std::int64_t n_tokens, const Fill& fill);

  /// Drops every block (the eviction counter is kept).
  void clear();

  std::int64_t bytes() const { return bytes_; }
  std::int64_t blocks() const { return n_blocks_; }
  std::int64_t evictions() const { return evictions_; }
  std::int64_t capacity() const { return capacity_; }

 private:
  struct Node;
  using Key = std::vector<std::int32_t>;
  Key key_at(const std::vector<std::int32_t>& ids, std::int64_t block) const;
  void touch(Node* node);
  void evict_one();
  void remove_leaf(Node* leaf);
  std::int64_t acquire_slot();

  static constexpr std::int64_t kSlabBlocks = 64;  // slots per slab allocation

  std::int64_t capacity_;
  std::int64_t block_tokens_;
  std::unique_ptr<Node> root_;
  std::set<std::pair<std::uint64_t, Node*>> leaves_;  // (last use, node) of nodes without children
  std::uint64_t clock_ = 0;
  std::int64_t bytes_ = 0;
  std::int64_t n_blocks_ = 0;
  std::int64_t evictions_ = 0;
  std::vector<std::int64_t> block_shape_;   // every block's KV shape
  at::TensorOptions block_options_;         // its dtype and device
  std::int64_t block_bytes_ = 0;            // its size
  std::vector<at::Tensor> slots_;           // slot i: [*block_shape_], a row of a slab
  std::vector<std::int64_t> free_slots_;    // slots holding no block
};

}  // namespace crossicl
