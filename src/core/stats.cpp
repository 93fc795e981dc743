#include "crossicl/core/stats.h"

#include <algorithm>
#include <cmath>
#include <array>
#include <limits>

#include <fmt/format.h>

#include "crossicl/core/error.h"
#include "detail/enum_names.h"

namespace crossicl {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// Continued fraction of I_x(a, b) (the even/odd terms of the standard expansion), by the modified Lentz method.
// Converges quickly for x < (a+1)/(a+b+2); the number of terms grows like sqrt(max(a, b)).
double beta_continued_fraction(double a, double b, double x) {
  constexpr double kTiny = 1e-300;
  constexpr double kEps = 1e-16;
  constexpr int kMaxTerms = 1000000;
  double c = 1.0;
  double d = 1.0 - (a + b) * x / (a + 1.0);
  if (std::fabs(d) < kTiny) d = kTiny;
  d = 1.0 / d;
  double h = d;
  for (int m = 1; m <= kMaxTerms; ++m) {
    const double md = m;
    // even term d_{2m}
    double num = md * (b - md) * x / ((a + 2 * md - 1.0) * (a + 2 * md));
    d = 1.0 + num * d;
    if (std::fabs(d) < kTiny) d = kTiny;
    c = 1.0 + num / c;
    if (std::fabs(c) < kTiny) c = kTiny;
    d = 1.0 / d;
    h *= d * c;
    // odd term d_{2m+1}
    num = -(a + md) * (a + b + md) * x / ((a + 2 * md) * (a + 2 * md + 1.0));
    d = 1.0 + num * d;
    if (std::fabs(d) < kTiny) d = kTiny;
    c = 1.0 + num / c;
    if (std::fabs(c) < kTiny) c = kTiny;
    d = 1.0 / d;
    const double delta = d * c;
    h *= delta;
    if (std::fabs(delta - 1.0) < kEps) break;
  }
  return h;
}

// Stirling remainder delta(z) = lgamma(z) - ((z - 1/2) ln z - z + ln(2 pi) / 2), for z >= 10 (series to z^-9,
// truncation error below 2e-14 / z^2 relative to lgamma's scale).
double stirling_delta(double z) {
  const double r = 1.0 / z, r2 = r * r;
  return r * (1.0 / 12 - r2 * (1.0 / 360 - r2 * (1.0 / 1260 - r2 * (1.0 / 1680 - r2 / 1188))));
}

// ln(x (a+b) / a), accurate near the mode x = a / (a+b), where it is ~0 and a * it must not lose digits.
double log_ratio_to_mode(double a, double b, double x, double y) {
  const double u = (x * b - y * a) / a;  // x (a+b) / a - 1
  return std::fabs(u) < 0.5 ? std::log1p(u) : std::log(x) + std::log1p(b / a);
}

// ln(x^a y^b / B(a, b)) with y = 1 - x. lgamma(a) and lgamma(a+b) are ~a ln a, so for a large parameter the
// plain formula cancels thousands against thousands; the Stirling split keeps only the small remainders.
double log_beta_prefix(double a, double b, double x, double y) {
  constexpr double kBig = 10.0;
  constexpr double kHalfLog2Pi = 0.91893853320467274178;
  if (a >= kBig && b >= kBig) {
    return a * log_ratio_to_mode(a, b, x, y) + b * log_ratio_to_mode(b, a, y, x) +
           0.5 * (std::log(a) + std::log(b) - std::log(a + b)) - kHalfLog2Pi - stirling_delta(a) -
           stirling_delta(b) + stirling_delta(a + b);
  }
  if (a >= kBig) {  // b small
    return a * log_ratio_to_mode(a, b, x, y) - 0.5 * std::log1p(b / a) + b * std::log(y) + b * std::log(a + b) - b -
           std::lgamma(b) + stirling_delta(a + b) - stirling_delta(a);
  }
  if (b >= kBig) {  // a small: the mirror image
    return b * log_ratio_to_mode(b, a, y, x) - 0.5 * std::log1p(a / b) + a * std::log(x) + a * std::log(a + b) - a -
           std::lgamma(a) + stirling_delta(a + b) - stirling_delta(b);
  }
  return a * std::log(x) + b * std::log(y) + std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b);
}

// x^a (1-x)^b / (a B(a, b)) * cf, with y = 1 - x passed exactly to keep the tails accurate.
double beta_lower_tail(double a, double b, double x, double y) {
  return std::exp(log_beta_prefix(a, b, x, y)) * beta_continued_fraction(a, b, x) / a;
}

// I_x(a, b) given x and y = 1 - x (both in [0, 1]).
double ibeta(double a, double b, double x, double y) {
  if (x <= 0.0) return 0.0;
  if (y <= 0.0) return 1.0;
  if (x < (a + 1.0) / (a + b + 2.0)) return beta_lower_tail(a, b, x, y);
  return 1.0 - beta_lower_tail(b, a, y, x);
}

// P(|T| >= |t|) for Student's t with df degrees of freedom: I_{df/(df+t^2)}(df/2, 1/2).
double student_t_two_tailed(double t, double df) {
  if (std::isnan(t) || std::isnan(df)) return kNaN;
  if (std::isinf(t)) return 0.0;
  const double t2 = t * t;
  if (std::isinf(t2)) return 0.0;
  const double x = df / (df + t2);
  const double y = t2 / (df + t2);
  return ibeta(0.5 * df, 0.5, x, y);
}

// Two-sided standard-normal quantile: z with P(|Z| >= z) = alpha, by bisection on erfc (exact to the last bits).
double normal_two_sided_quantile(double alpha) {
  double lo = 0.0, hi = 40.0;
  for (int i = 0; i < 200; ++i) {
    const double mid = 0.5 * (lo + hi);
    if (std::erfc(mid / std::sqrt(2.0)) > alpha) lo = mid;
    else hi = mid;
  }
  return 0.5 * (lo + hi);
}

}  // namespace

// Names of Alternative's values, in their order (scipy's).
constexpr std::array<std::string_view, 3> kAlternativeNames = {"greater", "less", "two-sided"};

Alternative alternative_from_name(std::string_view name) {
  return detail::parse_enum<Alternative>(kAlternativeNames, name, "alternative", detail::NameError::Unknown);
}

std::string_view alternative_name(Alternative alternative) { return detail::enum_name(kAlternativeNames, alternative); }

double incomplete_beta(double a, double b, double x) {
  if (!(a > 0.0) || !(b > 0.0) || !(x >= 0.0 && x <= 1.0) || std::isinf(a) || std::isinf(b))
    throw InvalidArgument(fmt::format("incomplete_beta needs a > 0, b > 0, 0 <= x <= 1 (a={}, b={}, x={})", a, b, x));
  return ibeta(a, b, x, 1.0 - x);
}

double student_t_sf(double t, double df) {
  if (std::isnan(t) || std::isnan(df)) return kNaN;
  if (!(df > 0.0)) throw InvalidArgument(fmt::format("student_t_sf needs df > 0 (df={})", df));
  const double p2 = student_t_two_tailed(t, df);
  return t > 0.0 ? 0.5 * p2 : 1.0 - 0.5 * p2;
}

double student_t_cdf(double t, double df) { return student_t_sf(-t, df); }

double mean(const std::vector<double>& values) {
  if (values.empty()) throw InvalidArgument("mean of an empty vector");
  double sum = 0.0;
  for (double v : values) sum += v;
  return sum / static_cast<double>(values.size());
}

TTestResult paired_ttest(const std::vector<double>& a, const std::vector<double>& b, Alternative alternative) {
  if (a.size() != b.size())
    throw InvalidArgument(fmt::format("paired_ttest needs samples of equal length (a={}, b={})", a.size(), b.size()));
  if (a.size() < 2) throw InvalidArgument(fmt::format("paired_ttest needs at least 2 pairs (n={})", a.size()));
  const std::size_t n = a.size();
  std::vector<double> d(n);
  for (std::size_t i = 0; i < n; ++i) d[i] = a[i] - b[i];
  const double dm = mean(d);
  double ss = 0.0;
  for (double v : d) ss += (v - dm) * (v - dm);
  const double var = ss / static_cast<double>(n - 1);

  TTestResult r;
  r.n = n;
  r.df = static_cast<double>(n - 1);
  r.mean_diff = dm;
  r.alternative = alternative;
  if (std::isnan(var)) {
    r.t = kNaN;
  } else if (var == 0.0) {
    r.t = dm > 0.0 ? kInf : (dm < 0.0 ? -kInf : kNaN);
  } else {
    r.t = dm / std::sqrt(var / static_cast<double>(n));
  }
  if (std::isnan(r.t)) {
    r.p_one_tailed = r.p_two_tailed = r.pvalue = kNaN;
    return r;
  }
  r.p_two_tailed = student_t_two_tailed(r.t, r.df);
  switch (alternative) {
    case Alternative::Greater: r.p_one_tailed = student_t_sf(r.t, r.df); break;
    case Alternative::Less: r.p_one_tailed = student_t_cdf(r.t, r.df); break;
    case Alternative::TwoSided: r.p_one_tailed = 0.5 * r.p_two_tailed; break;
  }
  r.pvalue = alternative == Alternative::TwoSided ? r.p_two_tailed : r.p_one_tailed;
  return r;
}

Interval accuracy_interval(std::size_t hits, std::size_t n, double confidence) {
  if (n == 0) throw InvalidArgument("accuracy_interval needs n > 0 (n=0)");
  if (hits > n) throw InvalidArgument(fmt::format("accuracy_interval needs hits <= n (hits={}, n={})", hits, n));
  if (!(confidence > 0.0 && confidence < 1.0))
    throw InvalidArgument(fmt::format("confidence must be in (0, 1) (confidence={})", confidence));
  const double z = normal_two_sided_quantile(1.0 - confidence);
  const double nn = static_cast<double>(n);
  const double p = static_cast<double>(hits) / nn;
  const double z2n = z * z / nn;
  const double center = (p + 0.5 * z2n) / (1.0 + z2n);
  const double half = z / (1.0 + z2n) * std::sqrt(p * (1.0 - p) / nn + z * z / (4.0 * nn * nn));
  return {100.0 * std::max(0.0, center - half), 100.0 * std::min(1.0, center + half)};
}

double headline_gain(const std::map<std::string, double>& zero_shot,
                     const std::map<std::pair<std::string, std::string>, double>& cross) {
  if (zero_shot.empty()) throw InvalidArgument("headline_gain needs at least one target (zero_shot is empty)");
  std::map<std::string, std::pair<double, std::size_t>> per_target;  // target -> (sum, count) over sources
  for (const auto& [key, acc] : cross) {
    if (!zero_shot.count(key.first))
      throw InvalidArgument(fmt::format("headline_gain: target \"{}\" (source \"{}\") has no zero-shot accuracy",
                                        key.first, key.second));
    auto& s = per_target[key.first];
    s.first += acc;
    s.second += 1;
  }
  double a_zero = 0.0, a_cross = 0.0;
  for (const auto& [target, acc] : zero_shot) {
    auto it = per_target.find(target);
    if (it == per_target.end())
      throw InvalidArgument(fmt::format("headline_gain: target \"{}\" has no cross-task accuracy", target));
    a_zero += acc;
    a_cross += it->second.first / static_cast<double>(it->second.second);
  }
  const double nt = static_cast<double>(zero_shot.size());
  a_zero /= nt;
  a_cross /= nt;
  if (a_zero == 0.0)
    throw InvalidArgument(fmt::format("headline_gain: mean zero-shot accuracy is 0 over {} targets", zero_shot.size()));
  return (a_cross - a_zero) / a_zero;
}

}  // namespace crossicl
