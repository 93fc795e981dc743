// Selectors: cosine top-k (ties, blocking invariance), mixed pools, MMR, label quotas, BM25, seeded random
// selection, numpy's legacy permutation, and the errors of each.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <set>

#include "crossicl/core/error.h"
#include "crossicl/core/select.h"
#include "tolerance.h"

using namespace crossicl;
namespace tol = crossicl::test::tol;

namespace {

constexpr double kPi = 3.14159265358979323846;

// A cosine score is a float32 dot product over dim times two float32 inverse norms (computed in double, rounded):
// gamma_(dim + 4), an absolute error since |cos| <= 1 (scale 1). The inputs here are float32 roundings of the
// exact unit vectors (at_angles), one more u per component: + 2.
double cos_rel(std::int64_t dim) { return tol::f32_rel(static_cast<double>(dim + 4 + 2)); }

// [n, 2] unit vectors at the given angles (degrees).
std::vector<float> at_angles(const std::vector<double>& degrees) {
  std::vector<float> m;
  for (double a : degrees) {
    m.push_back(static_cast<float>(std::cos(a * kPi / 180.0)));
    m.push_back(static_cast<float>(std::sin(a * kPi / 180.0)));
  }
  return m;
}

std::vector<float> random_matrix(std::int64_t rows, std::int64_t dim, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal;  // values only need to be some fixed data, not portable
  std::vector<float> m(static_cast<std::size_t>(rows * dim));
  for (float& x : m) x = normal(gen);
  return m;
}

std::vector<std::int64_t> row_ids(const SelectResult& r, std::int64_t q) {
  return {r.ids.begin() + q * r.k, r.ids.begin() + (q + 1) * r.k};
}

}  // namespace

TEST_CASE("cosine top-k orders by similarity, ties by the lower row", "[select]") {
  // [4, 2]: rows 0 and 3 point the same way (a tie), row 2 is at 45 degrees.
  const std::vector<float> pool = {1, 0, 0, 1, 1, 1, 2, 0};
  CosineTopK sel(pool.data(), 4, 2);
  const std::vector<float> queries = {1, 0, 0, 2};  // [2, 2]
  const SelectResult r = sel.select(queries.data(), 2, 2, 4);
  REQUIRE(r.n_queries == 2);
  REQUIRE(r.k == 4);
  CHECK(row_ids(r, 0) == std::vector<std::int64_t>{0, 3, 2, 1});
  CHECK(row_ids(r, 1) == std::vector<std::int64_t>{1, 2, 0, 3});
  CHECK(r.score(0, 0) == r.score(0, 1));
  CHECK(r.score(0, 0) == tol::approx(1.0, cos_rel(2), 1));
  CHECK(r.score(0, 2) == tol::approx(std::sqrt(0.5), cos_rel(2), 1));
  CHECK(r.score(1, 3) == tol::approx(0.0, cos_rel(2), 1));
  const SelectResult top1 = sel.select(queries.data(), 2, 2, 1);
  CHECK(top1.ids == std::vector<std::int64_t>{0, 1});
  // The Eigen::Map overload gives the same.
  const ConstRowMatrixMap qmap(queries.data(), 2, 2);
  CHECK(sel.select(qmap, 4).ids == r.ids);
}

TEST_CASE("cosine top-k is exact and independent of the blocking and threads", "[select]") {
  const std::int64_t rows = 203, dim = 37, nq = 53, k = 7;
  const std::vector<float> pool = random_matrix(rows, dim, 1);
  const std::vector<float> queries = random_matrix(nq, dim, 2);
  const SelectResult ref = CosineTopK(pool.data(), rows, dim).select(queries.data(), nq, dim, k);
  for (CosineOptions o : {CosineOptions{1, 1, 1}, CosineOptions{7, 16, 2}, CosineOptions{5, 33, 2},
                          CosineOptions{64, 17, 0}, CosineOptions{1000, 10000, 1}}) {
    const SelectResult r = CosineTopK(pool.data(), rows, dim, o).select(queries.data(), nq, dim, k);
    CHECK(r.ids == ref.ids);
    CHECK(r.scores == ref.scores);  // bit-identical
  }
  // Against a brute-force double computation.
  for (std::int64_t q = 0; q < nq; ++q) {
    std::vector<std::pair<double, std::int64_t>> all;
    for (std::int64_t p = 0; p < rows; ++p) {
      double dot = 0, nq2 = 0, np2 = 0;
      for (std::int64_t t = 0; t < dim; ++t) {
        const double a = queries[q * dim + t], b = pool[p * dim + t];
        dot += a * b;
        nq2 += a * a;
        np2 += b * b;
      }
      all.push_back({-dot / std::sqrt(nq2 * np2), p});
    }
    std::sort(all.begin(), all.end());
    for (std::int64_t i = 0; i < k; ++i) {
      CHECK(ref.id(q, i) == all[i].second);
      CHECK(ref.score(q, i) == tol::approx(-all[i].first, cos_rel(dim), 1));
    }
  }
}

TEST_CASE("cosine top-k over a subset and pool similarities", "[select]") {
  const std::vector<float> pool = at_angles({0, 10, 20, 30, 40});
  CosineTopK sel(pool.data(), 5, 2);
  const std::vector<float> q = at_angles({22});
  const SelectResult r = sel.select_subset(q.data(), 1, 2, 2, {4, 0, 1});
  CHECK(r.ids == std::vector<std::int64_t>{1, 4});  // 12 and 18 degrees away; row 0 is 22 away
  CHECK(sel.pool_similarity(0, 3) == tol::approx(std::cos(30 * kPi / 180), cos_rel(2), 1));
  CHECK_THROWS_AS(sel.select_subset(q.data(), 1, 2, 1, {0, 0}), InvalidArgument);
  CHECK_THROWS_AS(sel.select_subset(q.data(), 1, 2, 1, {5}), InvalidArgument);
  CHECK_THROWS_WITH(sel.select_subset(q.data(), 1, 2, 3, {1, 2}), "k must be <= pool size (k=3, pool=2)");
}

TEST_CASE("mixed pools merge by similarity, then pool, then row", "[select]") {
  const std::vector<float> a = at_angles({0, 50, 90});
  const std::vector<float> b = at_angles({10, 0, 45});
  MixedCosineTopK mix({{a.data(), 3, 2}, {b.data(), 3, 2}});
  CHECK(mix.total_size() == 6);
  const std::vector<float> q = at_angles({0});
  const MixedSelectResult r = mix.select(q.data(), 1, 2, 5);
  CHECK(r.pool_ids == std::vector<std::int64_t>{0, 1, 1, 1, 0});
  CHECK(r.ids == std::vector<std::int64_t>{0, 1, 0, 2, 1});
  CHECK_THROWS_WITH(mix.select(q.data(), 1, 2, 7), "k must be <= pool size (k=7, pool=6)");
  const std::vector<float> wide = {1, 0, 0};
  CHECK_THROWS_WITH(MixedCosineTopK({{a.data(), 3, 2}, {wide.data(), 1, 3}}),
                    "mismatched embedding widths: pool 0 has dim=2, pool 1 has dim=3");
}

TEST_CASE("MMR trades relevance for diversity", "[select]") {
  // Rows at 10, 12 (a near-duplicate of row 0) and -30 degrees; the query at 0 degrees.
  const std::vector<float> pool = at_angles({10, 12, -30});
  const std::vector<float> q = at_angles({0});
  MMR mmr(pool.data(), 3, 2);
  CHECK(mmr.options().lambda == 0.5f);
  CHECK(mmr.options().fetch_k == 20);
  const SelectResult r = mmr.select(q.data(), 1, 2, 3);
  CHECK(r.ids == std::vector<std::int64_t>{0, 2, 1});
  CHECK(r.score(0, 1) == tol::approx(std::cos(30 * kPi / 180), cos_rel(2), 1));
  MMROptions relevance_only;
  relevance_only.lambda = 1.0f;
  CHECK(MMR(pool.data(), 3, 2, relevance_only).select(q.data(), 1, 2, 3).ids == std::vector<std::int64_t>{0, 1, 2});
  MMROptions two;  // fetch_k = 2 leaves row 2 out of the candidates
  two.fetch_k = 2;
  CHECK(MMR(pool.data(), 3, 2, two).select(q.data(), 1, 2, 2).ids == std::vector<std::int64_t>{0, 1});
  MMROptions bad;
  bad.lambda = 1.5f;
  CHECK_THROWS_AS(MMR(pool.data(), 3, 2, bad), InvalidArgument);
}

TEST_CASE("label-balanced top-k fills per-label quotas", "[select]") {
  const std::vector<float> pool = at_angles({0, 5, 10, 60, 70, 170, 20});
  LabelBalancedTopK sel(pool.data(), 7, 2, {"A", "A", "A", "B", "B", "C", "A"});
  CHECK(sel.label_names() == std::vector<std::string>{"A", "B", "C"});
  const std::vector<float> q = at_angles({0});
  CHECK(sel.select(q.data(), 1, 2, 3).ids == std::vector<std::int64_t>{0, 3, 5});
  // k % L = 1 extra pick goes to A, whose best row is the most similar.
  CHECK(sel.select(q.data(), 1, 2, 4).ids == std::vector<std::int64_t>{0, 1, 3, 5});
  // Two extras: A then B (B's best row, 60 degrees, beats C's at 170).
  CHECK(sel.select(q.data(), 1, 2, 5).ids == std::vector<std::int64_t>{0, 1, 3, 4, 5});
  // k = 6: quota 2 each; C has one row, its free slot goes to the best remaining row (2, at 10 degrees).
  CHECK(sel.select(q.data(), 1, 2, 6).ids == std::vector<std::int64_t>{0, 1, 2, 3, 4, 5});
  CHECK_THROWS_WITH(LabelBalancedTopK(pool.data(), 7, 2, {"A"}), "labels has 1 entries but the pool has 7 rows");
}

TEST_CASE("BM25 scores match hand-computed values", "[select]") {
  CHECK(BM25TopK::tokenize("H\xc3\xa9llo, WORLD_x2!") == std::vector<std::string>{"h\xc3\xa9llo", "world", "x2"});
  CHECK(BM25TopK::tokenize(" \t.,").empty());
  BM25TopK bm25({"the cat sat", "a dog", "cat and dog"});
  // N = 3, lengths 3, 2, 3, avgdl = 8/3; "cat" and "dog" are each in 2 documents.
  const double idf = std::log(1.0 + (3 - 2 + 0.5) / (2 + 0.5));
  const double norm3 = 1.5 * (1 - 0.75 + 0.75 * 3 / (8.0 / 3));
  const double norm2 = 1.5 * (1 - 0.75 + 0.75 * 2 / (8.0 / 3));
  // float64 on both sides, ~12 operations each (log, the length norm, the term): gamma_32 of float64
  const double rel = tol::f64_rel(32);
  const std::vector<double> cat = bm25.scores("Cat!");
  REQUIRE(cat.size() == 3);
  CHECK(cat[0] == tol::approx(idf * 2.5 / (1 + norm3), rel));
  CHECK(cat[1] == 0.0);
  CHECK(cat[2] == cat[0]);
  const std::vector<double> dog = bm25.scores("dog dog");  // a repeated query token counts twice
  CHECK(dog[1] == tol::approx(2 * idf * 2.5 / (1 + norm2), rel));
  CHECK(dog[2] == tol::approx(2 * idf * 2.5 / (1 + norm3), rel));
  const SelectResult r = bm25.select({"Cat!", "dog dog", "zebra"}, 2);
  CHECK(row_ids(r, 0) == std::vector<std::int64_t>{0, 2});  // tie: lower row first
  CHECK(row_ids(r, 1) == std::vector<std::int64_t>{1, 2});
  CHECK(row_ids(r, 2) == std::vector<std::int64_t>{0, 1});  // nothing matches: rows 0.., score 0
  CHECK(r.score(2, 0) == 0.0f);
  CHECK(r.score(1, 0) == tol::approx(2 * idf * 2.5 / (1 + norm2), tol::f32_rel(1) + rel));  // float32 of the score
  // k1 = 0 reduces every matching term to its idf; b = 0 ignores lengths.
  BM25Options flat;
  flat.k1 = 0.0;
  CHECK(BM25TopK({"x y", "x x x z"}, flat).scores("x")[1] == tol::approx(std::log(1.0 + 0.5 / 2.5), rel));
  BM25Options bad;
  bad.b = 1.5;
  CHECK_THROWS_WITH(BM25TopK({"a"}, bad), "b must be in [0, 1] (b=1.5)");
  CHECK_THROWS_WITH(BM25TopK({}), "BM25 pool is empty (0 documents)");
  CHECK_THROWS_WITH(bm25.select({"a"}, 4), "k must be <= pool size (k=4, pool=3)");
}

TEST_CASE("SplitMix64 and RandomSelector follow the specified algorithm", "[select]") {
  SplitMix64 g(0);  // the published first outputs of SplitMix64 seeded with 0
  CHECK(g.next() == 0xe220a8397b1dcdafULL);
  CHECK(g.next() == 0x6e789e6aa1b965f4ULL);
  CHECK(g.next() == 0x06c45d188009454fULL);
  SplitMix64 h(42);
  std::vector<std::uint64_t> draws;
  for (int i = 0; i < 8; ++i) draws.push_back(h.bounded(10));
  CHECK(draws == std::vector<std::uint64_t>{3, 1, 8, 4, 0, 2, 5, 8});

  // Reference values from an independent implementation of the header's specification.
  const SelectResult r = RandomSelector(10).select(3, 4);
  CHECK(r.ids == std::vector<std::int64_t>{5, 3, 9, 0, 0, 7, 2, 3, 0, 2, 9, 8});
  CHECK(r.scores == std::vector<float>(12, 0.0f));
  RandomOptions seven;
  seven.seed = 7;
  CHECK(RandomSelector(100, seven).select(2, 5, {0, 1, 2, 3, 4}).ids ==
        std::vector<std::int64_t>{21, 33, 57, 98, 74, 36, 43, 15, 33, 81});
  RandomOptions one;
  one.seed = 1;
  CHECK(RandomSelector(5, one).select(2, 2, {}, {{0, 1, 2}, {4}}).ids == std::vector<std::int64_t>{3, 4, 1, 3});

  // A query's picks do not depend on how many queries are asked; picks are distinct and allowed.
  const RandomSelector big(50, seven);
  const SelectResult a = big.select(200, 10, {3, 4});
  const SelectResult b = big.select(5, 10, {3, 4});
  CHECK(std::vector<std::int64_t>(a.ids.begin(), a.ids.begin() + 50) == b.ids);
  std::vector<int> counts(50, 0);
  for (std::int64_t q = 0; q < 200; ++q) {
    const std::vector<std::int64_t> ids = row_ids(a, q);
    CHECK(std::set<std::int64_t>(ids.begin(), ids.end()).size() == 10);
    for (std::int64_t id : ids) ++counts[static_cast<std::size_t>(id)];
  }
  CHECK(counts[3] == 0);
  CHECK(counts[4] == 0);
  for (int i = 0; i < 50; ++i)
    if (i != 3 && i != 4) CHECK((counts[static_cast<std::size_t>(i)] > 15 && counts[static_cast<std::size_t>(i)] < 70));
  // Memory follows k and the exclusions, not the pool size.
  const SelectResult huge = RandomSelector(std::int64_t{1} << 40).select(2, 3, {0});
  for (std::int64_t id : huge.ids) CHECK((id > 0 && id < (std::int64_t{1} << 40)));
  // k = all selectable rows is allowed, one more is not.
  CHECK(RandomSelector(5).select(1, 3, {0, 1}).ids.size() == 3);
  CHECK_THROWS_WITH(RandomSelector(5).select(1, 4, {0, 1}),
                    "k must be <= the rows left after exclusions (k=4, selectable=3, query=0)");
  CHECK_THROWS_WITH(RandomSelector(5).select(1, 1, {5}), "exclude[0] = 5 is not a pool row (pool=5)");
  CHECK_THROWS_WITH(RandomSelector(3).select(1, 5), "k must be <= pool size (k=5, pool=3)");
  CHECK_THROWS_AS(RandomSelector(0), InvalidArgument);
  CHECK_THROWS_AS(RandomSelector(5).select(2, 1, {}, {{0}}), InvalidArgument);
}

TEST_CASE("numpy_legacy_permutation equals numpy RandomState(seed).permutation(n)", "[select]") {
  // Values printed by numpy 2.x: np.random.RandomState(seed).permutation(n).
  CHECK(numpy_legacy_permutation(0, 8) == std::vector<std::int64_t>{6, 2, 1, 7, 3, 0, 5, 4});
  CHECK(numpy_legacy_permutation(32, 9) == std::vector<std::int64_t>{2, 1, 6, 8, 0, 4, 5, 3, 7});
  CHECK(numpy_legacy_permutation(56, 10) == std::vector<std::int64_t>{6, 1, 8, 9, 3, 2, 0, 7, 4, 5});
  CHECK(numpy_legacy_permutation(12345, 20) ==
        std::vector<std::int64_t>{13, 8, 16, 3, 15, 12, 0, 10, 7, 11, 6, 17, 19, 18, 14, 9, 4, 1, 5, 2});
  CHECK(numpy_legacy_permutation(4294967295u, 7) == std::vector<std::int64_t>{1, 5, 0, 6, 4, 2, 3});
  CHECK(numpy_legacy_permutation(3, 0).empty());
  CHECK(numpy_legacy_permutation(3, 1) == std::vector<std::int64_t>{0});
  CHECK_THROWS_AS(numpy_legacy_permutation(0, -1), InvalidArgument);
}

TEST_CASE("selectors reject bad input with InvalidArgument", "[select]") {
  const std::vector<float> pool = {1, 0, 0, 1, 1, 1};  // [3, 2]
  CosineTopK sel(pool.data(), 3, 2);
  const std::vector<float> q = {1, 0};
  CHECK_THROWS_WITH(sel.select(q.data(), 1, 2, 5), "k must be <= pool size (k=5, pool=3)");
  CHECK_THROWS_WITH(sel.select(q.data(), 1, 2, 0), "k must be >= 1 (k=0)");
  CHECK_THROWS_WITH(sel.select(q.data(), 1, 2, -2), "k must be >= 1 (k=-2)");
  CHECK_THROWS_WITH(sel.select(q.data(), 1, 1, 1), "mismatched embedding widths: queries have dim=1, pool has dim=2");
  CHECK_THROWS_WITH(CosineTopK(pool.data(), 0, 2), "pool is empty (shape (0, 2))");
  CHECK_THROWS_WITH(CosineTopK(pool.data(), 3, 0), "pool has width 0 (shape (3, 0))");
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> with_nan = {1, 0, 0, nan};
  CHECK_THROWS_WITH(CosineTopK(with_nan.data(), 2, 2), "pool row 1 is not finite (column 1 = nan)");
  const std::vector<float> with_zero = {1, 0, 0, 0};
  CHECK_THROWS_WITH(CosineTopK(with_zero.data(), 2, 2), "pool row 1 has zero norm");
  const std::vector<float> huge = {3e19f, 0};
  CHECK_THROWS_AS(CosineTopK(huge.data(), 1, 2), InvalidArgument);
  const std::vector<float> bad_queries = {1, 0, inf, 0};
  CHECK_THROWS_WITH(sel.select(bad_queries.data(), 2, 2, 1), "query row 1 is not finite (column 0 = inf)");
  const std::vector<float> zero_query = {0, 0};
  CHECK_THROWS_WITH(sel.select(zero_query.data(), 1, 2, 1), "query row 0 has zero norm");
  // No queries: an empty result, not an error.
  const SelectResult none = sel.select(q.data(), 0, 2, 2);
  CHECK(none.ids.empty());
  CHECK(none.k == 2);
  CHECK_THROWS_AS(MMR(pool.data(), 3, 2).select(q.data(), 1, 2, 4), InvalidArgument);
  CHECK_THROWS_AS(LabelBalancedTopK(pool.data(), 3, 2, {"a", "b", "a"}).select(q.data(), 1, 2, 0), InvalidArgument);
}

TEST_CASE("a result of n_queries x k ids is sized with a checked product", "[select]") {
  SelectResult r;
  r.resize(3, 2);
  CHECK((r.n_queries == 3 && r.k == 2 && r.ids.size() == 6 && r.scores.size() == 6));
  r.resize(0, 5);
  CHECK((r.n_queries == 0 && r.k == 5 && r.ids.empty() && r.scores.empty()));
  // n_queries * k wrapped to 4 (2^62 + 1 queries) or to 0 (2^62): the ids used to be written past a small buffer
  const RandomSelector big(std::int64_t{1} << 62);
  CHECK_THROWS_WITH(big.select((std::int64_t{1} << 62) + 1, 4),
                    "the result would hold n_queries * k ids, more than fit in memory (n_queries=4611686018427387905, "
                    "k=4)");
  CHECK_THROWS_AS(big.select(std::int64_t{1} << 62, 4), InvalidArgument);
  // 2^61 ids fit int64 but no vector
  CHECK_THROWS_AS(big.select(std::int64_t{1} << 59, 4), InvalidArgument);
  CHECK_THROWS_AS(r.resize(std::numeric_limits<std::int64_t>::max(), 2), InvalidArgument);
  // the selector is still usable and picks distinct rows from the 2^62
  const SelectResult ok = big.select(2, 4);
  CHECK(std::set<std::int64_t>(ok.ids.begin(), ok.ids.begin() + 4).size() == 4);
  CHECK_THROWS_WITH(numpy_legacy_permutation(0, std::numeric_limits<std::int64_t>::max()),
                    "a permutation of n=9223372036854775807 ids is more than fits in memory");
}
