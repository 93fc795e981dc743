// Statistics of the paper's tables: the paired t-test the authors ran (scipy.stats.ttest_rel over paired 0/1
// correctness vectors, p/2 as the one-tailed p), the Student-t distribution it needs (through a regularized
// incomplete beta of our own: no statistics library is a dependency), a Wilson confidence interval for an
// accuracy, and the headline gain of the abstract (fixture README, section 12).
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace crossicl {

/// Alternative hypothesis of a paired test on d = a - b ("greater": mean of a > mean of b).
enum class Alternative { Greater, Less, TwoSided };

/// Parses "greater", "less" or "two-sided" (scipy's names). Throws InvalidArgument naming the valid ones.
Alternative alternative_from_name(std::string_view name);

/// The name of an alternative ("greater", "less", "two-sided").
std::string_view alternative_name(Alternative alternative);

/// Result of paired_ttest. All p-values are in [0, 1] or NaN.
struct TTestResult {
  double t = 0;             // mean(d) / (sd(d) / sqrt(n)), d = a - b, sd with n-1; +-inf / NaN if sd = 0
  double df = 0;            // degrees of freedom, n - 1
  double p_one_tailed = 0;  // P(T >= t) for Greater, P(T <= t) for Less; for TwoSided, p_two_tailed / 2
  double p_two_tailed = 0;  // P(|T| >= |t|), scipy's default ttest_rel p-value
  double mean_diff = 0;     // mean(d)
  std::size_t n = 0;        // number of pairs
  Alternative alternative = Alternative::Greater;  // the hypothesis `pvalue` refers to
  double pvalue = 0;        // p_one_tailed for Greater/Less, p_two_tailed for TwoSided
};

/// Paired t-test of a against b, as scipy.stats.ttest_rel(a, b, alternative=...). The authors' one-tailed
/// "p/2" equals p_one_tailed for Greater whenever t > 0 (their test also required t > 0, so "p/2 < 0.05 and
/// t > 0" is exactly "p_one_tailed < 0.05").
/// Zero variance of d (as scipy): mean(d) > 0 gives t = +inf, p_two_tailed = 0, Greater p = 0, Less p = 1;
/// mean(d) < 0 the mirror image; mean(d) = 0 gives t = NaN and NaN p-values. A NaN input gives NaN t and
/// p-values (df stays n - 1, where scipy reports NaN).
/// Throws InvalidArgument if the sizes differ (naming both) or n < 2.
///
///   auto r = crossicl::paired_ttest({1, 1, 0, 1}, {0, 1, 0, 0});  // r.t = 1.7320508, r.p_one_tailed = 0.090845
TTestResult paired_ttest(const std::vector<double>& a, const std::vector<double>& b,
                         Alternative alternative = Alternative::Greater);

/// Regularized incomplete beta I_x(a, b) for a, b > 0 and 0 <= x <= 1 (scipy.special.betainc): Lentz's continued
/// fraction, evaluated on the side x < (a+1)/(a+b+2) and reflected otherwise, with the prefactor
/// x^a (1-x)^b / B(a, b) computed through Stirling remainders for parameters >= 10 so that large a, b do not
/// cancel. Measured against scipy (random a, b log-uniform, x within 3 sd of the mean): relative error below
/// 1.1e-13 for a, b <= 1e3, 7e-13 for <= 1e4, 1.2e-11 for <= 1e5; results below ~1e-300 underflow to denormals or
/// 0. Throws InvalidArgument outside the domain.
double incomplete_beta(double a, double b, double x);

/// Student-t survival function P(T >= t) with df > 0 degrees of freedom, from I_{df/(df+t^2)}(df/2, 1/2) with
/// 1 - x formed as t^2/(df+t^2), so the far tails keep their relative accuracy (measured: within 1e-11 of
/// scipy.stats.t.sf for |t| <= 40, df 1..1e5). Handles t = +-inf; NaN gives NaN. Throws InvalidArgument if df <= 0.
double student_t_sf(double t, double df);

/// Student-t CDF P(T <= t) = student_t_sf(-t, df).
double student_t_cdf(double t, double df);

/// Arithmetic mean. Throws InvalidArgument for an empty vector.
double mean(const std::vector<double>& values);

/// A two-sided interval, in the unit of what it bounds.
struct Interval {
  double lo = 0;  // lower bound
  double hi = 0;  // upper bound
};

/// Wilson score interval for an accuracy of `hits` out of `n`, in percent (0-100), at `confidence` (0-1,
/// exclusive; 0.95 = z 1.959964). Throws InvalidArgument if n = 0, hits > n or confidence is outside (0, 1).
///
///   auto ci = crossicl::accuracy_interval(23, 500);  // {3.0845, 6.8078}
Interval accuracy_interval(std::size_t hits, std::size_t n, double confidence = 0.95);

/// The abstract's headline gain (README section 12), as a fraction (1.0631 = +106.31%):
/// gain = (A_cross - A_zero) / A_zero, A_zero = mean over targets of the zero-shot accuracy, A_cross = mean over
/// targets of (mean over that target's sources of the 1-shot cross-task accuracy). Targets are the keys of
/// `zero_shot`; `cross` maps (target, source) to an accuracy. Throws InvalidArgument if `zero_shot` is empty, a
/// target has no cross entry, a cross entry's target has no zero-shot accuracy, or A_zero = 0.
///
///   double g = crossicl::headline_gain({{"T", 40.0}}, {{{"T", "s1"}, 50.0}, {{"T", "s2"}, 70.0}});  // 0.5
double headline_gain(const std::map<std::string, double>& zero_shot,
                     const std::map<std::pair<std::string, std::string>, double>& cross);

}  // namespace crossicl
