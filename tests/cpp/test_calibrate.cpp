// Contextual calibration (crossicl/core/calibrate.h) against hand-computed values. The Python surface is tested
// against an independent numpy implementation in tests/python/test_calibrate.py.
#include <cmath>
#include <limits>
#include <vector>

#include <catch2/catch.hpp>

#include "crossicl/core/calibrate.h"
#include "crossicl/core/error.h"
#include "tolerance.h"

using crossicl::LabelMatrix;
namespace tol = crossicl::test::tol;

namespace {

LabelMatrix logs(std::int64_t rows, std::int64_t cols, const std::vector<double>& probs) {
  LabelMatrix m{rows, cols, {}};
  for (double p : probs) m.data.push_back(std::log(p));
  return m;
}

}  // namespace

TEST_CASE("calibrate divides by the content-free probabilities and renormalises", "[calibrate]") {
  // p = (0.6, 0.4); content-free rows (0.8, 0.2) and (0.6, 0.4) average to p_cf = (0.7, 0.3);
  // q = (0.6/0.7, 0.4/0.3) = (0.857142..., 1.333...) -> (0.391304..., 0.608695...): the arg-max flips.
  const LabelMatrix q = crossicl::calibrate(logs(1, 2, {0.6, 0.4}), logs(2, 2, {0.8, 0.2, 0.6, 0.4}));
  REQUIRE(q.rows == 1);
  REQUIRE(q.cols == 2);
  CHECK(std::exp(q.data[0]) == tol::approx(9.0 / 23.0, 1e-14));
  CHECK(std::exp(q.data[1]) == tol::approx(14.0 / 23.0, 1e-14));
}

TEST_CASE("calibrate ignores each row's additive constant", "[calibrate]") {
  // Unnormalised scores (sum log-probs of labels) give the same result as their softmax.
  const LabelMatrix a = crossicl::calibrate(logs(2, 3, {0.5, 0.3, 0.2, 0.1, 0.1, 0.8}),
                                            logs(1, 3, {0.2, 0.5, 0.3}));
  LabelMatrix x = logs(2, 3, {0.5, 0.3, 0.2, 0.1, 0.1, 0.8});
  LabelMatrix cf = logs(1, 3, {0.2, 0.5, 0.3});
  for (int j = 0; j < 3; ++j) x.data[j] -= 700.0, x.data[3 + j] += 3.25, cf.data[j] -= 40.0;
  const LabelMatrix b = crossicl::calibrate(x, cf);
  for (std::size_t i = 0; i < a.data.size(); ++i) CHECK(b.data[i] == tol::approx(a.data[i], 1e-12, 10.0));
  // Rows are normalised: sum of exp = 1. Row 0: q = (2.5, 0.6, 0.6667) / 3.7667.
  for (int i = 0; i < 2; ++i) {
    double s = 0;
    for (int j = 0; j < 3; ++j) s += std::exp(a.data[i * 3 + j]);
    CHECK(s == tol::approx(1.0, 1e-14));
  }
  CHECK(std::exp(a.data[0]) == tol::approx(2.5 / (2.5 + 0.6 + 0.2 / 0.3), 1e-14));
}

TEST_CASE("calibrate with no item gives an empty result of the label width", "[calibrate]") {
  const LabelMatrix q = crossicl::calibrate({0, 3, {}}, logs(1, 3, {0.2, 0.5, 0.3}));
  CHECK(q.rows == 0);
  CHECK(q.cols == 3);
  CHECK(q.data.empty());
}

TEST_CASE("calibrate rejects mismatched widths, no content-free row and non-finite values", "[calibrate]") {
  using Catch::Matchers::Contains;
  const LabelMatrix x = logs(1, 2, {0.6, 0.4});
  CHECK_THROWS_WITH(crossicl::calibrate(x, logs(1, 3, {0.2, 0.5, 0.3})), Contains("2 labels") && Contains("has 3"));
  CHECK_THROWS_WITH(crossicl::calibrate(x, {0, 2, {}}), Contains("c = 0"));
  CHECK_THROWS_WITH(crossicl::calibrate({1, 0, {}}, {1, 0, {}}), Contains("m = 0"));
  LabelMatrix bad = logs(2, 2, {0.6, 0.4, 0.5, 0.5});
  bad.data[3] = -std::numeric_limits<double>::infinity();
  CHECK_THROWS_WITH(crossicl::calibrate(bad, x), Contains("label_logprobs[1, 1] is -inf"));
  bad.data[3] = std::nan("");
  CHECK_THROWS_WITH(crossicl::calibrate(x, bad), Contains("content_free_logprobs[1, 1] is nan"));
  CHECK_THROWS_WITH(crossicl::calibrate({2, 2, {0.0, 0.0}}, x), Contains("2 values for a [2, 2]"));
  CHECK_THROWS_AS(crossicl::calibrate(x, {0, 2, {}}), crossicl::InvalidArgument);
}
