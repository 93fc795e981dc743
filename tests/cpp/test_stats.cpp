// Statistics of crossicl/core/stats.h. Reference values were computed offline with scipy 1.17.1 / numpy 2.4.6
// (CPython 3.11): scipy.stats.ttest_rel(a, b, alternative=...) for the t-tests, scipy.special.betainc(a, b, x)
// for the incomplete beta, scipy.stats.t.sf(t, df) for the Student-t tail, and the Wilson formula with
// z = scipy.stats.norm.ppf(1 - alpha / 2) for the intervals; printed with repr() and pasted here.
#include <cmath>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "crossicl/core/error.h"
#include "crossicl/core/stats.h"
#include "tolerance.h"

using crossicl::Alternative;
namespace tol = crossicl::test::tol;

namespace {

// Paired 0/1 vectors with n11 pairs (1,1), n10 pairs (1,0), n01 pairs (0,1) and n00 pairs (0,0), interleaved so
// that order does not matter to the test.
std::pair<std::vector<double>, std::vector<double>> pairs01(int n11, int n10, int n01, int n00) {
  std::vector<double> a, b;
  for (int i = 0; i < n11; ++i) a.push_back(1), b.push_back(1);
  for (int i = 0; i < n10; ++i) a.push_back(1), b.push_back(0);
  for (int i = 0; i < n01; ++i) a.push_back(0), b.push_back(1);
  for (int i = 0; i < n00; ++i) a.push_back(0), b.push_back(0);
  return {a, b};
}

bool rel_close(double x, double ref, double rtol) { return std::fabs(x - ref) <= rtol * std::fabs(ref); }

}  // namespace

TEST_CASE("incomplete beta against scipy.special.betainc", "[stats]") {
  struct Case {
    double a, b, x, ref;
  };
  const Case cases[] = {
      {0.5, 0.5, 0.3, 0.36901011956554536},      {2, 3, 0.4, 0.5247999999999999},
      {10, 0.5, 0.9, 0.15164090963470994},       {1250.5, 0.5, 0.99, 5.356843419250565e-07},
      {0.5, 1250.5, 0.01, 0.9999994643156581},   {100, 200, 0.33, 0.45661816333399713},
      {5, 5, 0.5, 0.5},                          {1, 1, 0.25, 0.25},
      {3, 0.5, 1e-05, 3.125011718820313e-16},
  };
  for (const Case& c : cases) {
    CAPTURE(c.a, c.b, c.x);
    CHECK(rel_close(crossicl::incomplete_beta(c.a, c.b, c.x), c.ref, 1e-11));
  }
  // Closed forms: I_x(1, 1) = x, I_x(a, 1) = x^a, I_x(1, b) = 1 - (1-x)^b, symmetry I_x(a,b) = 1 - I_{1-x}(b,a).
  // A float64 continued fraction against them: relative 1e-14 .. 1e-13 (50 .. 500 ulps).
  CHECK(crossicl::incomplete_beta(1, 1, 0.7) == tol::approx(0.7, 1e-14));
  CHECK(crossicl::incomplete_beta(3.5, 1, 0.2) == tol::approx(std::pow(0.2, 3.5), 1e-13));
  CHECK(crossicl::incomplete_beta(1, 4.5, 0.3) == tol::approx(1 - std::pow(0.7, 4.5), 1e-13));
  CHECK(crossicl::incomplete_beta(2.5, 7, 0.3) + crossicl::incomplete_beta(7, 2.5, 0.7) == tol::approx(1.0, 1e-14));
  CHECK(crossicl::incomplete_beta(30, 40, 0.9) == tol::approx(1.0, 1e-14));
  CHECK(crossicl::incomplete_beta(2, 3, 0) == 0.0);
  CHECK(crossicl::incomplete_beta(2, 3, 1) == 1.0);
  CHECK_THROWS_AS(crossicl::incomplete_beta(0, 1, 0.5), crossicl::InvalidArgument);
  CHECK_THROWS_AS(crossicl::incomplete_beta(1, -1, 0.5), crossicl::InvalidArgument);
  CHECK_THROWS_AS(crossicl::incomplete_beta(1, 1, 1.5), crossicl::InvalidArgument);
  CHECK_THROWS_AS(crossicl::incomplete_beta(1, 1, std::nan("")), crossicl::InvalidArgument);
}

TEST_CASE("Student-t tail against scipy.stats.t.sf", "[stats]") {
  CHECK(rel_close(crossicl::student_t_sf(2.0, 5), 0.050969739414929174, 1e-12));
  CHECK(rel_close(crossicl::student_t_sf(-1.5, 10), 0.9177463367772799, 1e-12));
  CHECK(rel_close(crossicl::student_t_sf(10.0, 3), 0.0010641995292070751, 1e-12));
  CHECK(rel_close(crossicl::student_t_sf(40.0, 2501), 3.3762836119717283e-271, 1e-9));
  CHECK(crossicl::student_t_sf(0.0, 7) == 0.5);
  CHECK(rel_close(crossicl::student_t_sf(1e-3, 1), 0.49968169021990794, 1e-13));
  CHECK(crossicl::student_t_cdf(2.0, 5) == tol::approx(1 - 0.050969739414929174, 1e-13));
  CHECK(crossicl::student_t_sf(INFINITY, 4) == 0.0);
  CHECK(crossicl::student_t_sf(-INFINITY, 4) == 1.0);
  CHECK(std::isnan(crossicl::student_t_sf(std::nan(""), 4)));
  CHECK_THROWS_AS(crossicl::student_t_sf(1.0, 0), crossicl::InvalidArgument);
}

TEST_CASE("paired t-test against scipy.stats.ttest_rel", "[stats]") {
  SECTION("small 0/1 sample") {
    // ttest_rel([1,1,0,1], [0,1,0,0], alternative="greater")
    const auto r = crossicl::paired_ttest({1, 1, 0, 1}, {0, 1, 0, 0});
    CHECK(rel_close(r.t, 1.7320508075688774, 1e-14));
    CHECK(r.df == 3);
    CHECK(r.n == 4);
    CHECK(r.mean_diff == 0.5);
    CHECK(rel_close(r.p_one_tailed, 0.09084505690810468, 1e-12));
    CHECK(rel_close(r.p_two_tailed, 0.18169011381620936, 1e-12));
    CHECK(r.pvalue == r.p_one_tailed);
    CHECK(r.alternative == Alternative::Greater);
  }
  SECTION("floats, all three alternatives") {
    const std::vector<double> x = {2.5, 3.1, 4.7, 1.2, 0.3, 5.5, 2.2};
    const std::vector<double> y = {2.0, 3.5, 4.1, 1.0, 0.9, 4.4, 2.0};
    const auto g = crossicl::paired_ttest(x, y, Alternative::Greater);
    const auto l = crossicl::paired_ttest(x, y, Alternative::Less);
    const auto t = crossicl::paired_ttest(x, y, Alternative::TwoSided);
    CHECK(rel_close(g.t, 1.0335135260958552, 1e-13));
    CHECK(rel_close(g.pvalue, 0.17060544758125648, 1e-12));
    CHECK(rel_close(l.pvalue, 0.8293945524187435, 1e-12));
    CHECK(rel_close(t.pvalue, 0.34121089516251296, 1e-12));
    CHECK(t.p_one_tailed == tol::approx(t.p_two_tailed / 2, 1e-12));  // as the p-values above
  }
  SECTION("2502 pairs as in the authors' notebook (5 targets concatenated)") {
    const auto [a, b] = pairs01(700, 720, 530, 552);
    const auto g = crossicl::paired_ttest(a, b);
    CHECK(rel_close(g.t, 5.404217824234807, 1e-12));
    CHECK(g.df == 2501);
    CHECK(rel_close(g.pvalue, 3.562268225535291e-08, 1e-9));
    CHECK(rel_close(g.p_two_tailed, 7.124536451070582e-08, 1e-9));
    CHECK(rel_close(crossicl::paired_ttest(a, b, Alternative::Less).pvalue, 0.9999999643773178, 1e-12));
  }
  SECTION("negative t: the one-tailed p is not the authors' p/2") {
    const auto [a, b] = pairs01(100, 40, 45, 315);
    const auto g = crossicl::paired_ttest(a, b);
    CHECK(rel_close(g.t, -0.5419429654046806, 1e-12));
    CHECK(rel_close(g.pvalue, 0.705950147388692, 1e-12));
    CHECK(rel_close(g.p_two_tailed, 0.5880997052226161, 1e-12));
    CHECK(rel_close(crossicl::paired_ttest(a, b, Alternative::Less).pvalue, 0.29404985261130806, 1e-12));
  }
  SECTION("ties only on one side") {
    const auto [a, b] = pairs01(0, 3, 0, 5);
    const auto g = crossicl::paired_ttest(a, b);
    CHECK(rel_close(g.t, 2.0493901531919194, 1e-13));
    CHECK(rel_close(g.pvalue, 0.039801006227598794, 1e-12));
  }
  SECTION("t = 0") {
    const auto g = crossicl::paired_ttest({0, 1, 0, 1}, {1, 0, 1, 0});
    CHECK(g.t == 0.0);
    CHECK(g.pvalue == 0.5);
    CHECK(g.p_two_tailed == 1.0);
  }
}

TEST_CASE("paired t-test with zero variance follows scipy", "[stats]") {
  const auto up = crossicl::paired_ttest({1, 1, 1}, {0, 0, 0});
  CHECK(std::isinf(up.t));
  CHECK(up.t > 0);
  CHECK(up.pvalue == 0.0);
  CHECK(up.p_two_tailed == 0.0);
  CHECK(crossicl::paired_ttest({1, 1, 1}, {0, 0, 0}, Alternative::Less).pvalue == 1.0);
  const auto down = crossicl::paired_ttest({1, 1, 1}, {2, 2, 2});
  CHECK(down.t < 0);
  CHECK(std::isinf(down.t));
  CHECK(down.pvalue == 1.0);
  CHECK(crossicl::paired_ttest({1, 1, 1}, {2, 2, 2}, Alternative::Less).pvalue == 0.0);
  const auto same = crossicl::paired_ttest({1, 0, 1, 0}, {1, 0, 1, 0});
  CHECK(std::isnan(same.t));
  CHECK(std::isnan(same.pvalue));
  CHECK(std::isnan(same.p_two_tailed));
  CHECK(same.mean_diff == 0.0);
  const auto with_nan = crossicl::paired_ttest({1, std::nan(""), 1}, {2, 2, 3});
  CHECK(std::isnan(with_nan.t));
  CHECK(std::isnan(with_nan.pvalue));
}

TEST_CASE("paired t-test errors", "[stats]") {
  try {
    crossicl::paired_ttest({1, 0, 1}, {1, 0});
    FAIL("no exception");
  } catch (const crossicl::InvalidArgument& e) {
    const std::string msg = e.what();
    CHECK(msg.find("a=3") != std::string::npos);
    CHECK(msg.find("b=2") != std::string::npos);
  }
  CHECK_THROWS_AS(crossicl::paired_ttest({1}, {0}), crossicl::InvalidArgument);
  CHECK_THROWS_AS(crossicl::paired_ttest({}, {}), crossicl::InvalidArgument);
  CHECK(crossicl::alternative_from_name("two-sided") == Alternative::TwoSided);
  CHECK(crossicl::alternative_name(Alternative::Less) == "less");
  CHECK_THROWS_WITH(crossicl::alternative_from_name("bigger"), Catch::Contains("bigger") && Catch::Contains("two-sided"));
}

TEST_CASE("mean and Wilson interval", "[stats]") {
  CHECK(crossicl::mean({1, 2, 3, 4}) == 2.5);
  CHECK_THROWS_AS(crossicl::mean({}), crossicl::InvalidArgument);
  const auto ci = crossicl::accuracy_interval(23, 500);
  CHECK(ci.lo == tol::approx(3.0845108370816208, 1e-12));
  CHECK(ci.hi == tol::approx(6.807779276827324, 1e-12));
  const auto full = crossicl::accuracy_interval(10, 10, 0.99);
  CHECK(full.lo == tol::approx(60.11459066950919, 1e-12));
  CHECK(full.hi == 100.0);
  const auto none = crossicl::accuracy_interval(0, 10);
  CHECK(none.lo == 0.0);
  CHECK(none.hi > 0.0);
  CHECK_THROWS_AS(crossicl::accuracy_interval(0, 0), crossicl::InvalidArgument);
  CHECK_THROWS_AS(crossicl::accuracy_interval(11, 10), crossicl::InvalidArgument);
  CHECK_THROWS_AS(crossicl::accuracy_interval(1, 10, 1.0), crossicl::InvalidArgument);
}

TEST_CASE("headline gain: mean over targets of the mean over sources", "[stats]") {
  // Target T1: zero 20, sources 30 and 50 (mean 40); T2: zero 60, one source 80. A_zero = 40, A_cross = 60.
  const std::map<std::string, double> zero = {{"T1", 20.0}, {"T2", 60.0}};
  const std::map<std::pair<std::string, std::string>, double> cross = {
      {{"T1", "s1"}, 30.0}, {{"T1", "s2"}, 50.0}, {{"T2", "s1"}, 80.0}};
  // (A_cross - A_zero) / A_zero in float64 over a few means: gamma_16, scaled by A_cross / A_zero (a difference)
  CHECK(crossicl::headline_gain(zero, cross) == tol::approx(0.5, tol::f64_rel(16), 1.5));
  // Not the mean of all pairs ((30+50+80)/3 = 53.33 would give 0.3333) and not the mean of per-target gains.
  CHECK(crossicl::headline_gain({{"T", 40.0}}, {{{"T", "s1"}, 50.0}, {{"T", "s2"}, 70.0}}) ==
        tol::approx(0.5, tol::f64_rel(16), 1.5));
  CHECK(crossicl::headline_gain({{"T", 50.0}}, {{{"T", "s"}, 25.0}}) == tol::approx(-0.5, tol::f64_rel(16), 1.0));

  CHECK_THROWS_WITH(crossicl::headline_gain({{"T1", 20.0}, {"T3", 10.0}}, {{{"T1", "s1"}, 30.0}}),
                    Catch::Contains("T3"));
  CHECK_THROWS_WITH(crossicl::headline_gain({{"T1", 20.0}}, cross), Catch::Contains("T2"));
  CHECK_THROWS_AS(crossicl::headline_gain({}, {}), crossicl::InvalidArgument);
  CHECK_THROWS_AS(crossicl::headline_gain({{"T", 0.0}}, {{{"T", "s"}, 25.0}}), crossicl::InvalidArgument);
}
