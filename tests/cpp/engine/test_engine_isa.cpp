// The engine's CPU kernels on every instruction-set path this CPU supports (crossicl/core/isa.h) give the same
// bits (no multiply-add contraction, sums in the order written). test_kernels.cpp checks the active path against
// the ATen formulation; ctest runs it once more with CROSSICL_ISA=baseline.
#include <cmath>
#include <vector>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "crossicl/engine/config.h"
#include "detail/engine_kernels.h"
#include "detail/engine_ops.h"
#include "../tolerance.h"

namespace {

using crossicl::Isa;
namespace tol = crossicl::test::tol;

// The kernels' outputs on one path, for fixed inputs of dtype dt.
std::vector<at::Tensor> run_kernels(Isa isa, at::ScalarType dt) {
  namespace d = crossicl::detail;
  at::manual_seed(11);
  std::vector<at::Tensor> out;
  at::Tensor x = at::randn({7, 200}).to(dt), w = (at::rand({200}) + 0.5).to(dt);
  out.push_back(d::rms_norm_cpu(x, w, 1e-5, isa));
  out.push_back(d::silu_mul_cpu(at::randn({5, 2 * 77}).to(dt), isa));
  const std::int64_t n = 6, nh = 4, kvh = 2, hd = 32;
  crossicl::Config c;
  c.dim = nh * hd, c.hidden_dim = 8, c.n_layers = 1, c.n_heads = nh, c.n_kv_heads = kvh, c.vocab_size = 2;
  c.max_seq_len = 64;
  c.validate("test");
  at::Tensor cos, sin;
  d::rope_cos_sin(at::arange(30, 30 + n, at::kLong), d::rope_inv_freq(c), dt, cos, sin);
  at::Tensor qkv = at::randn({n, nh + 2 * kvh, hd}).to(dt);
  d::rope_qk_cpu(qkv, nh + kvh, cos, sin, isa);
  out.push_back(qkv);
  // 30 to 34 keys (groups of 4 scores and tails); head sizes 32 and 68 (whole register blocks of value columns,
  // single registers, a scalar tail)
  const std::int64_t cap = 40, p0 = 29, len = 5;
  for (std::int64_t ahd : {hd, std::int64_t{68}}) {
    at::Tensor q = at::randn({len, nh, ahd}).to(dt), k = at::randn({kvh, cap, ahd}).to(dt),
               v = at::randn({kvh, cap, ahd}).to(dt);
    at::Tensor att = at::empty({len, nh, ahd}, q.options());
    d::attend_cpu(q, k, v, p0, 1.0 / std::sqrt(static_cast<double>(ahd)), att, isa);
    out.push_back(att);
  }
  at::Tensor logits = at::randn({3, 1000}) * 5;  // blocks of 256, a tail of 8
  std::vector<std::int32_t> targets = {3, 999, 512};
  at::Tensor lp = at::empty({3}), greedy = at::empty({3}, at::kBool);
  d::token_logprobs_cpu(logits, targets.data(), lp.data_ptr<float>(), greedy.data_ptr<bool>(), isa);
  out.push_back(lp);
  out.push_back(greedy);
  std::vector<std::int32_t> ids(3);
  at::Tensor glp = at::empty({3});
  d::greedy_tokens_cpu(logits, ids.data(), glp.data_ptr<float>(), isa);
  out.push_back(glp);
  out.push_back(at::tensor(ids));
  return out;
}

}  // namespace

TEST_CASE("kernel paths give the same bits", "[engine][kernels][isa]") {
  const at::ScalarType dt = GENERATE(at::kFloat, at::kBFloat16);
  INFO("dtype " << c10::toString(dt));
  const std::vector<Isa> paths = crossicl::supported_isas();
  REQUIRE(paths.front() == Isa::baseline);
  const std::vector<at::Tensor> base = run_kernels(Isa::baseline, dt);
  for (Isa isa : paths) {
    const std::vector<at::Tensor> got = run_kernels(isa, dt);
    for (std::size_t i = 0; i < got.size(); ++i) {
      INFO("path " << crossicl::isa_name(isa) << ", kernel output " << i << ": " << tol::close(got[i], base[i], 0));
      CHECK(at::equal(got[i], base[i]));
    }
  }
}

TEST_CASE("a kernel path the CPU lacks is refused, not run", "[engine][kernels][isa]") {
  if (crossicl::cpu_isa() == Isa::avx512) return;  // every path runs here
  at::Tensor x = at::randn({2, 8});
  CHECK_THROWS_WITH(crossicl::detail::rms_norm_cpu(x, at::ones({8}), 1e-5, Isa::avx512),
                    Catch::Contains("rms_norm") && Catch::Contains("avx512"));
}
