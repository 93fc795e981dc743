// Kernel paths of crossicl/core/isa.h: names, the choice from cpuid and CROSSICL_ISA, and the cosine selectors'
// tile kernel on every path this CPU supports (the same bits on each).
#include <cmath>
#include <random>
#include <vector>

#include <catch2/catch.hpp>

#include "crossicl/core/error.h"
#include "crossicl/core/isa.h"
#include "detail/select_kernel.h"
#include "tolerance.h"

using crossicl::Isa;

TEST_CASE("kernel path names and the run-time choice", "[isa]") {
  for (Isa isa : {Isa::baseline, Isa::avx2, Isa::avx512}) CHECK(crossicl::isa_from_name(crossicl::isa_name(isa)) == isa);
  CHECK_THROWS_AS(crossicl::isa_from_name("sse9"), crossicl::InvalidArgument);
  CHECK_THROWS_WITH(crossicl::isa_from_name("sse9"), Catch::Contains("baseline, avx2 or avx512"));
  const std::vector<Isa> paths = crossicl::supported_isas();
  CHECK(paths.front() == Isa::baseline);
  CHECK(paths.back() == crossicl::cpu_isa());
  // ctest runs the suites once more with CROSSICL_ISA=baseline; otherwise the best path is taken.
  const char* env = std::getenv("CROSSICL_ISA");
  CHECK(crossicl::active_isa() == (env ? crossicl::isa_from_name(env) : crossicl::cpu_isa()));
}

TEST_CASE("cosine tile scores on every kernel path", "[isa][select]") {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  const std::int64_t dim = 387, n_pool = 70, n_q = 9;  // odd sizes: partial tiles and panels
  std::vector<float> pool(n_pool * dim), queries(n_q * dim);
  for (float& x : pool) x = normal(rng);
  for (float& x : queries) x = normal(rng);
  const std::vector<float> pool_inv = crossicl::detail::checked_inverse_norms(pool.data(), n_pool, dim, "pool");
  const std::vector<float> q_inv = crossicl::detail::checked_inverse_norms(queries.data(), n_q, dim, "query");
  std::vector<const float*> rows;
  for (std::int64_t i = 0; i < n_q; ++i) rows.push_back(queries.data() + i * dim);
  auto scores = [&](Isa isa) {
    crossicl::detail::ScoreScan scan{pool.data(), pool_inv.data(), dim, 32, isa};
    std::vector<float> out(n_q * n_pool), scratch;
    scan.run(rows.data(), q_inv.data(), n_q, nullptr, n_pool, scratch,
             [&](std::int64_t qi, std::int64_t, std::int64_t row, float s) { out[qi * n_pool + row] = s; });
    return out;
  };
  const std::vector<float> base = scores(Isa::baseline);
  for (Isa isa : crossicl::supported_isas()) {
    INFO("path " << crossicl::isa_name(isa) << ": " << crossicl::test::tol::close(scores(isa), base, 0));
    CHECK(scores(isa) == base);
  }
}
