#include "crossicl/core/select.h"

#include <cfloat>
#include <cmath>
#include <exception>
#include <unordered_map>

#include <fmt/format.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "crossicl/core/error.h"
#include "detail/select_kernel.h"

namespace crossicl {

namespace detail {

std::vector<float> checked_inverse_norms(const float* data, std::int64_t rows, std::int64_t dim,
                                         const std::string& what) {
  // sqrt(FLT_MAX): with both norms below it, |dot| <= |q| |p| cannot overflow float, nor can any partial sum.
  static const double kMaxNorm = std::sqrt(static_cast<double>(FLT_MAX));
  std::vector<float> inv(static_cast<std::size_t>(rows));
  for (std::int64_t i = 0; i < rows; ++i) {
    const float* row = data + i * dim;
    double ss = 0.0;
    for (std::int64_t t = 0; t < dim; ++t) {
      if (!std::isfinite(row[t]))
        throw InvalidArgument(fmt::format("{} row {} is not finite (column {} = {})", what, i, t, row[t]));
      ss += static_cast<double>(row[t]) * static_cast<double>(row[t]);
    }
    const double norm = std::sqrt(ss);
    if (norm == 0.0) throw InvalidArgument(fmt::format("{} row {} has zero norm", what, i));
    if (norm >= kMaxNorm)
      throw InvalidArgument(fmt::format("{} row {} has norm {:g} >= {:g} (too large for float32)", what, i, norm,
                                        kMaxNorm));
    const float r = static_cast<float>(1.0 / norm);
    if (!std::isfinite(r))
      throw InvalidArgument(fmt::format("{} row {} has norm {:g}, too small for float32", what, i, norm));
    inv[static_cast<std::size_t>(i)] = r;
  }
  return inv;
}

void check_k(std::int64_t k, std::int64_t pool) {
  if (k <= 0) throw InvalidArgument(fmt::format("k must be >= 1 (k={})", k));
  if (k > pool) throw InvalidArgument(fmt::format("k must be <= pool size (k={}, pool={})", k, pool));
}

namespace {

// rows * cols elements of T, or 0 when the product overflows or is more than a std::vector<T> can hold.
template <class T>
std::size_t cells(std::int64_t rows, std::int64_t cols) {
  std::int64_t n = 0;
  if (rows < 0 || cols < 0 || __builtin_mul_overflow(rows, cols, &n) ||
      static_cast<std::uint64_t>(n) > std::vector<T>().max_size())
    return 0;
  return static_cast<std::size_t>(n);
}

void check_matrix(const float* data, std::int64_t rows, std::int64_t dim, const char* what) {
  if (rows < 0 || dim < 0) throw InvalidArgument(fmt::format("{} has negative shape ({}, {})", what, rows, dim));
  if (dim == 0) throw InvalidArgument(fmt::format("{} has width 0 (shape ({}, 0))", what, rows));
  if (rows > 0 && data == nullptr) throw InvalidArgument(fmt::format("{} data is null", what));
}

void check_queries(const float* queries, std::int64_t n_queries, std::int64_t dim, std::int64_t pool_dim) {
  check_matrix(queries, n_queries, dim, "queries");
  if (dim != pool_dim)
    throw InvalidArgument(
        fmt::format("mismatched embedding widths: queries have dim={}, pool has dim={}", dim, pool_dim));
}

int thread_count(int requested) {
#ifdef _OPENMP
  return requested > 0 ? requested : omp_get_max_threads();
#else
  (void)requested;
  return 1;
#endif
}

// Runs body(block_begin, block_end) over [0, n) in blocks of `block`, in parallel; rethrows the first exception.
template <class Body>
void parallel_blocks(std::int64_t n, std::int64_t block, int threads, Body&& body) {
  const std::int64_t n_blocks = (n + block - 1) / block;
  std::exception_ptr error;
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (n_blocks > 1)
#endif
  for (std::int64_t b = 0; b < n_blocks; ++b) {
    try {
      body(b * block, std::min(n, (b + 1) * block));
    } catch (...) {
#ifdef _OPENMP
#pragma omp critical(crossicl_select_error)
#endif
      if (!error) error = std::current_exception();
    }
  }
  (void)threads;
  if (error) std::rethrow_exception(error);
}

}  // namespace
}  // namespace detail

void SelectResult::resize(std::int64_t rows, std::int64_t cols) {
  const std::size_t n = detail::cells<std::int64_t>(rows, cols);
  if (n == 0 && rows != 0 && cols != 0)
    throw InvalidArgument(fmt::format("the result would hold n_queries * k ids, more than fit in memory "
                                      "(n_queries={}, k={})",
                                      rows, cols));
  ids.assign(n, 0);
  scores.assign(n, 0.0f);
  n_queries = rows;
  k = cols;
}

// ------------------------------------------------------------------------------------------------ CosineTopK

CosineTopK::CosineTopK(const float* pool, std::int64_t rows, std::int64_t dim, CosineOptions options)
    : pool_(pool), rows_(rows), dim_(dim), options_(options) {
  detail::check_matrix(pool, rows, dim, "pool");
  if (rows == 0) throw InvalidArgument(fmt::format("pool is empty (shape (0, {}))", dim));
  if (options_.query_block == 0) options_.query_block = 256;
  if (options_.pool_block == 0) options_.pool_block = 2048;
  if (options_.num_threads < 0)
    throw InvalidArgument(fmt::format("num_threads must be >= 0 (num_threads={})", options_.num_threads));
  inv_norm_ = detail::checked_inverse_norms(pool, rows, dim, "pool");
}

CosineTopK::CosineTopK(const ConstRowMatrixMap& pool, CosineOptions options)
    : CosineTopK(pool.data(), pool.rows(), pool.cols(), options) {}

SelectResult CosineTopK::select(const ConstRowMatrixMap& queries, std::int64_t k) const {
  return select(queries.data(), queries.rows(), queries.cols(), k);
}

SelectResult CosineTopK::select(const float* queries, std::int64_t n_queries, std::int64_t dim,
                                std::int64_t k) const {
  return select_subset(queries, n_queries, dim, k, {});
}

SelectResult CosineTopK::select_subset(const float* queries, std::int64_t n_queries, std::int64_t dim,
                                       std::int64_t k, const std::vector<std::int64_t>& subset) const {
  detail::check_queries(queries, n_queries, dim, dim_);
  const bool all = subset.empty();
  if (!all) {
    std::vector<bool> seen(static_cast<std::size_t>(rows_), false);
    for (std::size_t i = 0; i < subset.size(); ++i) {
      const std::int64_t r = subset[i];
      if (r < 0 || r >= rows_)
        throw InvalidArgument(fmt::format("subset[{}] = {} is not a pool row (pool={})", i, r, rows_));
      if (seen[static_cast<std::size_t>(r)])
        throw InvalidArgument(fmt::format("subset[{}] = {} is repeated", i, r));
      seen[static_cast<std::size_t>(r)] = true;
    }
  }
  const std::int64_t n_list = all ? rows_ : static_cast<std::int64_t>(subset.size());
  detail::check_k(k, n_list);
  const std::vector<float> q_inv = detail::checked_inverse_norms(queries, n_queries, dim, "query");

  SelectResult out;
  out.resize(n_queries, k);
  const detail::ScoreScan scan{pool_, inv_norm_.data(), dim_, static_cast<std::int64_t>(options_.pool_block)};
  // Few queries: smaller blocks so that every thread gets one (the scores do not depend on the blocking).
  const int threads = detail::thread_count(options_.num_threads);
  const std::int64_t qblock = std::min(static_cast<std::int64_t>(options_.query_block),
                                       std::max<std::int64_t>(4 * detail::kTileRows, (n_queries + threads - 1) / threads));
  detail::parallel_blocks(n_queries, qblock, threads,
                          [&](std::int64_t q0, std::int64_t q1) {
    const std::int64_t nq = q1 - q0;
    std::vector<const float*> rows(static_cast<std::size_t>(nq));
    for (std::int64_t i = 0; i < nq; ++i) rows[static_cast<std::size_t>(i)] = queries + (q0 + i) * dim;
    std::vector<detail::Scored> storage(static_cast<std::size_t>(nq * k));  // [nq, k]
    std::vector<detail::TopKHeap> heaps;
    heaps.reserve(static_cast<std::size_t>(nq));
    for (std::int64_t i = 0; i < nq; ++i) heaps.emplace_back(storage.data() + i * k, k);
    std::vector<float> scratch;
    scan.run(rows.data(), q_inv.data() + q0, nq, all ? nullptr : subset.data(), n_list, scratch,
             [&](std::int64_t qi, std::int64_t, std::int64_t row, float s) { heaps[static_cast<std::size_t>(qi)].offer(s, row); });
    for (std::int64_t i = 0; i < nq; ++i) {
      heaps[static_cast<std::size_t>(i)].finish();
      for (std::int64_t r = 0; r < k; ++r) {
        const detail::Scored& c = storage[static_cast<std::size_t>(i * k + r)];
        out.ids[static_cast<std::size_t>((q0 + i) * k + r)] = c.idx;
        out.scores[static_cast<std::size_t>((q0 + i) * k + r)] = c.score;
      }
    }
  });
  return out;
}

float CosineTopK::pool_similarity(std::int64_t a, std::int64_t b) const {
  if (a < 0 || a >= rows_ || b < 0 || b >= rows_)
    throw InvalidArgument(fmt::format("pool rows ({}, {}) out of range (pool={})", a, b, rows_));
  const detail::ScoreScan scan{pool_, inv_norm_.data(), dim_, detail::kTileCols};
  const float* q = pool_ + a * dim_;
  const float q_inv = inv_norm_[static_cast<std::size_t>(a)];
  std::vector<float> scratch;
  float result = 0.0f;
  scan.run(&q, &q_inv, 1, &b, 1, scratch, [&](std::int64_t, std::int64_t, std::int64_t, float s) { result = s; });
  return result;
}

// ------------------------------------------------------------------------------------------ MixedCosineTopK

MixedCosineTopK::MixedCosineTopK(const std::vector<Pool>& pools, CosineOptions options) {
  if (pools.empty()) throw InvalidArgument("MixedCosineTopK needs at least one pool (got 0)");
  pools_.reserve(pools.size());
  for (std::size_t i = 0; i < pools.size(); ++i) {
    if (pools[i].dim != pools[0].dim)
      throw InvalidArgument(fmt::format("mismatched embedding widths: pool 0 has dim={}, pool {} has dim={}",
                                        pools[0].dim, i, pools[i].dim));
    try {
      pools_.emplace_back(pools[i].data, pools[i].rows, pools[i].dim, options);
    } catch (const InvalidArgument& e) {
      throw InvalidArgument(fmt::format("pool {}: {}", i, e.what()));
    }
    total_ += pools[i].rows;
  }
  dim_ = pools[0].dim;
}

MixedSelectResult MixedCosineTopK::select(const float* queries, std::int64_t n_queries, std::int64_t dim,
                                          std::int64_t k) const {
  detail::check_queries(queries, n_queries, dim, dim_);
  detail::check_k(k, total_);
  std::vector<SelectResult> parts;
  parts.reserve(pools_.size());
  for (const CosineTopK& p : pools_) parts.push_back(p.select(queries, n_queries, dim, std::min(k, p.pool_size())));
  MixedSelectResult out;
  out.resize(n_queries, k);
  out.pool_ids.resize(out.ids.size());
  struct Cand {
    float score;
    std::int64_t pool, row;
  };
  std::vector<Cand> cands;
  for (std::int64_t q = 0; q < n_queries; ++q) {
    cands.clear();
    for (std::size_t p = 0; p < parts.size(); ++p)
      for (std::int64_t r = 0; r < parts[p].k; ++r)
        cands.push_back({parts[p].score(q, r), static_cast<std::int64_t>(p), parts[p].id(q, r)});
    std::partial_sort(cands.begin(), cands.begin() + k, cands.end(), [](const Cand& a, const Cand& b) {
      if (a.score != b.score) return a.score > b.score;
      if (a.pool != b.pool) return a.pool < b.pool;
      return a.row < b.row;
    });
    for (std::int64_t r = 0; r < k; ++r) {
      const std::size_t o = static_cast<std::size_t>(q * k + r);
      out.scores[o] = cands[static_cast<std::size_t>(r)].score;
      out.pool_ids[o] = cands[static_cast<std::size_t>(r)].pool;
      out.ids[o] = cands[static_cast<std::size_t>(r)].row;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------- MMR

MMR::MMR(const float* pool, std::int64_t rows, std::int64_t dim, MMROptions options)
    : cosine_(pool, rows, dim, options.cosine), options_(options) {
  if (!(options_.lambda >= 0.0f && options_.lambda <= 1.0f))
    throw InvalidArgument(fmt::format("lambda must be in [0, 1] (lambda={})", options_.lambda));
  if (options_.fetch_k <= 0) throw InvalidArgument(fmt::format("fetch_k must be >= 1 (fetch_k={})", options_.fetch_k));
}

SelectResult MMR::select(const float* queries, std::int64_t n_queries, std::int64_t dim, std::int64_t k) const {
  detail::check_queries(queries, n_queries, dim, cosine_.dim());
  detail::check_k(k, cosine_.pool_size());
  const std::int64_t fetch = std::min(std::max(options_.fetch_k, k), cosine_.pool_size());
  const SelectResult cand = cosine_.select(queries, n_queries, dim, fetch);
  SelectResult out;
  out.resize(n_queries, k);
  const float lambda = options_.lambda;
  const float* pool = cosine_.data();
  const std::int64_t d = cosine_.dim();
  const std::size_t n_sim = detail::cells<float>(fetch, fetch);  // per thread
  if (n_sim == 0)
    throw InvalidArgument(fmt::format("MMR's candidate similarities would hold fetch * fetch values, more than fit "
                                      "in memory (fetch={}: fetch_k={}, k={}, pool={})",
                                      fetch, options_.fetch_k, k, cosine_.pool_size()));
  const detail::ScoreScan scan{pool, cosine_.inverse_norms().data(), d, fetch};
  detail::parallel_blocks(n_queries, 16, detail::thread_count(options_.cosine.num_threads),
                          [&](std::int64_t q0, std::int64_t q1) {
    std::vector<float> sim(n_sim);  // [fetch, fetch] candidate similarities
    std::vector<const float*> rows(static_cast<std::size_t>(fetch));
    std::vector<float> inv(static_cast<std::size_t>(fetch));
    std::vector<float> scratch, max_sim(static_cast<std::size_t>(fetch));
    std::vector<char> picked(static_cast<std::size_t>(fetch));
    for (std::int64_t q = q0; q < q1; ++q) {
      const std::int64_t* ids = cand.ids.data() + q * fetch;
      for (std::int64_t c = 0; c < fetch; ++c) {
        rows[static_cast<std::size_t>(c)] = pool + ids[c] * d;
        inv[static_cast<std::size_t>(c)] = cosine_.inverse_norms()[static_cast<std::size_t>(ids[c])];
      }
      scan.run(rows.data(), inv.data(), fetch, ids, fetch, scratch, [&](std::int64_t a, std::int64_t c, std::int64_t, float s) {
        sim[static_cast<std::size_t>(a * fetch + c)] = s;
      });
      std::fill(picked.begin(), picked.end(), 0);
      std::fill(max_sim.begin(), max_sim.end(), 0.0f);
      for (std::int64_t r = 0; r < k; ++r) {
        std::int64_t best = -1;
        float best_value = 0.0f;
        for (std::int64_t c = 0; c < fetch; ++c) {
          if (picked[static_cast<std::size_t>(c)]) continue;
          const float rel = cand.scores[static_cast<std::size_t>(q * fetch + c)];
          const float value = r == 0 ? rel : lambda * rel - (1.0f - lambda) * max_sim[static_cast<std::size_t>(c)];
          if (best < 0 || value > best_value) {
            best = c;
            best_value = value;
          }
        }
        picked[static_cast<std::size_t>(best)] = 1;
        const std::size_t o = static_cast<std::size_t>(q * k + r);
        out.ids[o] = ids[best];
        out.scores[o] = cand.scores[static_cast<std::size_t>(q * fetch + best)];
        for (std::int64_t c = 0; c < fetch; ++c) {
          const float s = sim[static_cast<std::size_t>(c * fetch + best)];
          if (r == 0 || s > max_sim[static_cast<std::size_t>(c)]) max_sim[static_cast<std::size_t>(c)] = s;
        }
      }
    }
  });
  return out;
}

// ------------------------------------------------------------------------------------- LabelBalancedTopK

LabelBalancedTopK::LabelBalancedTopK(const float* pool, std::int64_t rows, std::int64_t dim,
                                     std::vector<std::string> labels, CosineOptions options)
    : cosine_(pool, rows, dim, options) {
  if (static_cast<std::int64_t>(labels.size()) != rows)
    throw InvalidArgument(
        fmt::format("labels has {} entries but the pool has {} rows", labels.size(), rows));
  std::unordered_map<std::string, std::size_t> number;
  for (std::int64_t i = 0; i < rows; ++i) {
    auto it = number.find(labels[static_cast<std::size_t>(i)]);
    if (it == number.end()) {
      it = number.emplace(labels[static_cast<std::size_t>(i)], names_.size()).first;
      names_.push_back(labels[static_cast<std::size_t>(i)]);
      rows_of_label_.emplace_back();
    }
    rows_of_label_[it->second].push_back(i);
  }
}

SelectResult LabelBalancedTopK::select(const float* queries, std::int64_t n_queries, std::int64_t dim,
                                       std::int64_t k) const {
  detail::check_queries(queries, n_queries, dim, cosine_.dim());
  detail::check_k(k, cosine_.pool_size());
  const std::int64_t n_labels = static_cast<std::int64_t>(names_.size());
  // Each label's own top-min(k, size): enough to fill its quota and any leftover slots.
  std::vector<SelectResult> per_label;
  per_label.reserve(names_.size());
  for (const auto& rows : rows_of_label_)
    per_label.push_back(cosine_.select_subset(queries, n_queries, dim,
                                              std::min<std::int64_t>(k, static_cast<std::int64_t>(rows.size())),
                                              rows));
  SelectResult out;
  out.resize(n_queries, k);
  std::vector<std::int64_t> quota(static_cast<std::size_t>(n_labels)), order(static_cast<std::size_t>(n_labels));
  std::vector<detail::Scored> chosen, rest;
  for (std::int64_t q = 0; q < n_queries; ++q) {
    for (std::int64_t l = 0; l < n_labels; ++l) {
      quota[static_cast<std::size_t>(l)] = k / n_labels;
      order[static_cast<std::size_t>(l)] = l;
    }
    // The k % L extra picks go to the labels whose best row is most similar (ties: lower label number).
    std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
      return per_label[static_cast<std::size_t>(a)].score(q, 0) > per_label[static_cast<std::size_t>(b)].score(q, 0);
    });
    for (std::int64_t e = 0; e < k % n_labels; ++e) ++quota[static_cast<std::size_t>(order[static_cast<std::size_t>(e)])];
    chosen.clear();
    rest.clear();
    for (std::int64_t l = 0; l < n_labels; ++l) {
      const SelectResult& r = per_label[static_cast<std::size_t>(l)];
      const std::int64_t take = std::min(quota[static_cast<std::size_t>(l)], r.k);
      for (std::int64_t i = 0; i < r.k; ++i) (i < take ? chosen : rest).push_back({r.score(q, i), r.id(q, i)});
    }
    const std::size_t missing = static_cast<std::size_t>(k) - chosen.size();
    std::partial_sort(rest.begin(), rest.begin() + static_cast<std::ptrdiff_t>(missing), rest.end(),
                      detail::ranks_before);
    chosen.insert(chosen.end(), rest.begin(), rest.begin() + static_cast<std::ptrdiff_t>(missing));
    std::sort(chosen.begin(), chosen.end(), detail::ranks_before);
    for (std::int64_t r = 0; r < k; ++r) {
      out.ids[static_cast<std::size_t>(q * k + r)] = chosen[static_cast<std::size_t>(r)].idx;
      out.scores[static_cast<std::size_t>(q * k + r)] = chosen[static_cast<std::size_t>(r)].score;
    }
  }
  return out;
}

}  // namespace crossicl
