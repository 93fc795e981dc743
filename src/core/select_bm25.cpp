// BM25TopK: Okapi BM25 over byte-tokenised strings (the rule is in include/crossicl/core/select.h).
#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <numeric>

#include <fmt/format.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "crossicl/core/error.h"
#include "crossicl/core/select.h"

namespace crossicl {

namespace {

template <class Fn>
void for_each_token(const std::string& text, Fn&& fn) {
  std::string token;
  for (const char ch : text) {
    const unsigned char c = static_cast<unsigned char>(ch);
    const bool word = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
    if (word) {
      token.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : ch);
    } else if (!token.empty()) {
      fn(token);
      token.clear();
    }
  }
  if (!token.empty()) fn(token);
}

}  // namespace

std::vector<std::string> BM25TopK::tokenize(const std::string& text) {
  std::vector<std::string> out;
  for_each_token(text, [&](const std::string& t) { out.push_back(t); });
  return out;
}

BM25TopK::BM25TopK(const std::vector<std::string>& docs, BM25Options options) : options_(options) {
  if (docs.empty()) throw InvalidArgument("BM25 pool is empty (0 documents)");
  if (docs.size() > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()))
    throw InvalidArgument(fmt::format("BM25 pool has {} documents, more than 2^31-1", docs.size()));
  if (!(options_.k1 >= 0.0) || !std::isfinite(options_.k1))
    throw InvalidArgument(fmt::format("k1 must be finite and >= 0 (k1={})", options_.k1));
  if (!(options_.b >= 0.0 && options_.b <= 1.0))
    throw InvalidArgument(fmt::format("b must be in [0, 1] (b={})", options_.b));
  if (options_.num_threads < 0)
    throw InvalidArgument(fmt::format("num_threads must be >= 0 (num_threads={})", options_.num_threads));
  n_docs_ = static_cast<std::int64_t>(docs.size());
  std::vector<double> length(docs.size());
  std::unordered_map<std::int32_t, std::int32_t> tf;  // term -> count in the current document
  for (std::size_t d = 0; d < docs.size(); ++d) {
    tf.clear();
    std::int64_t n_tokens = 0;
    for_each_token(docs[d], [&](const std::string& t) {
      auto it = term_index_.find(t);
      if (it == term_index_.end()) {
        it = term_index_.emplace(t, static_cast<std::int32_t>(postings_.size())).first;
        postings_.emplace_back();
      }
      ++tf[it->second];
      ++n_tokens;
    });
    for (const auto& [term, count] : tf) postings_[static_cast<std::size_t>(term)].push_back({static_cast<std::int32_t>(d), count});
    length[d] = static_cast<double>(n_tokens);
  }
  // Documents were visited in order, but the per-document map is unordered: postings are already ascending
  // by document because each document appends at most once per term.
  avgdl_ = std::accumulate(length.begin(), length.end(), 0.0) / static_cast<double>(n_docs_);
  norm_.resize(docs.size());
  for (std::size_t d = 0; d < docs.size(); ++d)
    norm_[d] = options_.k1 * (avgdl_ > 0.0 ? 1.0 - options_.b + options_.b * length[d] / avgdl_ : 1.0);
  idf_.resize(postings_.size());
  const double n = static_cast<double>(n_docs_);
  for (std::size_t t = 0; t < postings_.size(); ++t) {
    const double df = static_cast<double>(postings_[t].size());
    idf_[t] = std::log(1.0 + (n - df + 0.5) / (df + 0.5));
  }
}

void BM25TopK::accumulate(const std::string& query, std::vector<double>& acc) const {
  acc.assign(static_cast<std::size_t>(n_docs_), 0.0);
  const double k1p1 = options_.k1 + 1.0;
  for_each_token(query, [&](const std::string& t) {
    const auto it = term_index_.find(t);
    if (it == term_index_.end()) return;
    const double idf = idf_[static_cast<std::size_t>(it->second)];
    for (const Posting& p : postings_[static_cast<std::size_t>(it->second)]) {
      const double f = static_cast<double>(p.tf);
      acc[static_cast<std::size_t>(p.doc)] += idf * f * k1p1 / (f + norm_[static_cast<std::size_t>(p.doc)]);
    }
  });
}

std::vector<double> BM25TopK::scores(const std::string& query) const {
  std::vector<double> acc;
  accumulate(query, acc);
  return acc;
}

SelectResult BM25TopK::select(const std::vector<std::string>& queries, std::int64_t k) const {
  if (k <= 0) throw InvalidArgument(fmt::format("k must be >= 1 (k={})", k));
  if (k > n_docs_) throw InvalidArgument(fmt::format("k must be <= pool size (k={}, pool={})", k, n_docs_));
  const std::int64_t n_queries = static_cast<std::int64_t>(queries.size());
  SelectResult out;
  out.resize(n_queries, k);  // checks n_queries * k
  std::exception_ptr error;
#ifdef _OPENMP
  const int threads = options_.num_threads > 0 ? options_.num_threads : omp_get_max_threads();
#pragma omp parallel num_threads(threads) if (n_queries > 1)
#endif
  {
    std::vector<double> acc;
    std::vector<std::int64_t> order(static_cast<std::size_t>(n_docs_));
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 8)
#endif
    for (std::int64_t q = 0; q < n_queries; ++q) {
      try {
        accumulate(queries[static_cast<std::size_t>(q)], acc);
        std::iota(order.begin(), order.end(), 0);
        std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](std::int64_t a, std::int64_t b) {
          const double sa = acc[static_cast<std::size_t>(a)], sb = acc[static_cast<std::size_t>(b)];
          return sa > sb || (sa == sb && a < b);
        });
        for (std::int64_t r = 0; r < k; ++r) {
          const std::int64_t id = order[static_cast<std::size_t>(r)];
          out.ids[static_cast<std::size_t>(q * k + r)] = id;
          out.scores[static_cast<std::size_t>(q * k + r)] = static_cast<float>(acc[static_cast<std::size_t>(id)]);
        }
      } catch (...) {
#ifdef _OPENMP
#pragma omp critical(crossicl_bm25_error)
#endif
        if (!error) error = std::current_exception();
      }
    }
  }
  if (error) std::rethrow_exception(error);
  return out;
}

}  // namespace crossicl
