// The hand-written CPU kernels against the ATen formulation they replace (the path CUDA still takes):
// float32 to rounding, bfloat16 to a few ulps, on shapes with grouped-query heads, a chunk past the cache start
// and a causal mask.
#include <array>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "crossicl/core/isa.h"
#include "detail/engine_kernels.h"
#include "crossicl/engine/config.h"
#include "detail/engine_ops.h"
#include "../tolerance.h"

using crossicl::Config;

namespace {

// Largest |a - b| in float32, relative to the largest |b| (the reference): tolerances scale with the values.
double max_diff(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor bf = b.to(at::kFloat);
  return (a.to(at::kFloat) - bf).abs().max().item<double>() / std::max(bf.abs().max().item<double>(), 1e-30);
}

// Relative bound (tests/cpp/tolerance.h): float32, gamma_128 for the longest reduction here (96 squares of
// rms_norm; 16-wide scores and 8 keys of attention) plus the element-wise steps (exp, rsqrt, cos/sin ~2 ulp);
// bfloat16, 4 roundings of 2^-8 (the ATen sequence rounds after each op, e.g. RoPE's two products and sum, the
// kernel once at the end).
double tolerance(at::ScalarType dt) {
  return dt == at::kFloat ? crossicl::test::tol::f32_rel(128) : 4 * crossicl::test::tol::kUBf16;
}

}  // namespace

TEST_CASE("CPU kernels agree with the ATen formulation", "[engine][kernels]") {
  at::manual_seed(7);
  const at::ScalarType dt = GENERATE(at::kFloat, at::kBFloat16);
  INFO("dtype " << c10::toString(dt));
  const double tol = tolerance(dt);
  const auto opt = at::TensorOptions().dtype(dt);

  SECTION("rms_norm") {
    at::Tensor x = at::randn({5, 96}).to(dt), w = (at::rand({96}) + 0.5).to(dt);
    CHECK(crossicl::detail::cpu_kernels(x));
    CHECK(max_diff(crossicl::detail::rms_norm_cpu(x, w, 1e-5), crossicl::detail::rms_norm(x, w, 1e-5)) <= tol);
  }

  SECTION("silu_mul") {
    at::Tensor gu = at::randn({4, 2 * 40}).to(dt);
    at::Tensor ref = at::silu(gu.narrow(1, 0, 40)) * gu.narrow(1, 40, 40);
    CHECK(max_diff(crossicl::detail::silu_mul_cpu(gu), ref) <= tol);
  }

  SECTION("rope on the query and key heads of a fused qkv, value heads untouched") {
    const std::int64_t n = 6, nh = 4, kvh = 2, hd = 16;
    Config c;
    c.dim = nh * hd, c.hidden_dim = 8, c.n_layers = 1, c.n_heads = nh, c.n_kv_heads = kvh, c.vocab_size = 2;
    c.max_seq_len = 32;
    c.validate("test");
    at::Tensor cos, sin;
    crossicl::detail::rope_cos_sin(at::arange(10, 10 + n, at::kLong), crossicl::detail::rope_inv_freq(c), dt, cos, sin);
    at::Tensor qkv = at::randn({n, nh + 2 * kvh, hd}).to(dt);
    at::Tensor ref_qk = crossicl::detail::apply_rope(qkv.narrow(1, 0, nh + kvh), cos, sin);
    at::Tensor v = qkv.narrow(1, nh + kvh, kvh).clone();
    crossicl::detail::rope_qk_cpu(qkv, nh + kvh, cos, sin);
    CHECK(max_diff(qkv.narrow(1, 0, nh + kvh), ref_qk) <= tol);
    CHECK(at::equal(qkv.narrow(1, nh + kvh, kvh), v));
  }

  SECTION("attention: causal, grouped-query, a chunk after cached positions") {
    // head sizes: 16; 68 = a block of 64 value columns (8 registers on avx2, 4 on avx512) and a tail of 4; and a
    // decode step over 38 keys (9 groups of 4 scores and 2 more)
    const int c = GENERATE(0, 1, 2);
    const std::int64_t hd = c == 0 ? 16 : 68, p0 = c == 2 ? 37 : 5, len = c == 2 ? 1 : 3;
    INFO("head_dim " << hd << ", p0 " << p0 << ", len " << len);
    const std::int64_t nh = 4, kvh = 2, cap = 40;
    // q as a view into a wider row (as it is inside the fused qkv output): row stride > nh * hd.
    at::Tensor wide = at::randn({len, nh + 2 * kvh, hd}, opt.dtype(at::kFloat)).to(dt);
    at::Tensor q = wide.narrow(1, 0, nh);
    at::Tensor k = at::randn({kvh, cap, hd}).to(dt), v = at::randn({kvh, cap, hd}).to(dt);
    const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
    at::Tensor out = at::empty({len, nh, hd}, opt);
    crossicl::detail::attend_cpu(q, k, v, p0, scale, out);

    // Reference in float32: per head, scores over keys 0 .. p0 + len - 1 with the causal mask.
    const std::int64_t keys = p0 + len;
    at::Tensor qf = q.to(at::kFloat).transpose(0, 1);  // [nh, len, hd]
    at::Tensor kf = k.narrow(1, 0, keys).to(at::kFloat).repeat_interleave(nh / kvh, 0);  // [nh, keys, hd]
    at::Tensor vf = v.narrow(1, 0, keys).to(at::kFloat).repeat_interleave(nh / kvh, 0);
    at::Tensor scores = at::matmul(qf, kf.transpose(1, 2)) * scale;  // [nh, len, keys]
    at::Tensor mask = at::ones({len, keys}, at::kBool).triu(p0 + 1);
    scores = scores.masked_fill(mask, -INFINITY);
    at::Tensor ref = at::matmul(at::softmax(scores, -1), vf).transpose(0, 1);  // [len, nh, hd]
    CHECK(max_diff(out, ref) <= tol);
    // The first query sees p0 + 1 keys only: changing a later key must not change its output.
    k.select(1, p0 + 1).fill_(100);
    at::Tensor out2 = at::empty({len, nh, hd}, opt);
    crossicl::detail::attend_cpu(q, k, v, p0, scale, out2);
    CHECK(at::equal(out2.select(0, 0), out.select(0, 0)));
    if (len > 2) CHECK_FALSE(at::equal(out2.select(0, 2), out.select(0, 2)));
  }
}

TEST_CASE("rms_norm and silu_mul into a decode step's buffers write what they return, and name a buffer that does "
          "not fit", "[engine][kernels]") {
  namespace d = crossicl::detail;
  at::manual_seed(11);
  const at::ScalarType dt = GENERATE(at::kFloat, at::kBFloat16);
  INFO("dtype " << c10::toString(dt));
  const auto opt = at::TensorOptions().dtype(dt);
  const at::Tensor x = at::randn({3, 72}).to(dt), w = (at::rand({72}) + 0.5).to(dt);
  at::Tensor h = at::full({3, 72}, 7.0, opt);  // stale values from an earlier layer
  d::rms_norm_cpu_into(x, w, 1e-5, h);
  CHECK(at::equal(h, d::rms_norm_cpu(x, w, 1e-5)));

  const at::Tensor gu0 = at::randn({3, 2 * 40}).to(dt);
  at::Tensor gu = gu0.clone(), ff = at::full({3, 40}, 7.0, opt);
  d::silu_mul_cpu_into(gu, gu.narrow(1, 0, 40), ff);
  CHECK(at::equal(ff, d::silu_mul_cpu(gu0.clone())));
  CHECK(at::equal(gu.narrow(1, 0, 40), at::silu(gu0.narrow(1, 0, 40))));  // the gate half holds silu(gate)

  CHECK_THROWS_WITH(d::rms_norm_cpu_into(x, w, 1e-5, at::empty({3, 71}, opt)),
                    Catch::Contains("rms_norm") && Catch::Contains("[3, 71]"));
  CHECK_THROWS_WITH(d::rms_norm_cpu_into(x.t(), w, 1e-5, at::empty({72, 3}, opt)), Catch::Contains("[72, 3]"));
  CHECK_THROWS_WITH(d::rms_norm_cpu_into(x, w.to(at::kDouble), 1e-5, h), Catch::Contains("Double"));
  CHECK_THROWS_WITH(d::silu_mul_cpu_into(gu, gu.narrow(1, 40, 40), ff), Catch::Contains("first half"));
  CHECK_THROWS_WITH(d::silu_mul_cpu_into(gu, gu.narrow(1, 0, 40), at::empty({3, 41}, opt)),
                    Catch::Contains("[3, 41]") && Catch::Contains("[3, 40]"));
}

TEST_CASE("CPU kernels name an unsupported dtype", "[engine][kernels]") {
  at::Tensor x = at::randn({2, 8}, at::kDouble);
  CHECK_FALSE(crossicl::detail::cpu_kernels(x));
  CHECK_THROWS_WITH(crossicl::detail::silu_mul_cpu(x), Catch::Contains("silu_mul") && Catch::Contains("Double"));
}

TEST_CASE("token log-probabilities and greedy flags agree with log_softmax and argmax", "[engine][kernels]") {
  namespace d = crossicl::detail;
  at::manual_seed(5);
  const std::int64_t vocab = GENERATE(7, 16, 1000, 4099);  // a tail only, one vector, blocks of 256 and a tail
  INFO("vocab " << vocab);
  const std::int64_t n = 6;
  // rows of a wider tensor (stride > vocab), as a job's rows are of a forward pass's logits
  at::Tensor wide = at::randn({n, vocab + 3}) * 6;
  at::Tensor logits = wide.narrow(1, 0, vocab);
  logits.select(0, 2).fill_(-3.0f);  // a row of equal values: the argmax is id 0
  logits[3][vocab - 1] = 40.0f;      // ties at the maximum: the lowest id wins
  logits[3][vocab / 2] = 40.0f;
  at::Tensor argmax = logits.argmax(1);  // [n]
  std::vector<std::int32_t> targets(n);
  for (std::int64_t r = 0; r < n; ++r)  // even rows their argmax, odd rows another id
    targets[r] = static_cast<std::int32_t>(r % 2 == 0 ? argmax[r].item<std::int64_t>() : (r * 5 + 1) % vocab);
  targets[3] = static_cast<std::int32_t>(vocab / 2);
  std::vector<float> lp(n);
  std::unique_ptr<bool[]> greedy(new bool[n]);
  d::token_logprobs_cpu(logits, targets.data(), lp.data(), greedy.get());
  at::Tensor ref = at::log_softmax(logits, 1);  // [n, vocab]
  // a log-prob is a logit minus a logsumexp: its error scales with the logits (tests/cpp/tolerance.h)
  const double scale = logits.abs().max().item<double>();
  const double tol = crossicl::test::tol::f32_rel(vocab + 8);
  for (std::int64_t r = 0; r < n; ++r) {
    INFO("row " << r);
    CHECK(std::fabs(lp[r] - ref[r][targets[r]].item<double>()) <= tol * (std::fabs(lp[r]) + scale));
    CHECK(greedy[r] == (argmax[r].item<std::int64_t>() == targets[r]));
  }
  CHECK(greedy[3]);  // the lower of the two tied ids
  CHECK(std::fabs(lp[2] + std::log(static_cast<double>(vocab))) <= tol * scale);  // uniform row: -log(vocab)

  // greedy_tokens_cpu: each row's argmax and its log-probability, the bits token_logprobs gives that target
  std::vector<std::int32_t> ids(n, -1);
  std::vector<float> glp(n);
  d::greedy_tokens_cpu(logits, ids.data(), glp.data());
  std::vector<std::int32_t> best(n);
  for (std::int64_t r = 0; r < n; ++r) best[r] = static_cast<std::int32_t>(argmax[r].item<std::int64_t>());
  d::token_logprobs_cpu(logits, best.data(), lp.data(), greedy.get());
  for (std::int64_t r = 0; r < n; ++r) {
    INFO("greedy row " << r);
    CHECK(ids[r] == best[r]);
    CHECK(glp[r] == lp[r]);
  }
  CHECK(ids[2] == 0);                                   // equal values: id 0
  CHECK(ids[3] == static_cast<std::int32_t>(vocab / 2));  // ties: the lower id

  SECTION("a NaN in a row: NaN log-probability, not greedy") {
    logits[1][vocab / 3] = NAN;
    d::token_logprobs_cpu(logits, targets.data(), lp.data(), greedy.get());
    CHECK(std::isnan(lp[1]));
    CHECK_FALSE(greedy[1]);
    CHECK(greedy[0]);
    // greedy_tokens skips the NaN: the argmax of the other values, the same on every path, also where the NaN
    // shares a vector lane with the maximum (index 1 and 17 do on 4, 8 and 16 lanes)
    if (vocab >= 32) {
      logits[1][1] = NAN;
      logits[1][17] = 50.0f;
    }
    d::greedy_tokens_cpu(logits, ids.data(), glp.data());
    CHECK(ids[1] == logits[1].nan_to_num(-INFINITY).argmax().item<std::int64_t>());
    CHECK(std::isnan(glp[1]));
    for (crossicl::Isa isa : crossicl::supported_isas()) {
      std::vector<std::int32_t> other(n);
      d::greedy_tokens_cpu(logits, other.data(), glp.data(), isa);
      CHECK(other == ids);
    }
  }
  SECTION("greedy_tokens checks its logits") {
    CHECK_THROWS_WITH(d::greedy_tokens_cpu(logits.to(at::kDouble), ids.data(), lp.data()),
                      Catch::Contains("greedy_tokens") && Catch::Contains("Double"));
    CHECK_THROWS_WITH(d::greedy_tokens_cpu(at::empty({1, 0}), ids.data(), lp.data()), Catch::Contains("vocab 0"));
  }
  SECTION("a target outside the vocabulary is named") {
    targets[4] = static_cast<std::int32_t>(vocab);
    CHECK_THROWS_WITH(d::token_logprobs_cpu(logits, targets.data(), lp.data(), greedy.get()),
                      Catch::Contains("target " + std::to_string(vocab) + " of row 4"));
  }
}

TEST_CASE("batched attention gives each sequence the bits of its own call", "[engine][kernels]") {
  namespace d = crossicl::detail;
  at::manual_seed(9);
  const at::ScalarType dt = GENERATE(at::kFloat, at::kBFloat16);
  INFO("dtype " << c10::toString(dt));
  const std::int64_t nh = 6, kvh = 2, hd = 16;
  // (len, p0, capacity): a decode step, a chunk past a cache, one with more than 16 keys (vector exp), a long one
  // (enough work to split over threads), and an empty one
  const std::vector<std::array<std::int64_t, 3>> seqs = {{1, 9, 12}, {4, 30, 40}, {7, 0, 7}, {40, 300, 400}, {0, 3, 4}};
  std::int64_t n = 0;
  for (const auto& s : seqs) n += s[0];
  at::Tensor q = at::randn({n, nh + 2 * kvh, hd}).to(dt).narrow(1, 0, nh);  // rows wider than nh * hd
  std::vector<at::Tensor> ks, vs;
  for (const auto& s : seqs) {
    ks.push_back(at::randn({kvh, s[2], hd}).to(dt));
    vs.push_back(at::randn({kvh, s[2], hd}).to(dt));
  }
  std::vector<d::AttendSpan> spans;
  std::int64_t row = 0;
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    d::AttendSpan a;
    a.start = row, a.len = seqs[i][0], a.p0 = seqs[i][1], a.k = &ks[i], a.v = &vs[i];
    spans.push_back(a);
    row += seqs[i][0];
  }
  const double scale = 0.25;
  at::Tensor out = at::zeros({n, nh, hd}, q.options());
  d::attend_cpu(q, spans, scale, out);
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    INFO("sequence " << i);
    if (spans[i].len == 0) continue;
    at::Tensor one = at::empty({spans[i].len, nh, hd}, q.options());
    d::attend_cpu(q.narrow(0, spans[i].start, spans[i].len), ks[i], vs[i], spans[i].p0, scale, one);
    CHECK(at::equal(out.narrow(0, spans[i].start, spans[i].len), one));
  }
}
