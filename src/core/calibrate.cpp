#include "crossicl/core/calibrate.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string_view>

#include <fmt/format.h>

#include "crossicl/core/error.h"

namespace crossicl {
namespace {

// Shape and finiteness of one input matrix; `name` goes into the messages.
void check_matrix(const LabelMatrix& x, std::string_view name) {
  if (x.rows < 0 || x.cols < 0 || x.data.size() != static_cast<std::size_t>(x.rows * x.cols))
    throw InvalidArgument(fmt::format("calibrate: {} has {} values for a [{}, {}] matrix", name, x.data.size(),
                                      x.rows, x.cols));
  for (std::int64_t i = 0; i < x.rows; ++i)
    for (std::int64_t j = 0; j < x.cols; ++j) {
      const double v = x.data[static_cast<std::size_t>(i * x.cols + j)];
      if (!std::isfinite(v))
        throw InvalidArgument(fmt::format("calibrate: {}[{}, {}] is {} (log-probabilities must be finite)", name, i,
                                          j, v));
    }
}

// log(sum(exp(v[j]))) over one row of `m` values.
double log_sum_exp(const double* v, std::int64_t m) {
  const double top = *std::max_element(v, v + m);
  double s = 0.0;
  for (std::int64_t j = 0; j < m; ++j) s += std::exp(v[j] - top);
  return top + std::log(s);
}

}  // namespace

LabelMatrix calibrate(const LabelMatrix& label_logprobs, const LabelMatrix& content_free_logprobs) {
  const LabelMatrix& x = label_logprobs;
  const LabelMatrix& cf = content_free_logprobs;
  check_matrix(x, "label_logprobs");
  check_matrix(cf, "content_free_logprobs");
  if (x.cols != cf.cols)
    throw InvalidArgument(fmt::format("calibrate: label_logprobs has {} labels but content_free_logprobs has {}",
                                      x.cols, cf.cols));
  if (x.cols == 0) throw InvalidArgument("calibrate: no label (m = 0)");
  if (cf.rows == 0) throw InvalidArgument("calibrate: no content-free input (c = 0)");
  const std::int64_t m = x.cols;

  // log p_cf[j] = log(mean over c of softmax(cf row)[j]) = logsumexp over c of (cf[c, j] - lse(cf row c)) - log c
  std::vector<double> norm(static_cast<std::size_t>(cf.rows));
  for (std::int64_t c = 0; c < cf.rows; ++c) norm[c] = log_sum_exp(&cf.data[c * m], m);
  std::vector<double> log_p_cf(static_cast<std::size_t>(m)), column(static_cast<std::size_t>(cf.rows));
  for (std::int64_t j = 0; j < m; ++j) {
    for (std::int64_t c = 0; c < cf.rows; ++c) column[c] = cf.data[c * m + j] - norm[c];
    log_p_cf[j] = log_sum_exp(column.data(), cf.rows) - std::log(static_cast<double>(cf.rows));
  }

  // log q = log p - log p_cf; the row's own softmax normaliser cancels in the final normalisation.
  LabelMatrix out{x.rows, m, std::vector<double>(x.data.size())};
  for (std::int64_t i = 0; i < x.rows; ++i) {
    double* row = &out.data[i * m];
    for (std::int64_t j = 0; j < m; ++j) row[j] = x.data[i * m + j] - log_p_cf[j];
    const double lse = log_sum_exp(row, m);
    for (std::int64_t j = 0; j < m; ++j) row[j] -= lse;
  }
  return out;
}

}  // namespace crossicl
