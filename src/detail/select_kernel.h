// Internals of the cosine selectors: the fixed-order dot-product kernel, per-query top-k heaps, input checks.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace crossicl::detail {

/// One candidate of a top-k list.
struct Scored {
  float score;
  std::int64_t idx;
};

/// a ranks before b: higher score, then lower index.
inline bool ranks_before(const Scored& a, const Scored& b) {
  return a.score > b.score || (a.score == b.score && a.idx < b.idx);
}

/// The k best candidates of one query, kept as a heap whose front is the worst kept one.
class TopKHeap {
 public:
  TopKHeap(Scored* storage, std::int64_t k) : h_(storage), k_(k) {}
  void offer(float score, std::int64_t idx) {
    if (n_ < k_) {
      h_[n_++] = {score, idx};
      std::push_heap(h_, h_ + n_, ranks_before);
    } else if (score >= h_[0].score && ranks_before({score, idx}, h_[0])) {
      std::pop_heap(h_, h_ + n_, ranks_before);
      h_[n_ - 1] = {score, idx};
      std::push_heap(h_, h_ + n_, ranks_before);
    }
  }
  /// Sorts the kept candidates best first; returns how many there are.
  std::int64_t finish() {
    std::sort(h_, h_ + n_, ranks_before);
    return n_;
  }

 private:
  Scored* h_;
  std::int64_t k_;
  std::int64_t n_ = 0;
};

/// Inverse L2 norms of the rows of a row-major [rows, dim] matrix, checking that every value is finite and
/// 0 < norm < sqrt(FLT_MAX). `what` names the matrix in messages ("pool", "query").
std::vector<float> checked_inverse_norms(const float* data, std::int64_t rows, std::int64_t dim,
                                         const std::string& what);

void check_k(std::int64_t k, std::int64_t pool);

/// Cosine scores of query rows against pool rows, streamed to a sink in ascending pool order per query.
/// Every score is dot(q, p) * q_inv * p_inv with dot accumulated in column order by one code path, so a
/// (query, pool row) pair gets the same bits whatever the blocking.
struct ScoreScan {
  const float* pool;         // [rows, dim]
  const float* pool_inv;     // [rows]
  std::int64_t dim;
  std::int64_t pool_block;   // pool rows packed per step

  /// queries: n_q row pointers; q_inv: [n_q]; list: pool rows to score (nullptr = range [0, n_list)).
  /// sink(query_index, list_index, pool_row, score) is called for every pair.
  template <class Sink>
  void run(const float* const* queries, const float* q_inv, std::int64_t n_q, const std::int64_t* list,
           std::int64_t n_list, std::vector<float>& scratch, Sink&& sink) const;
};

constexpr int kTileRows = 6;     // queries per micro tile
constexpr int kTileCols = 16;    // pool rows per packed panel

#if defined(__GNUC__)
typedef float Lanes __attribute__((vector_size(kTileCols * sizeof(float)), aligned(4), may_alias));
#endif

/// acc[r][l] = sum_t q[r][t] * panel[t][l], accumulated in t order; panel is [dim][kTileCols].
inline void tile_dot(const float* const* q, const float* panel, std::int64_t dim,
                     float (&out)[kTileRows][kTileCols]) {
#if defined(__GNUC__)
  Lanes acc[kTileRows];
  for (int r = 0; r < kTileRows; ++r) acc[r] = Lanes{} ;
  const float* q0 = q[0];
  const float* q1 = q[1];
  const float* q2 = q[2];
  const float* q3 = q[3];
  const float* q4 = q[4];
  const float* q5 = q[5];
  for (std::int64_t t = 0; t < dim; ++t) {
    const Lanes p = *reinterpret_cast<const Lanes*>(panel + t * kTileCols);
    acc[0] += q0[t] * p;
    acc[1] += q1[t] * p;
    acc[2] += q2[t] * p;
    acc[3] += q3[t] * p;
    acc[4] += q4[t] * p;
    acc[5] += q5[t] * p;
  }
  for (int r = 0; r < kTileRows; ++r)
    for (int l = 0; l < kTileCols; ++l) out[r][l] = acc[r][l];
#else
  float acc[kTileRows][kTileCols] = {};
  for (std::int64_t t = 0; t < dim; ++t) {
    const float* p = panel + t * kTileCols;
    for (int r = 0; r < kTileRows; ++r) {
      const float a = q[r][t];
      for (int l = 0; l < kTileCols; ++l) acc[r][l] += a * p[l];
    }
  }
  for (int r = 0; r < kTileRows; ++r)
    for (int l = 0; l < kTileCols; ++l) out[r][l] = acc[r][l];
#endif
}

template <class Sink>
void ScoreScan::run(const float* const* queries, const float* q_inv, std::int64_t n_q, const std::int64_t* list,
                    std::int64_t n_list, std::vector<float>& scratch, Sink&& sink) const {
  const std::int64_t block = std::max<std::int64_t>(kTileCols, (pool_block + kTileCols - 1) / kTileCols * kTileCols);
  const std::int64_t panel_size = dim * kTileCols;
  scratch.resize(static_cast<std::size_t>(block / kTileCols * panel_size));
  // Rows past the end of a query tile point at a zero row (their scores are dropped).
  std::vector<float> zero_row(static_cast<std::size_t>(dim), 0.0f);
  const float* qp[kTileRows];
  float tile[kTileRows][kTileCols];
  std::int64_t rows_of_panel[kTileCols];
  float inv_of_panel[kTileCols];
  for (std::int64_t b0 = 0; b0 < n_list; b0 += block) {
    const std::int64_t b1 = std::min(n_list, b0 + block);
    const std::int64_t n_panels = (b1 - b0 + kTileCols - 1) / kTileCols;
    // Pack [b0, b1) as panels [dim][kTileCols], zero-padded.
    for (std::int64_t pi = 0; pi < n_panels; ++pi) {
      float* panel = scratch.data() + pi * panel_size;
      for (int l = 0; l < kTileCols; ++l) {
        const std::int64_t j = b0 + pi * kTileCols + l;
        if (j < b1) {
          const std::int64_t row = list ? list[j] : j;
          const float* src = pool + row * dim;
          for (std::int64_t t = 0; t < dim; ++t) panel[t * kTileCols + l] = src[t];
        } else {
          for (std::int64_t t = 0; t < dim; ++t) panel[t * kTileCols + l] = 0.0f;
        }
      }
    }
    for (std::int64_t pi = 0; pi < n_panels; ++pi) {
      const float* panel = scratch.data() + pi * panel_size;
      const std::int64_t c0 = b0 + pi * kTileCols;
      const int n_cols = static_cast<int>(std::min<std::int64_t>(kTileCols, b1 - c0));
      for (int l = 0; l < n_cols; ++l) {
        rows_of_panel[l] = list ? list[c0 + l] : c0 + l;
        inv_of_panel[l] = pool_inv[rows_of_panel[l]];
      }
      for (std::int64_t q0 = 0; q0 < n_q; q0 += kTileRows) {
        const int n_rows = static_cast<int>(std::min<std::int64_t>(kTileRows, n_q - q0));
        for (int r = 0; r < kTileRows; ++r) qp[r] = r < n_rows ? queries[q0 + r] : zero_row.data();
        tile_dot(qp, panel, dim, tile);
        for (int r = 0; r < n_rows; ++r) {
          const float qi = q_inv[q0 + r];
          for (int l = 0; l < n_cols; ++l) sink(q0 + r, c0 + l, rows_of_panel[l], tile[r][l] * qi * inv_of_panel[l]);
        }
      }
    }
  }
}

}  // namespace crossicl::detail
