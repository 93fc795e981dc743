// Matrix-vector kernels of decode (detail/engine_gemv.h): float32 and bfloat16 against ATen within a bound derived
// from the reduction length, int8 bit-identical to at::_int_mm in both weight layouts, odd sizes and tails (output
// blocks, odd input rows, row chunks), every ISA path giving the same bits. Hidden cases ([.bench]) time them
// against ATen on SmolLM2's shapes, one matrix at a time and over a whole pass with the weights out of cache, and
// that pass with its weights in a huge-page arena (detail::HugePageArena) against the allocator's pages.
// Also the bfloat16 GEMM through float32 (detail::linear_bf16_via_float) that replaces ATen's where it is slow.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>
#include <tuple>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <catch2/catch.hpp>

#include "crossicl/core/error.h"
#include "crossicl/core/isa.h"
#include "detail/engine_gemv.h"
#include "detail/engine_mmap.h"
#include "detail/engine_ops.h"
#include "detail/engine_team.h"

using namespace crossicl;
namespace d = crossicl::detail;

namespace {

at::Generator gen(std::uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

// |gemv - exact| <= in * u_eff * sum |x w| per output (a float32 sum of `in` products, any order), u_eff the unit
// roundoff of float32 plus, for bfloat16 outputs, the final rounding of the result.
void check_close(const at::Tensor& got, const at::Tensor& x, const at::Tensor& w) {
  const at::Tensor xd = x.to(at::kDouble), wd = w.to(at::kDouble);
  const at::Tensor exact = at::mm(xd, wd.t());
  const at::Tensor mag = at::mm(xd.abs(), wd.abs().t());
  const double in = static_cast<double>(x.size(1));
  const double u = 0x1p-24;
  at::Tensor bound = mag * (in * u) + 1e-30;
  if (got.scalar_type() == at::kBFloat16) bound = bound + exact.abs() * 0x1p-8;
  const at::Tensor err = (got.to(at::kDouble) - exact).abs();
  CHECK(at::le(err, bound).all().item<bool>());
}

}  // namespace

TEST_CASE("gemv float32 and bfloat16 match the exact product within the reduction bound", "[engine][gemv]") {
  for (auto dtype : {at::kFloat, at::kBFloat16})
    for (std::int64_t n : {1, 2, 3, 4})
      for (auto [out, in] : {std::pair<std::int64_t, std::int64_t>{1, 1}, {3, 17}, {37, 300}, {96, 576},
                             {7, 1536}, {130, 65}}) {
        INFO(c10::toString(dtype) << " n=" << n << " out=" << out << " in=" << in);
        const at::Tensor x = at::randn({n, in}, gen(n * 1000 + in)).to(dtype);
        const at::Tensor w = at::randn({out, in}, gen(out * 7 + in)).to(dtype);
        REQUIRE(d::gemv_applies(x, w));
        const at::Tensor y = d::gemv(x, w);
        REQUIRE(y.scalar_type() == dtype);
        REQUIRE(y.sizes() == at::IntArrayRef({n, out}));
        check_close(y, x, w);
        // each row alone gives the same bits as in the batch
        for (std::int64_t r = 0; r < n; ++r) CHECK(at::equal(d::gemv(x.narrow(0, r, 1), w), y.narrow(0, r, 1)));
      }
}

TEST_CASE("gemv reads weight row views (row stride above the width)", "[engine][gemv]") {
  const at::Tensor wide = at::randn({40, 200}, gen(1));
  const at::Tensor w = wide.narrow(1, 0, 150);  // [40, 150], row stride 200
  const at::Tensor x = at::randn({2, 150}, gen(2));
  check_close(d::gemv(x, w), x, w);
  CHECK_FALSE(d::gemv_applies(at::randn({5, 150}), w));  // more rows than a decode step: the GEMM
  CHECK_FALSE(d::gemv_applies(x, w.t().contiguous().t()));  // columns not contiguous
  CHECK_THROWS_AS(d::gemv(at::randn({5, 150}), w), InvalidArgument);
}

TEST_CASE("bfloat16 products through float32 match the exact product, in panels or whole", "[engine][gemv]") {
  for (auto [n, out, in] : {std::tuple<std::int64_t, std::int64_t, std::int64_t>{5, 37, 300}, {64, 96, 576},
                            {17, 130, 65}, {1, 3, 17}}) {
    INFO("n=" << n << " out=" << out << " in=" << in);
    const at::Tensor x = at::randn({n, in}, gen(n + in)).to(at::kBFloat16);
    const at::Tensor w = at::randn({out, in}, gen(out + 5 * in)).to(at::kBFloat16);
    const at::Tensor whole = d::linear_bf16_via_float(x, w);
    REQUIRE(whole.scalar_type() == at::kBFloat16);
    REQUIRE(whole.sizes() == at::IntArrayRef({n, out}));
    check_close(whole, x, w);
    // panels of 7 rows (a shorter last one), and of one row
    check_close(d::linear_bf16_via_float(x, w, 7 * in), x, w);
    check_close(d::linear_bf16_via_float(x, w, 1), x, w);
    // a view whose rows are strided (w's first columns)
    const at::Tensor wide = at::randn({out, in + 9}, gen(3 * out + in)).to(at::kBFloat16);
    check_close(d::linear_bf16_via_float(x, wide.narrow(1, 0, in)), x, wide.narrow(1, 0, in));
  }
  CHECK_THROWS_WITH(d::linear_bf16_via_float(at::randn({2, 8}), at::randn({3, 8})),
                    Catch::Contains("x [2, 8] and w [3, 8] are not bfloat16"));
  CHECK_THROWS_AS(d::linear_bf16_via_float(at::randn({2, 8}).to(at::kBFloat16), at::randn({3, 9}).to(at::kBFloat16)),
                  InvalidArgument);
  // linear() takes this route for bfloat16 beyond the decode kernel's rows where ATen's bfloat16 GEMM is slow
  const at::Tensor x = at::randn({9, 100}, gen(41)).to(at::kBFloat16), w = at::randn({20, 100}, gen(42)).to(at::kBFloat16);
  if (!d::bf16_mm_is_fast()) CHECK(at::equal(d::linear(x, w), d::linear_bf16_via_float(x, w)));
  check_close(d::linear(x, w), x, w);
}

TEST_CASE("gemv_into writes or adds to its output as gemv and add_ would, bit for bit", "[engine][gemv]") {
  for (auto dtype : {at::kFloat, at::kBFloat16})
    for (std::int64_t n : {1, 3}) {
      INFO(c10::toString(dtype) << ", rows " << n);
      const at::Tensor x = at::randn({n, 100}, gen(21)).to(dtype);
      const at::Tensor w = at::randn({37, 100}, gen(22)).to(dtype);
      const at::Tensor r0 = at::randn({n, 37}, gen(23)).to(dtype);
      at::Tensor r = r0.clone();
      d::gemv_into(x, w, r, /*add=*/true);
      CHECK(at::equal(r, r0 + d::gemv(x, w)));
      d::gemv_into(x, w, r, /*add=*/false);
      CHECK(at::equal(r, d::gemv(x, w)));
    }
  const at::Tensor x = at::randn({2, 100}), w = at::randn({37, 100});
  CHECK_THROWS_WITH(d::gemv_into(x, w, at::zeros({2, 36}), false),
                    Catch::Contains("output [2, 36] Float is not a [2, 37] Float"));
  CHECK_THROWS_AS(d::gemv_into(x, w, at::zeros({2, 37}, at::kBFloat16), true), InvalidArgument);
}

namespace {

// The same bits where want is a number (zeros' signs and infinities included), and NaN where it is NaN: ATen's
// own float32 -> bfloat16 NaN differs between its scalar (0x7FC0) and vector paths.
bool same_bits(const at::Tensor& got, const at::Tensor& want) {
  const at::Tensor num = want.isnan().logical_not();
  return at::equal(got.isnan(), want.isnan()) &&
         at::equal(got.view(at::kShort).masked_select(num), want.view(at::kShort).masked_select(num));
}

}  // namespace

TEST_CASE("gemv_into rounds and adds bfloat16 as ATen does, NaN, infinities and ties included, on every path",
          "[engine][gemv]") {
  // x = e_0 picks column 0 of w, so each output is w[o, 0] exactly and the store alone decides the bits
  const std::int64_t out = 53;  // vectors of every path's width and a tail
  const at::Tensor x = at::zeros({2, 40}, at::kBFloat16);
  x.select(1, 0).fill_(1.0);
  at::Tensor w = at::randn({out, 40}, gen(31)).to(at::kBFloat16);
  const float specials[] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 3.0e38f, -3.0e38f, 1.0f, 65504.0f};
  at::Tensor r0 = at::randn({2, out}, gen(32)).to(at::kBFloat16);
  for (std::int64_t o = 0; o < 9; ++o) {
    w.index_put_({o, 0}, specials[o]);
    r0.index_put_({1, o + 20}, specials[o]);
  }
  // halfway cases of the add: 1 + 2^-8 rounds to 1 (even), 1 + 3 * 2^-8 up to 1 + 2^-6
  w.index_put_({10, 0}, 0x1p-8), r0.index_put_({0, 10}, 1.0);
  w.index_put_({11, 0}, 3 * 0x1p-8), r0.index_put_({0, 11}, 1.0);
  // [2, out] each sum exact (one product not zero; -0 + 0 is +0 in any order), then rounded, and added, by ATen
  const at::Tensor want_store = at::mm(x.to(at::kFloat), w.to(at::kFloat).t()).to(at::kBFloat16);
  const at::Tensor want_add = r0 + want_store;
  for (Isa isa : supported_isas()) {
    INFO(isa_name(isa));
    at::Tensor r = r0.clone();
    d::gemv_into(x, w, r, /*add=*/true, isa);
    CHECK(same_bits(r, want_add));
    d::gemv_into(x, w, r, /*add=*/false, isa);
    CHECK(same_bits(r, want_store));
  }
}

TEST_CASE("gemv splits its rows over any number of threads, each row summed and stored once", "[engine][gemv]") {
  const int threads = at::get_num_threads();
  for (auto dtype : {at::kFloat, at::kBFloat16})
    for (std::int64_t out : {1, 5, 37, 1000, 4099, 20000}) {
      const at::Tensor x = at::randn({2, 96}, gen(out)).to(dtype);
      const at::Tensor w = at::randn({out, 96}, gen(out + 1)).to(dtype);
      const at::Tensor r0 = at::randn({2, out}, gen(out + 2)).to(dtype);
      at::set_num_threads(1);
      const at::Tensor want = d::gemv(x, w);
      for (int t : {2, 3, 5}) {
        INFO(c10::toString(dtype) << " out=" << out << " threads=" << t);
        at::set_num_threads(t);
        CHECK(at::equal(d::gemv(x, w), want));
        at::Tensor r = r0.clone();
        d::gemv_into(x, w, r, /*add=*/true);  // a row added twice, or not at all, would show
        CHECK(at::equal(r, r0 + want));
      }
    }
  for (std::int64_t out : {37, 4099}) {  // the int8 rows kernel shares the split
    const at::Tensor xq = at::randint(-127, 128, {3, 200}, gen(out)).to(at::kChar);
    const at::Tensor wq = at::randint(-127, 128, {out, 200}, gen(out + 1)).to(at::kChar);
    const at::Tensor want = at::_int_mm(xq, wq.t());
    for (int t : {2, 3, 5}) {
      INFO("int8 out=" << out << " threads=" << t);
      at::set_num_threads(t);
      CHECK(at::equal(d::gemv_int8(xq, wq), want));
    }
  }
  at::set_num_threads(threads);
}

TEST_CASE("a decode step's team runs the products and parallel loops on its threads, each index once",
          "[engine][gemv]") {
  const int threads = at::get_num_threads();
  const at::Tensor x = at::randn({2, 96}, gen(11));
  const at::Tensor w = at::randn({4099, 96}, gen(12));
  const at::Tensor xq = at::randint(-127, 128, {3, 200}, gen(13)).to(at::kChar);
  const at::Tensor wq = at::randint(-127, 128, {1000, 200}, gen(14)).to(at::kChar);
  const at::Tensor wq_cols = wq.t().contiguous().t();  // the [in, out] layout's loop
  const at::Tensor want = d::gemv(x, w), want_b = d::gemv(x.to(at::kBFloat16), w.to(at::kBFloat16));
  const at::Tensor want_q = at::_int_mm(xq, wq.t());
  for (int t : {1, 2, 3, 5}) {
    INFO("threads=" << t);
    at::set_num_threads(t);
    CHECK(d::Team::current() == nullptr);
    int size = 0;
    bool nested_inline = false;
    at::Tensor got, got_b, got_q, got_q_cols, added = at::zeros({2, 4099});
    std::vector<int> hits(10007, 0), calls;
    d::Team::run([&] {
      d::Team* team = d::Team::current();  // none on one thread: the body runs as it is
      REQUIRE((team == nullptr) == (t == 1));
      if (!team) return;
      size = team->size();
      team->set_next(w.data_ptr(), w.numel() * 4 - 3);  // streamed by the waiting threads; not a whole cache line
      got = d::gemv(x, w);
      got_b = d::gemv(x.to(at::kBFloat16), w.to(at::kBFloat16));
      d::gemv_into(x, w, added, /*add=*/true);
      got_q = d::gemv_int8(xq, wq);
      got_q_cols = d::gemv_int8(xq, wq_cols);
      d::parallel_for(0, 10007, 100, [&](std::int64_t b, std::int64_t e) {
        for (std::int64_t i = b; i < e; ++i) ++hits[static_cast<std::size_t>(i)];
      });
      calls.assign(static_cast<std::size_t>(size), 0);
      team->each([&](int i) {  // 1: called on a thread where the team is current only for its body (thread 0)
        calls[static_cast<std::size_t>(i)] = d::Team::current() == (i == 0 ? team : nullptr) ? 1 : 2;
      });
      d::Team::run([&] { nested_inline = d::Team::current() == team; });
    });
    CHECK(d::Team::current() == nullptr);
    if (t == 1) continue;
    CHECK(size == t);
    CHECK(nested_inline);
    CHECK(at::equal(got, want));
    CHECK(at::equal(got_b, want_b));
    CHECK(at::equal(added, want));
    CHECK(at::equal(got_q, want_q));
    CHECK(at::equal(got_q_cols, want_q));
    CHECK(std::count(hits.begin(), hits.end(), 1) == 10007);
    CHECK(std::count(calls.begin(), calls.end(), 1) == size);
  }
  at::set_num_threads(threads);
}

TEST_CASE("an exception in a team's job or body reaches the caller once every thread has left", "[engine][gemv]") {
  const int threads = at::get_num_threads();
  for (int t : {1, 2, 3}) {
    INFO("threads=" << t);
    at::set_num_threads(t);
    CHECK_THROWS_WITH(d::Team::run([] { throw std::runtime_error("body"); }), "body");
    if (t == 1) continue;  // no team
    int after = 0;
    CHECK_THROWS_WITH(d::Team::run([&] {
                        d::Team* team = d::Team::current();
                        team->each([&](int i) {
                          if (i == team->size() - 1) throw InvalidArgument("job " + std::to_string(i));
                        });
                        ++after;
                      }),
                      "job " + std::to_string(t - 1));
    CHECK(after == 0);
    // a caught job exception is the body's to handle: the team goes on
    int sum = 0;
    d::Team::run([&] {
      d::Team* team = d::Team::current();
      try {
        team->each([](int i) {
          if (i == 0) throw InvalidArgument("first");
        });
      } catch (const InvalidArgument&) {
        ++sum;
      }
      std::vector<int> seen(static_cast<std::size_t>(team->size()), 0);
      team->each([&](int i) { seen[static_cast<std::size_t>(i)] = 1; });
      sum += std::accumulate(seen.begin(), seen.end(), 0);
    });
    CHECK(sum == 1 + t);
    CHECK(d::Team::current() == nullptr);
  }
  at::set_num_threads(threads);
}

TEST_CASE("gemv_int8 equals at::_int_mm in both weight layouts", "[engine][gemv]") {
  for (std::int64_t n : {1, 2, 3, 4})
    for (auto [out, in] : {std::pair<std::int64_t, std::int64_t>{1, 1}, {5, 33}, {96, 576}, {576, 1536},
                           {33, 70}, {3072, 576}, {130, 65}, {64, 9}, {200, 17}}) {
      INFO("n=" << n << " out=" << out << " in=" << in);
      const at::Tensor xq = at::randint(-127, 128, {n, in}, gen(n + in)).to(at::kChar);
      const at::Tensor rows = at::randint(-127, 128, {out, in}, gen(out + 3 * in)).to(at::kChar);  // [out, in]
      const at::Tensor cols = rows.t().contiguous().t();  // the same matrix as a view of [in, out] rows
      const at::Tensor want = at::_int_mm(xq, rows.t());  // [n, out] int32
      CHECK(at::equal(d::gemv_int8(xq, rows), want));
      CHECK(at::equal(d::gemv_int8(xq, cols), want));
    }
  // extreme values on every path: every product -128 * -128 (each pair of them 2^15, past int16), the sums exact
  for (Isa isa : supported_isas())
    for (std::int64_t in : {1536, 1541}) {
      INFO(isa_name(isa) << " in=" << in);
      const at::Tensor xq = at::full({3, in}, -128, at::kChar);
      const at::Tensor w = at::full({8, in}, -128, at::kChar);
      CHECK(d::gemv_int8(xq, w, isa).eq(in * 128 * 128).all().item<bool>());
      CHECK(d::gemv_int8(xq, w.t().contiguous().t(), isa).eq(in * 128 * 128).all().item<bool>());
    }
}

TEST_CASE("gemv kernels give the same bits on every ISA path", "[engine][gemv]") {
  const at::Tensor x = at::randn({3, 301}, gen(5));
  const at::Tensor w = at::randn({45, 301}, gen(6));
  const at::Tensor wb = w.to(at::kBFloat16), xb = x.to(at::kBFloat16);
  const at::Tensor xq = at::randint(-127, 128, {3, 301}, gen(7)).to(at::kChar);
  const at::Tensor wq = at::randint(-127, 128, {161, 301}, gen(8)).to(at::kChar);  // blocks and a tail
  const at::Tensor f = d::gemv(x, w, Isa::baseline), b = d::gemv(xb, wb, Isa::baseline);
  const at::Tensor q = d::gemv_int8(xq, wq.t().contiguous().t(), Isa::baseline);
  for (Isa isa : supported_isas()) {
    INFO(isa_name(isa));
    CHECK(at::equal(d::gemv(x, w, isa), f));
    CHECK(at::equal(d::gemv(xb, wb, isa), b));
    CHECK(at::equal(d::gemv_int8(xq, wq.t().contiguous().t(), isa), q));
    CHECK(at::equal(d::gemv_int8(xq, wq, isa), q));
  }
}

TEST_CASE("gemv timings against ATen on SmolLM2's shapes", "[.bench]") {
  auto best = [](auto&& fn) {
    fn();
    double b = 1e9;
    for (int r = 0; r < 20; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      fn();
      b = std::min(b, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return b;
  };
  std::printf("threads %d\n", at::get_num_threads());
  for (auto [out, in] : {std::pair<std::int64_t, std::int64_t>{960, 576}, {3072, 576}, {576, 1536}, {49152, 576}}) {
    const at::Tensor x = at::randn({1, in}), w = at::randn({out, in});
    const at::Tensor xq = at::randint(-127, 128, {1, in}).to(at::kChar);
    const at::Tensor wq = at::randint(-127, 128, {out, in}).to(at::kChar);
    const at::Tensor wqc = wq.t().contiguous().t();
    const double t_mv = best([&] { return at::mv(w, x[0]); });
    const double t_g = best([&] { return d::gemv(x, w); });
    const double t_i = best([&] { return at::_int_mm(xq, wq.t()); });
    const double t_qr = best([&] { return d::gemv_int8(xq, wq); });
    const double t_qc = best([&] { return d::gemv_int8(xq, wqc); });
    const double fb = static_cast<double>(out * in * 4), qb = static_cast<double>(out * in);
    std::printf("[%lld x %lld] f32: at::mv %.1f GB/s, gemv %.1f GB/s | int8: _int_mm %.1f, rows %.1f, cols %.1f GB/s\n",
                static_cast<long long>(out), static_cast<long long>(in), fb / t_mv / 1e9, fb / t_g / 1e9,
                qb / t_i / 1e9, qb / t_qr / 1e9, qb / t_qc / 1e9);
  }
}

TEST_CASE("gemv timings over a whole SmolLM2-135M pass (weights out of cache)", "[.bench]") {
  // 30 blocks of qkv, o, gate_up and down, then the head: each weight read once per pass, as in a decode step.
  std::vector<std::pair<std::int64_t, std::int64_t>> shapes;
  for (int l = 0; l < 30; ++l)
    for (auto s : {std::pair<std::int64_t, std::int64_t>{960, 576}, {576, 576}, {3072, 576}, {576, 1536}})
      shapes.push_back(s);
  shapes.push_back({49152, 576});
  // weights, and each matrix's input and output made beforehand: the timed loops call the kernels only
  std::vector<at::Tensor> wf, wb, wq, wr, xf, xb, xq, yf, yb;
  double fbytes = 0, qbytes = 0;
  for (auto [out, in] : shapes) {
    wf.push_back(at::randn({out, in}));
    wb.push_back(wf.back().to(at::kBFloat16));
    wr.push_back(at::randint(-127, 128, {out, in}).to(at::kChar));  // [out, in] rows
    wq.push_back(wr.back().t().contiguous().t());                    // [in, out] rows
    xf.push_back(at::randn({1, in}));
    xb.push_back(xf.back().to(at::kBFloat16));
    xq.push_back(at::randint(-127, 128, {1, in}).to(at::kChar));
    yf.push_back(at::empty({1, out}));
    yb.push_back(at::empty({1, out}, at::kBFloat16));
    fbytes += static_cast<double>(out * in * 4);
    qbytes += static_cast<double>(out * in);
  }
  std::vector<std::int32_t> yq(49152);  // [1, out] int32 sums of the largest matrix
  auto time_pass = [&](auto&& one) {
    double b = 1e9;
    for (int r = 0; r < 8; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      for (std::size_t k = 0; k < shapes.size(); ++k) one(k);
      b = std::min(b, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return b;
  };
  const double tf = time_pass([&](std::size_t k) { d::gemv_into(xf[k], wf[k], yf[k], false); });
  const double tq = time_pass([&](std::size_t k) { d::gemv_int8_into(xq[k], wq[k], yq.data(), nullptr); });
  const double tr = time_pass([&](std::size_t k) { d::gemv_int8_into(xq[k], wr[k], yq.data(), nullptr); });
  const double tb = time_pass([&](std::size_t k) { d::gemv_into(xb[k], wb[k], yb[k], false); });
  std::printf("pass of %zu matrices, threads %d: float32 %.2f ms (%.1f GB/s); bfloat16 %.2f ms (%.1f GB/s), %.2fx; "
              "int8 [in, out] rows %.2f ms (%.1f GB/s), %.2fx; int8 [out, in] rows %.2f ms (%.1f GB/s), %.2fx\n",
              shapes.size(), at::get_num_threads(), tf * 1e3, fbytes / tf / 1e9, tb * 1e3, fbytes / 2 / tb / 1e9,
              tf / tb, tq * 1e3, qbytes / tq / 1e9, tf / tq, tr * 1e3, qbytes / tr / 1e9, tf / tr);
}

TEST_CASE("gemv over a whole SmolLM2-135M pass with its weights in a huge-page arena or where the allocator put them",
          "[.bench]") {
  // What Model does at load (detail::HugePageArena): the same pass of products with its weights copied into one
  // arena advised for transparent huge pages, against the same weights where ATen's allocator put them (4 KiB
  // pages unless the kernel's THP setting is "always"). The two alternate, a pass each, so that both see the
  // machine's load changes; the ratio of each round is printed, then their medians.
  std::vector<std::pair<std::int64_t, std::int64_t>> shapes;
  for (int l = 0; l < 30; ++l)
    for (auto s : {std::pair<std::int64_t, std::int64_t>{960, 576}, {576, 576}, {3072, 576}, {576, 1536}})
      shapes.push_back(s);
  shapes.push_back({49152, 576});
  std::vector<at::Tensor> w[3][2], x[3], yf, yb;  // [float32, bfloat16, int8 rows][allocator, arena]
  std::int64_t arena_bytes = 0, elems = 0;
  for (auto [out, in] : shapes) {
    w[0][0].push_back(at::randn({out, in}));
    w[1][0].push_back(w[0][0].back().to(at::kBFloat16));
    w[2][0].push_back(at::randint(-127, 128, {out, in}).to(at::kChar));
    for (int k = 0; k < 3; ++k) arena_bytes += d::HugePageArena::bytes_for(w[k][0].back());
    x[0].push_back(at::randn({1, in}));
    x[1].push_back(x[0].back().to(at::kBFloat16));
    x[2].push_back(at::randint(-127, 128, {1, in}).to(at::kChar));
    yf.push_back(at::empty({1, out}));
    yb.push_back(at::empty({1, out}, at::kBFloat16));
    elems += out * in;
  }
  d::HugePageArena arena(arena_bytes);
  for (int k = 0; k < 3; ++k)
    for (const at::Tensor& t : w[k][0]) w[k][1].push_back(arena.copy(t));
  REQUIRE(d::HugePageArena::holds(w[2][1].back()));
  std::vector<std::int32_t> yq(49152);
  auto pass = [&](int k, int a) {
    const auto t0 = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < shapes.size(); ++i) {
      if (k == 2)
        d::gemv_int8_into(x[2][i], w[2][a][i], yq.data(), nullptr);
      else
        d::gemv_into(x[k][i], w[k][a][i], k == 0 ? yf[i] : yb[i], false);
    }
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  const char* names[3] = {"float32", "bfloat16", "int8 rows"};
  const double bytes[3] = {elems * 4.0, elems * 2.0, elems * 1.0};
  std::vector<double> ratio[3];
  for (int r = 0; r < 16; ++r) {
    for (int k = 0; k < 3; ++k) {
      const int first = r % 2;  // which goes first alternates
      double t[2];
      t[first] = pass(k, first);
      t[1 - first] = pass(k, 1 - first);
      ratio[k].push_back(t[0] / t[1]);
      std::printf("%s: allocator %.1f GB/s, arena %.1f GB/s (%.3fx)%s", names[k], bytes[k] / t[0] / 1e9,
                  bytes[k] / t[1] / 1e9, t[0] / t[1], k == 2 ? "\n" : "; ");
    }
  }
  for (int k = 0; k < 3; ++k) {
    std::sort(ratio[k].begin(), ratio[k].end());
    std::printf("%s: median arena / allocator speed %.3fx over %zu rounds (threads %d)\n", names[k],
                (ratio[k][7] + ratio[k][8]) / 2, ratio[k].size(), at::get_num_threads());
  }
}
