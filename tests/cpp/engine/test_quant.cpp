// int8 quantisation (Quantize::Int8, detail/engine_quant.h): the error bounds of quantise/dequantise and of the
// int8 Linear against float, bit-identical rows whatever the batch, the same bits on every ISA path, and on
// stories260K greedy agreement with float32, prefix-cache invariance and the weight memory.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <random>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "crossicl/core/error.h"
#include "crossicl/core/isa.h"
#include "crossicl/engine/context.h"
#include "crossicl/engine/engine.h"
#include "crossicl/engine/model.h"
#include "detail/engine_kernels.h"
#include "detail/engine_quant.h"
#include "../test_data.h"

using namespace crossicl;
namespace quant = crossicl::detail;

namespace {

constexpr double kU = 0x1p-24;  // float32 unit roundoff

at::Generator gen(std::uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

// Rows of varied scale: normal values times a per-row magnitude, one zero row, one row with a single outlier.
at::Tensor sample_rows(std::int64_t n, std::int64_t k, std::uint64_t seed) {
  at::Tensor x = at::randn({n, k}, gen(seed));
  at::Tensor mag = at::pow(10.0, at::arange(n, at::kFloat).remainder(7) - 3).unsqueeze(1);  // 1e-3 .. 1e3
  x = x * mag;
  if (n > 2) {
    x[1].zero_();
    x[2][k / 2] = 1e4;
  }
  return x;
}

std::string stories_bin() { return test::shared_path("models/stories260K/stories260K.bin"); }

EngineOptions int8_options() {
  EngineOptions o;
  o.quantize = Quantize::Int8;
  return o;
}

}  // namespace

TEST_CASE("quantize names parse and unknown ones list the valid values", "[engine][quant]") {
  CHECK(quantize_from_name("none") == Quantize::None);
  CHECK(quantize_from_name("int8") == Quantize::Int8);
  CHECK(quantize_name(Quantize::Int8) == "int8");
  CHECK_THROWS_WITH(quantize_from_name("int4"), "quantize must be 'none' or 'int8' (got 'int4')");
}

TEST_CASE("quantise/dequantise: |x - q*scale| <= scale/2, max row element at +-127, zero rows exact",
          "[engine][quant]") {
  const at::Tensor x = sample_rows(21, 77, 1);
  const QuantWeight r = quant::quantize_rows(x);
  REQUIRE(r.q.scalar_type() == at::kChar);
  REQUIRE(r.q.sizes() == x.sizes());
  const at::Tensor xd = x.to(at::kDouble), sd = r.scale.to(at::kDouble);
  const at::Tensor err = (xd - r.q.to(at::kDouble) * sd.unsqueeze(1)).abs();  // exact in double
  // x / scale is rounded to float before rounding to an integer: |x/scale - q| <= 1/2 + 127 u.
  const at::Tensor bound = sd.unsqueeze(1) * (0.5 + 127 * kU);
  CHECK(at::le(err, bound).all().item<bool>());
  CHECK(r.q.abs().amax(1).to(at::kInt).eq(127).logical_or(r.scale.eq(0)).all().item<bool>());
  CHECK(r.scale[1].item<float>() == 0);
  CHECK(r.q[1].eq(0).all().item<bool>());
  CHECK(quant::dequantize_rows(r)[1].eq(0).all().item<bool>());
  CHECK(r.q.ge(-127).all().item<bool>());
  // scale = max|row| / 127 in float32
  CHECK(at::equal(r.scale, x.abs().amax(1) / 127));
  // halves round to even: 0.5 and 2.5 of the scale 1 (a row holding 127)
  const QuantWeight h = quant::quantize_rows(at::tensor({127.f, 0.5f, 1.5f, 2.5f, -0.5f, -1.5f}).unsqueeze(0));
  CHECK(h.q.to(at::kInt).equal(at::tensor({127, 0, 2, 2, 0, -2}, at::kInt).unsqueeze(0)));
}

TEST_CASE("int8 Linear is within the derived bound of the exact product", "[engine][quant]") {
  const std::int64_t n = 13, k = 300, m = 37;
  const at::Tensor x = sample_rows(n, k, 2);
  const at::Tensor w = at::randn({m, k}, gen(3)) * 0.05;
  const QuantWeight wq = quant::quantize_linear(w);
  const at::Tensor y = quant::linear_int8(x, wq);  // [n, m]
  const at::Tensor xd = x.to(at::kDouble), wd = w.to(at::kDouble);
  const at::Tensor exact = at::mm(xd, wd.t());
  // x = sx qx + ex, w = sw qw + ew, |ex| <= sx/2, |ew| <= sw/2 (each times 1 + 254 u for the rounding of x / s):
  // |y - sx sw sum qx qw| <= sum_k (|x_k| sw/2 + |w_k| sx/2 + sx sw/4); then two float32 products in the rescale.
  const double slack = 1 + 254 * kU;
  const at::Tensor sx = x.abs().amax(1).to(at::kDouble) / 127;  // [n]
  const at::Tensor sw = w.abs().amax(1).to(at::kDouble) / 127;  // [m]
  const at::Tensor bound = (at::mm(xd.abs().sum(1, true), (sw / 2).unsqueeze(0)) +
                            at::mm((sx / 2).unsqueeze(1), wd.abs().sum(1).unsqueeze(0)) +
                            sx.unsqueeze(1) * sw.unsqueeze(0) * (k / 4.0)) * slack * slack +
                           exact.abs() * (3 * kU) + 1e-30;
  const at::Tensor err = (y.to(at::kDouble) - exact).abs();
  CHECK(at::le(err, bound).all().item<bool>());
  // the bound is not vacuous: the error uses a good share of it somewhere, and the result is close to exact
  CHECK((err / bound).max().item<double>() > 0.01);
  CHECK((err.sum() / exact.abs().sum()).item<double>() < 0.02);
}

TEST_CASE("int8 Linear rows are bit-identical whatever the batch around them and the weight layout",
          "[engine][quant]") {
  const at::Tensor x = sample_rows(40, 576, 4);
  const at::Tensor wf = at::randn({96, 576}, gen(5));
  const QuantWeight cols = quant::quantize_linear(wf, quant::Int8Layout::Columns);
  const QuantWeight rows = quant::quantize_linear(wf, quant::Int8Layout::Rows);
  CHECK(cols.q.t().is_contiguous());  // [in, out] rows, at::_int_mm's layout
  CHECK(rows.q.is_contiguous());      // [out, in] rows
  CHECK(at::equal(rows.q, cols.q));
  const bool rows_here = quant::preferred_int8_layout() == quant::Int8Layout::Rows;
  CHECK(quant::quantize_linear(wf).q.is_contiguous() == rows_here);
  const at::Tensor all = quant::linear_int8(x, cols);  // [40, 96]
  // the layout changes the kernels, never the result: decode rows (the matrix-vector kernel), 8 rows (that kernel
  // or _int_mm) and 40 (a GEMM)
  for (std::int64_t r : {0, 3, 31})
    CHECK(at::equal(quant::linear_int8(x.narrow(0, r, 1), rows), all.narrow(0, r, 1)));
  CHECK(at::equal(quant::linear_int8(x.narrow(0, 2, 8), rows), all.narrow(0, 2, 8)));
  CHECK(at::equal(quant::linear_int8(x, rows), all));
  const QuantWeight& w = cols;
  for (std::int64_t r : {0, 1, 2, 17, 39})
    CHECK(at::equal(quant::linear_int8(x.narrow(0, r, 1), w), all.narrow(0, r, 1)));  // one row (decode)
  CHECK(at::equal(quant::linear_int8(x.narrow(0, 5, 20), w), all.narrow(0, 5, 20)));
  at::Tensor perm = at::randperm(40, gen(6));
  CHECK(at::equal(quant::linear_int8(x.index_select(0, perm), w), all.index_select(0, perm)));
  // a non-contiguous input (a column slice of a wider tensor) quantises the same values
  at::Tensor wide = at::cat({x, x}, 1).narrow(1, 0, 576);
  CHECK(at::equal(quant::linear_int8(wide, w), all));
}

TEST_CASE("int8_mm_via_float equals at::_int_mm bit for bit, extreme codes and inner slices included",
          "[engine][quant]") {
  // k = 2,100: slices of 1,024, 1,024 and 52; rows of -128 codes in x and w put out[0][0]'s full slices at their
  // 2^24 bound, and a row of 127 against -128 the negative end. Both weight layouts; 2,100 x 2,100 [out, in] rows
  // are two panels of the widened weights (4M floats: 1,997 rows, then 103)
  for (const auto [k, m] : {std::pair<std::int64_t, std::int64_t>{2100, 33}, {576, 33}, {2100, 2100}}) {
    INFO("k=" << k << " out=" << m);
    at::Tensor xq = at::randint(-128, 128, {7, k}, gen(11)).to(at::kChar);
    at::Tensor wq = at::randint(-128, 128, {m, k}, gen(12)).to(at::kChar);
    xq.narrow(0, 0, 1).fill_(-128);
    wq.narrow(0, 0, 1).fill_(-128);
    xq.narrow(0, 1, 1).fill_(127);
    wq.narrow(0, 1, 1).fill_(-128);
    const at::Tensor want = at::_int_mm(xq, wq.t());
    const at::Tensor wt = wq.t().contiguous().t();  // the engine's [out, in] view of [in, out] rows
    for (const at::Tensor& w : {wq, wt}) {
      at::Tensor out = at::empty({7, m}, at::kInt);
      quant::int8_mm_via_float(xq, w, out);
      CHECK(at::equal(out, want));
      CHECK(out[0][0].item<std::int64_t>() == k * 128 * 128);
    }
  }
  at::Tensor bad = at::empty({7, 32}, at::kInt);
  CHECK_THROWS_AS(quant::int8_mm_via_float(at::zeros({7, 8}, at::kChar), at::zeros({33, 8}, at::kChar), bad),
                  InvalidArgument);
}

TEST_CASE("linear_int8_add adds the int8 product to the residual as add_ would, bit for bit", "[engine][quant]") {
  // 130 outputs: whole blocks and a tail; 1 and 3 rows go through the decode kernel's epilogue, 9 through the GEMM path
  const QuantWeight w = quant::quantize_linear(at::randn({130, 200}, gen(11)));
  for (std::int64_t n : {1, 3, 9}) {
    INFO("rows " << n);
    const QuantWeight xq = quant::quantize_rows(sample_rows(n, 200, 12));
    const at::Tensor r0 = at::randn({n, 130}, gen(13));
    at::Tensor r = r0.clone();
    for (Isa isa : supported_isas()) {
      INFO(isa_name(isa));
      r.copy_(r0);
      quant::linear_int8_add(xq, w, r, isa);
      CHECK(at::equal(r, r0 + quant::linear_int8(xq, w, isa)));
    }
  }
  const QuantWeight xq = quant::quantize_rows(sample_rows(2, 200, 14));
  at::Tensor wrong = at::zeros({2, 129});
  CHECK_THROWS_WITH(quant::linear_int8_add(xq, w, wrong),
                    Catch::Contains("residual [2, 129] is not a contiguous [2, 130]"));
  at::Tensor strided = at::zeros({130, 2}).t();
  CHECK_THROWS_AS(quant::linear_int8_add(xq, w, strided), crossicl::InvalidArgument);
}

TEST_CASE("int8 kernels give the same bits on every ISA path", "[engine][quant]") {
  const at::Tensor x = sample_rows(9, 333, 7);
  const QuantWeight w = quant::quantize_linear(at::randn({50, 333}, gen(8)));
  const QuantWeight ref = quant::quantize_rows(x, Isa::baseline);
  const at::Tensor yref = quant::linear_int8(x, w, Isa::baseline);
  for (Isa isa : supported_isas()) {
    INFO(isa_name(isa));
    const QuantWeight r = quant::quantize_rows(x, isa);
    CHECK(at::equal(r.q, ref.q));
    CHECK(at::equal(r.scale, ref.scale));
    CHECK(at::equal(quant::linear_int8(x, w, isa), yref));
  }
}

TEST_CASE("quantize int8 needs float32 on the cpu", "[engine][quant][model]") {
  const std::string p = stories_bin();
  if (p.empty()) return;
  CHECK_THROWS_WITH(Model::load(p, {at::kBFloat16, "cpu", Quantize::Int8, {}}),
                    "quantize 'int8' needs dtype 'float32' on the cpu (got dtype 'bfloat16' on 'cpu')");
}

TEST_CASE("stories260K int8: weights <= 0.3x float32, greedy ids agree with float32", "[engine][quant][model]") {
  const std::string p = stories_bin();
  if (p.empty()) return;
  Engine f(p);
  Engine q(p, int8_options());
  CHECK(q.model().quantize() == Quantize::Int8);
  CHECK(q.model().weights().layers[0].wqkv.defined() == false);  // the float Linear weights are released
  const double ratio = static_cast<double>(q.model().weight_bytes()) / static_cast<double>(f.model().weight_bytes());
  INFO("weight bytes int8 / float32 = " << ratio);
  CHECK(ratio <= 0.3);  // measured 0.266 (the norms stay float32)

  // Measured (golden.json's 4 prompts, 60 greedy tokens each): identical for 60, 57, 59 and 18 tokens, i.e. the
  // first 18 of every prompt and 194 of 240 before the first difference. Asserted with margin: 16 and 170.
  std::ifstream in(test::shared_path("models/stories260K/golden.json"));
  const auto golden = nlohmann::json::parse(in);
  std::vector<std::vector<std::int32_t>> prompts;
  for (const auto& cs : golden["cases"]) prompts.push_back(cs["prompt_ids"].get<std::vector<std::int32_t>>());
  GenerateOptions g;
  g.max_new_tokens = 60;
  g.stop = {};
  g.stop_at_eos = false;
  const auto want = f.generate(prompts, g);
  const auto got = q.generate(prompts, g);
  std::size_t total = 0;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    const auto& a = want[i].token_ids;
    const auto& b = got[i].token_ids;
    const auto first_diff = std::mismatch(a.begin(), a.end(), b.begin(), b.end()).first;
    const auto same = static_cast<std::size_t>(first_diff - a.begin());
    INFO("prompt " << i << ": " << same << " identical greedy ids");
    CHECK(same >= 16);
    total += same;
  }
  CHECK(total >= 170);
}

TEST_CASE("stories260K int8: greedy ids and logits do not depend on the prefix cache or the batch",
          "[engine][quant][model]") {
  const std::string p = stories_bin();
  if (p.empty()) return;
  EngineOptions off = int8_options();
  off.cache_bytes = 0;
  EngineOptions small = int8_options();
  small.max_batch_tokens = 16;
  Engine cold(p, off);
  Engine cached(p, int8_options());
  Engine chunked(p, small);
  // Prompts sharing a 40-token prefix (2 whole cache blocks), then different tails.
  std::vector<std::int32_t> prefix;
  for (int i = 0; i < 40; ++i) prefix.push_back(static_cast<std::int32_t>(1 + (i * 37) % 500));
  std::vector<std::vector<std::int32_t>> prompts;
  for (int t = 0; t < 4; ++t) {
    auto ids = prefix;
    for (int i = 0; i < 5 + t; ++i) ids.push_back(static_cast<std::int32_t>(3 + (t * 101 + i * 13) % 500));
    prompts.push_back(ids);
  }
  GenerateOptions g;
  g.max_new_tokens = 12;
  g.stop = {};
  g.stop_at_eos = false;
  const auto want = cold.generate(prompts, g);
  for (int round = 0; round < 2; ++round) {  // cold cache, then warm
    const auto got = cached.generate(prompts, g);
    for (std::size_t i = 0; i < prompts.size(); ++i) CHECK(got[i].token_ids == want[i].token_ids);
  }
  CHECK(cached.cache_stats().hit_tokens > 0);
  const auto got = chunked.generate(prompts, g);
  for (std::size_t i = 0; i < prompts.size(); ++i) CHECK(got[i].token_ids == want[i].token_ids);
  for (std::size_t i = 0; i < prompts.size(); ++i) {  // one prompt alone vs in the batch above
    const auto alone = cold.generate(std::vector<std::vector<std::int32_t>>{prompts[i]}, g);
    CHECK(alone[0].token_ids == want[i].token_ids);
  }
}

namespace {

// Logits of every position of `ids` through a fresh KV cache of `model`.
at::Tensor all_logits(const std::shared_ptr<const Model>& model, const std::vector<std::int32_t>& ids) {
  Context ctx(model);
  Batch b;
  for (std::size_t i = 0; i < ids.size(); ++i) b.add(ids[i], static_cast<std::int32_t>(i), 0, true);
  return ctx.decode(b).logits;  // [n, vocab]
}

std::vector<std::int32_t> some_ids(std::size_t n, int salt) {
  std::vector<std::int32_t> ids{1};
  for (std::size_t i = 1; i < n; ++i) ids.push_back(static_cast<std::int32_t>(3 + (i * 97 + salt * 31) % 509));
  return ids;
}

// The float32 stories260K model and its logits over 48 fixed ids, the reference of the smoothing tests.
struct FloatReference {
  std::shared_ptr<const Model> base;
  std::vector<std::int32_t> ids = some_ids(48, 1);
  at::Tensor want;     // [48, vocab] logits of base
  double range = 0;    // max - min of want

  explicit FloatReference(const std::string& path)
      : base(std::make_shared<const Model>(load_llama2c(path, at::kFloat), c10::Device(c10::kCPU))),
        want(all_logits(base, ids)),
        range((want.max() - want.min()).item<double>()) {}
};

}  // namespace

TEST_CASE("smoothing keeps the float function and, with an outlier channel, shrinks the int8 error",
          "[engine][quant][model]") {
  const std::string p = stories_bin();
  if (p.empty()) return;
  const FloatReference ref(p);
  const auto& [base, ids, want, range] = ref;

  // Smoothed float weights: the same logits up to float rounding, though the norm weights moved.
  Weights smoothed = base->weights();
  const quant::ActStats stats = quant::calibrate(*base, {some_ids(64, 2), some_ids(32, 3)});
  REQUIRE(stats.amax.size() == smoothed.layers.size());
  quant::smooth_layers(smoothed.layers, smoothed.config, stats, 0.5);
  CHECK_FALSE(at::equal(smoothed.layers[0].attention_norm, base->weights().layers[0].attention_norm));
  const auto same = std::make_shared<const Model>(smoothed, c10::Device(c10::kCPU));
  CHECK((all_logits(same, ids) - want).abs().max().item<double>() <= 1e-4 * range);

  // Channel 5 of every block's attention input made 40x larger and its qkv column 40x smaller: the same float
  // function, but a per-token int8 scale now spends its range on one channel. Smoothing takes it back.
  Weights outlier = base->weights();
  for (LayerWeights& l : outlier.layers) {
    l.attention_norm = l.attention_norm.clone();
    l.attention_norm[5].mul_(40);
    l.wqkv = l.wqkv.clone();
    l.wqkv.select(1, 5).div_(40);
  }
  Int8Options plain;
  plain.smooth_alpha = 0;
  Int8Options smooth;  // default alpha, fixed calibration ids
  const auto q_plain = std::make_shared<const Model>(outlier, c10::Device(c10::kCPU), Quantize::Int8, plain);
  const auto q_smooth = std::make_shared<const Model>(outlier, c10::Device(c10::kCPU), Quantize::Int8, smooth);
  const double err_plain = (all_logits(q_plain, ids) - want).abs().mean().item<double>();
  const double err_smooth = (all_logits(q_smooth, ids) - want).abs().mean().item<double>();
  INFO("mean |logit error|: no smoothing " << err_plain << ", smoothing " << err_smooth);
  CHECK(err_smooth < 0.5 * err_plain);
}

TEST_CASE("int8 options: smooth_alpha outside [0, 1] and calibration texts without a tokenizer are refused",
          "[engine][quant][model]") {
  const std::string p = stories_bin();
  if (p.empty()) return;
  ModelOptions m{at::kFloat, "cpu", Quantize::Int8, {}};
  m.int8.smooth_alpha = 1.5;
  CHECK_THROWS_WITH(Model::load(p, m), "smooth_alpha must be in [0, 1] (smooth_alpha=1.5)");
  EngineOptions e = int8_options();
  e.calibration = {"some text"};
  CHECK_THROWS_WITH(Engine(p, e), "calibration texts need a tokenizer (pass tokenizer=, or no calibration)");
}

TEST_CASE("keep_float leaves the named Linear layers in float32", "[engine][quant][model]") {
  const std::string p = stories_bin();
  if (p.empty()) return;
  const FloatReference ref(p);
  const auto& [base, ids, want, range] = ref;
  auto int8_model = [&](std::vector<std::string> keep) {
    Int8Options o;
    o.keep_float = std::move(keep);
    return std::make_shared<const Model>(ref.base->weights(), c10::Device(c10::kCPU), Quantize::Int8, o);
  };
  // Every layer kept: the smoothed float model, the same function up to rounding (as the smoothing test).
  const auto all = int8_model({"qkv", "o", "gate_up", "down", "head"});
  CHECK_FALSE(all->quant_output().q.defined());
  CHECK(all->weights().output.defined());
  CHECK(all->weight_bytes() == base->weight_bytes());
  CHECK((all_logits(all, ids) - want).abs().max().item<double>() <= 1e-4 * range);
  // One kept: that layer's float tensor stays, the others are int8, and the error sits between the two.
  const auto down = int8_model({"down"});
  for (const QuantLayer& q : down->quant_layers()) {
    CHECK_FALSE(q.w2.q.defined());
    CHECK(q.wqkv.q.defined());
  }
  CHECK(down->weights().layers[0].w2.defined());
  CHECK_FALSE(down->weights().layers[0].wo.defined());
  const auto none = int8_model({});
  CHECK(down->weight_bytes() > none->weight_bytes());
  const double err_none = (all_logits(none, ids) - want).abs().mean().item<double>();
  const double err_down = (all_logits(down, ids) - want).abs().mean().item<double>();
  INFO("mean |logit error|: all int8 " << err_none << ", down projections float32 " << err_down);
  CHECK(err_down < err_none);
  CHECK_THROWS_WITH(int8_model({"down", "mlp"}),
                    "keep_float: unknown layer 'mlp' (expected any of qkv, o, gate_up, down, head)");
}

TEST_CASE("fused RMSNorm and SiLU-gate quantisation equal the unfused ops bit for bit", "[engine][quant]") {
  const at::Tensor x = sample_rows(19, 77, 9);
  const at::Tensor w = at::rand({77}, gen(10)) + 0.5;
  const QuantWeight fused = quant::quantize_rms_norm(x, w, 1e-5);
  const QuantWeight ref = quant::quantize_rows(quant::rms_norm_cpu(x, w, 1e-5));
  CHECK(at::equal(fused.q, ref.q));
  CHECK(at::equal(fused.scale, ref.scale));
  const at::Tensor gu = at::randn({13, 2 * 40}, gen(11));
  const at::Tensor gate = gu.narrow(1, 0, 40), up = gu.narrow(1, 40, 40);
  const QuantWeight gref = quant::quantize_rows((quant::silu_int8_path(gate) * up).contiguous());
  const QuantWeight gfused = quant::quantize_silu_mul(gu);
  CHECK(at::equal(gfused.q, gref.q));
  CHECK(at::equal(gfused.scale, gref.scale));
  // against ATen's SiLU: an ulp of difference moves a value across a rounding boundary at most by one step
  const QuantWeight aten = quant::quantize_rows((at::silu(gate) * up).contiguous());
  CHECK((gfused.q.to(at::kInt) - aten.q.to(at::kInt)).abs().max().item<int>() <= 1);
  CHECK(at::allclose(gfused.scale, aten.scale, 1e-6, 0));
}

TEST_CASE("the int8 path's SiLU is within a few ulps of the exact value, the same bits on every path",
          "[engine][quant]") {
  // a dense sweep of [-100, 100], the clamp edges of e^-x, and special values
  at::Tensor x = at::cat({at::linspace(-100, 100, 200001), at::tensor({-87.5f, -87.0f, -86.9f, 88.0f, 88.1f, 0.0f,
                                                                       -0.0f, 1e-30f, -1e-30f, 1e-40f})})
                     .unsqueeze(0);
  const at::Tensor y = quant::silu_int8_path(x, Isa::baseline);
  const at::Tensor xd = x.to(at::kDouble);
  const at::Tensor exact = xd / (1 + at::exp(-xd));
  // |y - exact| <= 8 ulp of |exact| (expf's few ulp, the division's and the sum's rounding), or 1e-36 absolute
  // (below x = -88 the result is -0, the exact value under 6e-37)
  const at::Tensor err = (y.to(at::kDouble) - exact).abs();
  const at::Tensor bound = exact.abs() * (8 * 0x1p-24) + 1e-36;
  const at::Tensor bad = at::nonzero(at::gt(err, bound).view(-1));
  if (bad.numel() > 0) {
    const std::int64_t i = bad[0][0].item<std::int64_t>();
    INFO("first miss at x = " << x[0][i].item<double>() << ": " << y[0][i].item<double>() << " vs "
                              << exact[0][i].item<double>());
    CHECK(bad.numel() == 0);
  }
  for (Isa isa : supported_isas()) {
    INFO(isa_name(isa));
    CHECK(at::equal(quant::silu_int8_path(x, isa), y));
  }
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  const at::Tensor sp = quant::silu_int8_path(at::tensor({inf, -inf, nan}).unsqueeze(0));
  CHECK(sp[0][0].item<float>() == inf);
  CHECK(sp[0][1].item<float>() == 0.0f);  // -0
  CHECK(std::isnan(sp[0][2].item<float>()));
}

TEST_CASE("linear_int8_silu_mul equals the int8 gate/up product through quantize_silu_mul, bit for bit",
          "[engine][quant]") {
  // 2 * 70 rows: the vector blocks of the SiLU loop and a tail; 1 and 3 rows by the decode kernel, 9 by _int_mm.
  // 2 * 3001 rows: the decode threads' chunks (684 rows at 96 inputs) end inside the gate and inside the up half,
  // and one holds the end of the gate and the start of the up half
  const std::int64_t h = GENERATE(70, 3001);
  const QuantWeight w13 = quant::quantize_linear(at::randn({2 * h, 96}, gen(15)));
  for (std::int64_t n : {1, 3, 9}) {
    const QuantWeight xq = quant::quantize_rows(sample_rows(n, 96, 16));
    const QuantWeight ref = quant::quantize_silu_mul(quant::linear_int8(xq, w13, Isa::baseline), Isa::baseline);
    for (Isa isa : supported_isas()) {
      INFO("rows " << n << ", " << isa_name(isa));
      const QuantWeight got = quant::linear_int8_silu_mul(xq, w13, isa);
      CHECK(at::equal(got.q, ref.q));
      CHECK(at::equal(got.scale, ref.scale));
    }
  }
  CHECK_THROWS_WITH(quant::linear_int8_silu_mul(quant::quantize_rows(sample_rows(2, 96, 17)),
                                                quant::quantize_linear(at::randn({141, 96}, gen(18)))),
                    Catch::Contains("141 rows, not 2 * hidden"));
}

TEST_CASE("the int8 kernels write into given buffers what they return, and name buffers that do not fit",
          "[engine][quant]") {
  const QuantWeight w13 = quant::quantize_linear(at::randn({2 * 40, 96}, gen(21)));
  const at::Tensor x = sample_rows(2, 96, 22), norm_w = at::rand({96}, gen(23)) + 0.5;
  auto buffers = [](std::int64_t n, std::int64_t k) {  // stale codes and scales, as an earlier layer leaves them
    return QuantWeight{at::full({n, k}, 5, at::kChar), at::full({n}, 3.0f)};
  };
  const QuantWeight rq = buffers(2, 96), nq = buffers(2, 96), sq = buffers(2, 40);
  quant::quantize_rows(x, active_isa(), &rq);
  quant::quantize_rms_norm(x, norm_w, 1e-5, active_isa(), &nq);
  quant::linear_int8_silu_mul(nq, w13, active_isa(), &sq);
  at::Tensor y = at::full({2, 80}, 7.0f);
  quant::linear_int8(rq, w13, active_isa(), &y);
  const QuantWeight r = quant::quantize_rows(x), nr = quant::quantize_rms_norm(x, norm_w, 1e-5);
  const QuantWeight sr = quant::linear_int8_silu_mul(nr, w13);
  for (auto [got, want] : {std::pair{rq, r}, {nq, nr}, {sq, sr}}) {
    CHECK(at::equal(got.q, want.q));
    CHECK(at::equal(got.scale, want.scale));
  }
  CHECK(at::equal(y, quant::linear_int8(r, w13)));

  const QuantWeight narrow = buffers(2, 95), wrong_scale{at::empty({2, 96}, at::kChar), at::empty({3})};
  CHECK_THROWS_WITH(quant::quantize_rows(x, active_isa(), &narrow),
                    Catch::Contains("quantize_rows") && Catch::Contains("q [2, 95]") && Catch::Contains("[2, 96]"));
  CHECK_THROWS_WITH(quant::quantize_rms_norm(x, norm_w, 1e-5, active_isa(), &wrong_scale),
                    Catch::Contains("quantize_rms_norm") && Catch::Contains("scale [3]"));
  CHECK_THROWS_WITH(quant::linear_int8_silu_mul(nq, w13, active_isa(), &rq), Catch::Contains("[2, 40]"));
  const at::Tensor y_bad = at::empty({2, 80}, at::kDouble);
  CHECK_THROWS_WITH(quant::linear_int8(rq, w13, active_isa(), &y_bad),
                    Catch::Contains("linear_int8") && Catch::Contains("Double") && Catch::Contains("[2, 80]"));
}
