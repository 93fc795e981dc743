#include "crossicl/engine/prefix_cache.h"

#include <algorithm>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "crossicl/core/error.h"

namespace crossicl {

struct PrefixCache::Node {
  Key key;                                      // the block's token ids (empty at the root)
  at::Tensor kv;                                // the block's KV rows (undefined at the root)
  std::int64_t bytes = 0;                       // kv's size
  Node* parent = nullptr;
  std::map<Key, std::unique_ptr<Node>> children;
  std::uint64_t last_use = 0;
};

PrefixCache::PrefixCache(std::int64_t capacity_bytes, std::int64_t block_tokens)
    : capacity_(capacity_bytes), block_tokens_(block_tokens), root_(std::make_unique<Node>()) {
  if (capacity_bytes <= 0)
    throw InvalidArgument(fmt::format("prefix cache capacity must be > 0 bytes (capacity={})", capacity_bytes));
  if (block_tokens <= 0)
    throw InvalidArgument(fmt::format("prefix cache block_tokens must be > 0 (block_tokens={})", block_tokens));
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
    if (blocks) blocks->push_back(node->kv);
    ++b;
  }
  if (b > 0) touch(node);
  return b * block_tokens_;
}

void PrefixCache::evict_one() {
  auto it = leaves_.begin();
  Node* leaf = it->second;
  leaves_.erase(it);
  Node* parent = leaf->parent;
  bytes_ -= leaf->bytes;
  --n_blocks_;
  ++evictions_;
  const Key key = leaf->key;
  parent->children.erase(key);  // frees leaf
  if (parent->children.empty() && parent != root_.get()) leaves_.insert({parent->last_use, parent});
}

std::int64_t PrefixCache::insert(const std::vector<std::int32_t>& ids, std::int64_t n_tokens,
                                 const std::function<at::Tensor(std::int64_t, std::int64_t)>& kv) {
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
    at::Tensor t = kv(b * block_tokens_, block_tokens_);
    const std::int64_t nbytes = static_cast<std::int64_t>(t.nbytes());
    if (nbytes > capacity_) break;
    auto child = std::make_unique<Node>();
    child->key = std::move(key);
    child->kv = std::move(t);
    child->bytes = nbytes;
    child->parent = node;
    Node* c = child.get();
    if (node->children.empty() && node != root_.get()) leaves_.erase({node->last_use, node});
    node->children.emplace(c->key, std::move(child));
    c->last_use = 0;
    leaves_.insert({0, c});
    touch(c);
    bytes_ += nbytes;
    ++n_blocks_;
    ++added;
    bool lost = false;
    while (bytes_ > capacity_) {
      lost = lost || leaves_.begin()->second == c;
      evict_one();
    }
    if (lost) break;  // the new block itself was the least recently used leaf (everything else is newer)
    node = c;
  }
  return added;
}

void PrefixCache::clear() {
  root_ = std::make_unique<Node>();
  leaves_.clear();
  bytes_ = 0;
  n_blocks_ = 0;
}

}  // namespace crossicl
