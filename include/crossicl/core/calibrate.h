// Contextual calibration of label scores (Zhao et al., 2021, "Calibrate Before Use: Improving Few-Shot
// Performance of Language Models"): the model's probabilities over a task's labels are divided by its
// probabilities for a content-free input ("N/A", "", "[MASK]") in the same context, which removes the bias
// towards labels the context alone favours (majority label, recency, common tokens).
#pragma once

#include <cstdint>
#include <vector>

namespace crossicl {

/// A row-major [rows, cols] matrix of doubles, as calibrate takes and returns it.
struct LabelMatrix {
  std::int64_t rows = 0;      // items (or content-free inputs)
  std::int64_t cols = 0;      // labels
  std::vector<double> data;   // rows * cols values, row-major
};

/// Calibrated log-probabilities over the labels, one row per item.
///
/// label_logprobs [n, m]: each item's log-scores of the m labels (any additive constant per row; only the
/// softmax over the row matters). content_free_logprobs [c, m]: the same scores for c content-free inputs in the
/// same context. With p_i = softmax(row i of label_logprobs) and p_cf = the mean over the c rows of
/// softmax(content-free row), the result row i is log(q_i / sum(q_i)) with q_i = p_i / p_cf, so its arg-max is the
/// arg-max of W p_i with Zhao et al.'s W = diag(p_cf)^-1 (and b = 0). Computed in log space (log-sum-exp), so
/// scores far below the row maximum do not underflow. n = 0 gives a [0, m] result.
///
/// Throws InvalidArgument if the widths differ, m = 0, c = 0, data.size() != rows * cols, or any value is not
/// finite (naming the matrix, row and column).
///
///   auto q = crossicl::calibrate({1, 2, {std::log(0.6), std::log(0.4)}}, {1, 2, {std::log(0.8), std::log(0.2)}});
///   // q.data = {log(0.2727...), log(0.7272...)}: 0.6/0.8 = 0.75 and 0.4/0.2 = 2, normalised
LabelMatrix calibrate(const LabelMatrix& label_logprobs, const LabelMatrix& content_free_logprobs);

}  // namespace crossicl
