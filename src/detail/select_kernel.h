// Internals of the cosine selectors: the fixed-order dot-product kernel, per-query top-k heaps, input checks.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "crossicl/core/isa.h"

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
  Isa isa = active_isa();    // instruction-set path of the tile kernel

  /// queries: n_q row pointers; q_inv: [n_q]; list: pool rows to score (nullptr = range [0, n_list)).
  /// sink(query_index, list_index, pool_row, score) is called for every pair.
  template <class Sink>
  void run(const float* const* queries, const float* q_inv, std::int64_t n_q, const std::int64_t* list,
           std::int64_t n_list, std::vector<float>& scratch, Sink&& sink) const;
};

constexpr int kTileRows = 6;     // queries per micro tile
constexpr int kTileCols = 16;    // pool rows per packed panel

/// acc[r][l] = sum_t q[r][t] * panel[t][l], accumulated in t order; panel is [dim][kTileCols].
using TileDotFn = void (*)(const float* const* q, const float* panel, std::int64_t dim,
                           float (&out)[kTileRows][kTileCols]);

/// The tile kernel of an instruction-set path (select_tile.inc, compiled per path by select_kernel.cpp).
TileDotFn tile_dot_for(Isa isa);

template <class Sink>
void ScoreScan::run(const float* const* queries, const float* q_inv, std::int64_t n_q, const std::int64_t* list,
                    std::int64_t n_list, std::vector<float>& scratch, Sink&& sink) const {
  const std::int64_t block = std::max<std::int64_t>(kTileCols, (pool_block + kTileCols - 1) / kTileCols * kTileCols);
  const std::int64_t panel_size = dim * kTileCols;
  scratch.resize(static_cast<std::size_t>(block / kTileCols * panel_size));
  // Rows past the end of a query tile point at a zero row (their scores are dropped).
  std::vector<float> zero_row(static_cast<std::size_t>(dim), 0.0f);
  const TileDotFn tile_dot = tile_dot_for(isa);
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
