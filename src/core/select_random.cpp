// RandomSelector (SplitMix64, specified in the header) and numpy's legacy RandomState permutation.
#include <algorithm>
#include <random>
#include <unordered_map>

#include <fmt/format.h>

#include "crossicl/core/error.h"
#include "crossicl/core/select.h"

namespace crossicl {

namespace {
constexpr std::uint64_t kGamma = 0x9E3779B97F4A7C15ULL;
}

std::uint64_t SplitMix64::mix(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

std::uint64_t SplitMix64::next() {
  state_ += kGamma;
  return mix(state_);
}

std::uint64_t SplitMix64::bounded(std::uint64_t n) {
  if (n == 0) throw InvalidArgument("SplitMix64::bounded needs n >= 1 (n=0)");
  const std::uint64_t threshold = (0 - n) % n;  // (2^64 - n) mod n: draws below it would bias the result
  for (;;) {
    const std::uint64_t x = next();
    if (x >= threshold) return x % n;
  }
}

RandomSelector::RandomSelector(std::int64_t pool_size, RandomOptions options)
    : pool_size_(pool_size), options_(options) {
  if (pool_size <= 0) throw InvalidArgument(fmt::format("pool is empty (pool_size={})", pool_size));
}

SelectResult RandomSelector::select(std::int64_t n_queries, std::int64_t k, const std::vector<std::int64_t>& exclude,
                                    const std::vector<std::vector<std::int64_t>>& exclude_per_query) const {
  if (n_queries < 0) throw InvalidArgument(fmt::format("n_queries must be >= 0 (n_queries={})", n_queries));
  if (k <= 0) throw InvalidArgument(fmt::format("k must be >= 1 (k={})", k));
  if (k > pool_size_) throw InvalidArgument(fmt::format("k must be <= pool size (k={}, pool={})", k, pool_size_));
  if (!exclude_per_query.empty() && static_cast<std::int64_t>(exclude_per_query.size()) != n_queries)
    throw InvalidArgument(fmt::format("exclude_per_query has {} lists but there are {} queries",
                                      exclude_per_query.size(), n_queries));
  // Sorted, de-duplicated exclusion lists: memory follows the lists, not the pool size.
  std::vector<std::int64_t> excluded(exclude.begin(), exclude.end());
  for (std::size_t i = 0; i < exclude.size(); ++i)
    if (exclude[i] < 0 || exclude[i] >= pool_size_)
      throw InvalidArgument(fmt::format("exclude[{}] = {} is not a pool row (pool={})", i, exclude[i], pool_size_));
  std::sort(excluded.begin(), excluded.end());
  excluded.erase(std::unique(excluded.begin(), excluded.end()), excluded.end());
  const std::int64_t n_excluded = static_cast<std::int64_t>(excluded.size());
  const auto is_excluded = [&](std::int64_t r) { return std::binary_search(excluded.begin(), excluded.end(), r); };
  SelectResult out;
  out.resize(n_queries, k);  // checks n_queries * k
  std::vector<std::int64_t> own;
  std::unordered_map<std::int64_t, std::int64_t> moved;  // position -> value, where it differs from position
  for (std::int64_t q = 0; q < n_queries; ++q) {
    own.clear();
    if (!exclude_per_query.empty()) {
      const auto& list = exclude_per_query[static_cast<std::size_t>(q)];
      for (std::size_t i = 0; i < list.size(); ++i) {
        const std::int64_t r = list[i];
        if (r < 0 || r >= pool_size_)
          throw InvalidArgument(fmt::format("exclude_per_query[{}][{}] = {} is not a pool row (pool={})", q, i, r,
                                            pool_size_));
        if (!is_excluded(r)) own.push_back(r);
      }
      std::sort(own.begin(), own.end());
      own.erase(std::unique(own.begin(), own.end()), own.end());
    }
    const std::int64_t selectable = pool_size_ - n_excluded - static_cast<std::int64_t>(own.size());
    if (k > selectable)
      throw InvalidArgument(fmt::format("k must be <= the rows left after exclusions (k={}, selectable={}, query={})",
                                        k, selectable, q));
    SplitMix64 rng(SplitMix64::mix(options_.seed + kGamma * static_cast<std::uint64_t>(q + 1)));
    moved.clear();
    std::int64_t picks = 0;
    for (std::int64_t i = 0; picks < k; ++i) {
      const std::int64_t j = i + static_cast<std::int64_t>(rng.bounded(static_cast<std::uint64_t>(pool_size_ - i)));
      const auto at = [&](std::int64_t p) {
        const auto it = moved.find(p);
        return it == moved.end() ? p : it->second;
      };
      const std::int64_t vi = at(i), vj = at(j);
      moved[j] = vi;
      if (is_excluded(vj) || std::binary_search(own.begin(), own.end(), vj)) continue;
      out.ids[static_cast<std::size_t>(q * k + picks)] = vj;
      ++picks;
    }
  }
  return out;
}

std::vector<std::int64_t> numpy_legacy_permutation(std::uint32_t seed, std::int64_t n) {
  if (n < 0) throw InvalidArgument(fmt::format("n must be >= 0 (n={})", n));
  if (static_cast<std::uint64_t>(n) > std::vector<std::int64_t>().max_size())
    throw InvalidArgument(fmt::format("a permutation of n={} ids is more than fits in memory", n));
  std::mt19937 mt(seed);  // the standard fixes this as MT19937 with init_genrand seeding, as numpy's legacy seed
  std::vector<std::int64_t> perm(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) perm[static_cast<std::size_t>(i)] = i;
  for (std::int64_t i = n - 1; i >= 1; --i) {
    const std::uint64_t max = static_cast<std::uint64_t>(i);
    std::uint64_t mask = max;
    mask |= mask >> 1;
    mask |= mask >> 2;
    mask |= mask >> 4;
    mask |= mask >> 8;
    mask |= mask >> 16;
    mask |= mask >> 32;
    std::uint64_t j;
    if (max <= 0xffffffffULL) {
      do {
        j = static_cast<std::uint64_t>(mt()) & mask;
      } while (j > max);
    } else {
      do {
        const std::uint64_t hi = mt();
        const std::uint64_t lo = mt();
        j = ((hi << 32) | lo) & mask;
      } while (j > max);
    }
    std::swap(perm[static_cast<std::size_t>(i)], perm[static_cast<std::size_t>(j)]);
  }
  return perm;
}

}  // namespace crossicl
