#include "crossicl/engine/prefix_cache.h"

#include <algorithm>
#include <stdexcept>

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "crossicl/core/error.h"

namespace crossicl {

struct PrefixCache::Node {
  Key key;                                      // the block's token ids (empty at the root)
  std::int64_t slot = -1;                       // the block's KV rows: slots_[slot] (-1 at the root)
  Node* parent = nullptr;
  std::map<Key, std::unique_ptr<Node>> children;
  std::uint64_t last_use = 0;
};

PrefixCache::PrefixCache(std::int64_t capacity_bytes, std::int64_t block_tokens, std::vector<std::int64_t> block_shape,
                         at::TensorOptions options)
    : capacity_(capacity_bytes),
      block_tokens_(block_tokens),
      root_(std::make_unique<Node>()),
      block_shape_(std::move(block_shape)),
      block_options_(options) {
  if (capacity_bytes <= 0)
    throw InvalidArgument(fmt::format("prefix cache capacity must be > 0 bytes (capacity={})", capacity_bytes));
  if (block_tokens <= 0)
    throw InvalidArgument(fmt::format("prefix cache block_tokens must be > 0 (block_tokens={})", block_tokens));
  std::int64_t numel = 1;
  for (std::int64_t d : block_shape_) {
    if (d < 1)
      throw InvalidArgument(
          fmt::format("prefix cache block shape [{}] has a size < 1", fmt::join(block_shape_, "x")));
    numel *= d;
  }
  block_bytes_ = numel * static_cast<std::int64_t>(c10::elementSize(block_options_.dtype().toScalarType()));
}

PrefixCache::~PrefixCache() = default;

PrefixCache::Key PrefixCache::key_at(const std::vector<std::int32_t>& ids, std::int64_t block) const {
  return Key(ids.begin() + block * block_tokens_, ids.begin() + (block + 1) * block_tokens_);
}

void PrefixCache::touch(Node* node) {
  const std::uint64_t now = ++clock_;
  if (node->children.empty() && node != root_.get()) {
    leaves_.erase({node->last_use, node});
    leaves_.insert({now, node});
  }
  for (Node* n = node; n; n = n->parent) n->last_use = now;
}

std::int64_t PrefixCache::peek(const std::vector<std::int32_t>& ids, std::int64_t max_tokens) const {
  const std::int64_t limit = std::min<std::int64_t>(max_tokens, static_cast<std::int64_t>(ids.size()));
  const Node* node = root_.get();
  std::int64_t b = 0;
  while ((b + 1) * block_tokens_ <= limit) {
    auto it = node->children.find(key_at(ids, b));
    if (it == node->children.end()) break;
    node = it->second.get();
    ++b;
  }
  return b * block_tokens_;
}

std::int64_t PrefixCache::match(const std::vector<std::int32_t>& ids, std::int64_t max_tokens,
                                std::vector<at::Tensor>* blocks) {
  const std::int64_t limit = std::min<std::int64_t>(max_tokens, static_cast<std::int64_t>(ids.size()));
  Node* node = root_.get();
  std::int64_t b = 0;
  while ((b + 1) * block_tokens_ <= limit) {
    auto it = node->children.find(key_at(ids, b));
    if (it == node->children.end()) break;
    node = it->second.get();
    if (blocks) blocks->push_back(slots_[node->slot]);
    ++b;
  }
  if (b > 0) touch(node);
  return b * block_tokens_;
}

void PrefixCache::evict_one() {
  remove_leaf(leaves_.begin()->second);
  ++evictions_;
}

void PrefixCache::remove_leaf(Node* leaf) {
  leaves_.erase({leaf->last_use, leaf});
  Node* parent = leaf->parent;
  if (leaf->slot >= 0) free_slots_.push_back(leaf->slot);
  bytes_ -= block_bytes_;
  --n_blocks_;
  const Key key = leaf->key;
  parent->children.erase(key);  // frees leaf
  if (parent->children.empty() && parent != root_.get()) leaves_.insert({parent->last_use, parent});
}

std::int64_t PrefixCache::insert(const std::vector<std::int32_t>& ids, std::int64_t n_tokens, const Fill& fill) {
  const std::int64_t limit = std::min<std::int64_t>(n_tokens, static_cast<std::int64_t>(ids.size()));
  Node* node = root_.get();
  std::int64_t added = 0;
  for (std::int64_t b = 0; (b + 1) * block_tokens_ <= limit; ++b) {
    Key key = key_at(ids, b);
    auto it = node->children.find(key);
    if (it != node->children.end()) {
      node = it->second.get();
      touch(node);
      continue;
    }
    if (block_bytes_ > capacity_) break;
    auto child = std::make_unique<Node>();
    child->key = std::move(key);
    child->parent = node;
    Node* c = child.get();
    if (node->children.empty() && node != root_.get()) leaves_.erase({node->last_use, node});
    node->children.emplace(c->key, std::move(child));
    c->last_use = 0;
    leaves_.insert({0, c});
    touch(c);
    bytes_ += block_bytes_;
    ++n_blocks_;
    ++added;
    bool lost = false;
    while (bytes_ > capacity_) {  // evicting before the copy frees the slot it goes into
      lost = lost || leaves_.begin()->second == c;
      evict_one();
    }
    if (lost) break;  // the new block itself was the least recently used leaf (everything else is newer)
    c->slot = acquire_slot();
    try {
      fill(b * block_tokens_, slots_[c->slot]);
    } catch (...) {
      remove_leaf(c);  // a block whose KV was not written is not kept
      throw;
    }
    node = c;
  }
  return added;
}

std::int64_t PrefixCache::acquire_slot() {
  if (free_slots_.empty()) {
    // a new slab, never past capacity: insert evicts until the blocks (this one included) fit
    const std::int64_t have = static_cast<std::int64_t>(slots_.size());
    const std::int64_t n = std::min<std::int64_t>(kSlabBlocks, capacity_ / block_bytes_ - have);
    if (n <= 0)
      throw std::logic_error(fmt::format("prefix cache: no free slot ({} slots, {} blocks, capacity {} bytes)", have,
                                      n_blocks_, capacity_));
    std::vector<std::int64_t> shape = {n};
    shape.insert(shape.end(), block_shape_.begin(), block_shape_.end());
    const at::Tensor slab = at::empty(shape, block_options_);  // [n, *block_shape]
    for (std::int64_t i = n - 1; i >= 0; --i) free_slots_.push_back(have + i);
    for (std::int64_t i = 0; i < n; ++i) slots_.push_back(slab[i]);
  }
  const std::int64_t slot = free_slots_.back();
  free_slots_.pop_back();
  return slot;
}

void PrefixCache::clear() {
  root_ = std::make_unique<Node>();
  leaves_.clear();
  slots_.clear();
  free_slots_.clear();
  bytes_ = 0;
  n_blocks_ = 0;
}

}  // namespace crossicl
