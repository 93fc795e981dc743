// Forward pass: RoPE/RMSNorm values, the stories260K golden run (llama2.c run.c), KV-cache bookkeeping and
// batch independence.
#include <cmath>
#include <fstream>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "crossicl/core/error.h"
#include "crossicl/engine/context.h"
#include "crossicl/engine/model.h"
#include "detail/engine_ops.h"
#include "engine_test_util.h"
#include "../test_data.h"
#include "../tolerance.h"  // after ATen: its tensor overloads

using namespace crossicl;
namespace tol = crossicl::test::tol;

namespace {

std::vector<float> to_vec(const at::Tensor& t) {
  at::Tensor c = t.to(at::kFloat).contiguous().cpu();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

std::shared_ptr<const Model> stories() {
  const std::string p = test::shared_path("models/stories260K/stories260K.bin");
  if (p.empty()) return nullptr;
  return Model::load(p);
}

// Logits after feeding `ids` to a fresh sequence 0 (one batch).
at::Tensor last_logits(Context& ctx, const std::vector<std::int32_t>& ids, std::int32_t seq = 0) {
  Batch b;
  const std::int64_t p0 = ctx.seq_len(seq);
  for (std::size_t i = 0; i < ids.size(); ++i)
    b.add(ids[i], static_cast<std::int32_t>(p0 + i), seq, i + 1 == ids.size());
  return ctx.decode(b).logits[0];
}

// The token ids of the incremental-decoding tests and their logits from one full forward pass.
const std::vector<std::int32_t> kIds = {1, 403, 407, 261, 378, 265, 282, 295, 433, 280};

// Logits (and KV) of other batch shapes round differently: the float32 bound of stories260K over <= 16 tokens.
const double kLogitsRel = tol::model_rel(tol::kStories260K, 16, tol::Output::Logits);
const double kKvRel = tol::model_rel(tol::kStories260K, 16);
at::Tensor full_logits(const std::shared_ptr<const Model>& model) {
  Context full(model);
  Batch b;
  for (std::size_t i = 0; i < kIds.size(); ++i) b.add(kIds[i], static_cast<std::int32_t>(i), 0, true);
  return full.decode(b).logits;  // [10, vocab]
}

}  // namespace

TEST_CASE("RMSNorm matches hand-computed values", "[engine]") {
  at::Tensor x = at::tensor({1.f, 2.f, 3.f, 4.f});
  at::Tensor w = at::tensor({1.f, 1.f, 2.f, 2.f});
  auto y = to_vec(crossicl::detail::rms_norm(x, w, 0.0));
  const double r = 1 / std::sqrt(7.5);  // mean of squares = 30 / 4
  // float32: a sum of 4 squares, the mean, rsqrt (~2 ulp) and two products: gamma_(4 + 8)
  CHECK(tol::close(y, std::vector<double>{1 * r, 2 * r, 2 * 3 * r, 2 * 4 * r}, tol::f32_rel(4 + 8)));
}

TEST_CASE("RoPE pairs dim i with i + head_dim/2 (rotate_half)", "[engine]") {
  Config c;
  c.dim = 4, c.hidden_dim = 4, c.n_layers = 1, c.n_heads = 1, c.n_kv_heads = 1, c.vocab_size = 2;
  c.max_seq_len = 8, c.rope_theta = 10000.0;
  c.validate("test");
  auto inv = to_vec(crossicl::detail::rope_inv_freq(c));
  REQUIRE(inv.size() == 2);
  // float32 theta^(-i/hd): the exponent's rounding is amplified by ln(theta) = 9.2, pow and 1/x add ~2 ulp
  const double rel_inv = tol::f32_rel(std::log(10000.0) + 4);
  CHECK(inv[0] == tol::approx(1.0, rel_inv));
  CHECK(inv[1] == tol::approx(0.01, rel_inv));
  at::Tensor cos, sin;
  crossicl::detail::rope_cos_sin(at::tensor({3L}), crossicl::detail::rope_inv_freq(c), at::kFloat, cos, sin);
  at::Tensor x = at::tensor({1.f, 2.f, 3.f, 4.f}).view({1, 1, 4});
  auto y = to_vec(crossicl::detail::apply_rope(x, cos, sin));
  const double a = 3.0, b = 0.03;  // angles pos * inv_freq
  // inv_freq (above), the angle product, cos/sin (~2 ulp each), two products and a sum: gamma_(12 + 8)
  CHECK(tol::close(y, std::vector<double>{1 * std::cos(a) - 3 * std::sin(a), 2 * std::cos(b) - 4 * std::sin(b),
                                          3 * std::cos(a) + 1 * std::sin(a), 4 * std::cos(b) + 2 * std::sin(b)},
                   tol::f32_rel(std::log(10000.0) + 4 + 8)));
}

TEST_CASE("llama3 RoPE scaling keeps high, divides low and smooths medium frequencies", "[engine]") {
  Config c;
  c.dim = 6, c.hidden_dim = 4, c.n_layers = 1, c.n_heads = 1, c.n_kv_heads = 1, c.vocab_size = 2, c.max_seq_len = 8;
  // head_dim 6: inv_freq = theta^0, theta^-1/3, theta^-2/3; theta chosen so that the middle wavelength is 32.
  const double f1 = 2 * M_PI / 32;
  c.rope_theta = std::pow(1.0 / f1, 3.0);
  c.rope_scaling = {"llama3", 8.0, 1.0, 4.0, 64};  // low_freq_wavelen 64, high_freq_wavelen 16
  c.validate("test");
  auto inv = to_vec(crossicl::detail::rope_inv_freq(c));
  REQUIRE(inv.size() == 3);
  // float32 theta^(-i/hd) (ln(theta) = 4.9 amplifies the exponent's rounding), then ~8 operations of the scaling
  const double rel = tol::f32_rel(std::log(c.rope_theta) + 4 + 8);
  CHECK(inv[0] == tol::approx(1.0, rel));  // wavelength 6.3 < 16: unchanged
  const double smooth = (64.0 / 32.0 - 1.0) / (4.0 - 1.0);
  CHECK(inv[1] == tol::approx(((1 - smooth) / 8 + smooth) * f1, rel));  // medium: interpolated
  const double f2 = f1 * f1;  // wavelength 2*pi/f2 ~ 162 > 64: divided by the factor
  CHECK(inv[2] == tol::approx(f2 / 8, rel));
}

TEST_CASE("stories260K reproduces llama2.c run.c (logits to float32 rounding, 60 greedy ids)", "[engine][model]") {
  auto model = stories();
  if (!model) return;
  const Config& c = model->config();
  CHECK(c.dim == 64);
  CHECK(c.n_kv_heads == 4);
  CHECK(c.tie_word_embeddings);
  std::ifstream in(test::shared_path("models/stories260K/golden.json"));
  const auto golden = nlohmann::json::parse(in);
  REQUIRE(golden["cases"].size() == 4);
  Context ctx(model);
  std::int32_t seq = 0;
  for (const auto& cs : golden["cases"]) {
    INFO("prompt: " << cs["prompt"].get<std::string>());
    const auto ids = cs["prompt_ids"].get<std::vector<std::int32_t>>();
    const auto want = cs["last_logits"].get<std::vector<float>>();
    at::Tensor logits = last_logits(ctx, ids, seq);
    auto got = to_vec(logits);
    REQUIRE(got.size() == want.size());
    // run.c sums in its own order: both within the float32 bound of the logits
    CHECK(tol::close(got, want, tol::model_rel(c, static_cast<std::int64_t>(ids.size()), tol::Output::Logits)));

    std::vector<std::int32_t> greedy;
    std::int32_t next = static_cast<std::int32_t>(logits.argmax().item<std::int64_t>());
    for (int step = 0; step < 60; ++step) {
      greedy.push_back(next);
      if (step == 59) break;
      Batch b;
      b.add(next, static_cast<std::int32_t>(ctx.seq_len(seq)), seq, true);
      next = static_cast<std::int32_t>(ctx.decode(b).logits[0].argmax().item<std::int64_t>());
    }
    CHECK(greedy == cs["greedy_ids"].get<std::vector<std::int32_t>>());
    ++seq;
  }
}

TEST_CASE("prefill + decode equals one full forward, seq_cp reuses a prefix", "[engine][model]") {
  auto model = stories();
  if (!model) return;
  const std::vector<std::int32_t>& ids = kIds;
  at::Tensor all = full_logits(model);  // [10, vocab]
  REQUIRE(all.size(0) == 10);

  Context inc(model);
  last_logits(inc, {ids.begin(), ids.begin() + 4});
  CHECK(inc.seq_len(0) == 4);
  for (std::size_t i = 4; i < ids.size(); ++i) {
    Batch one;
    one.add(ids[i], static_cast<std::int32_t>(i), 0, true);
    CHECK(tol::close(inc.decode(one).logits[0], all[i], kLogitsRel));
  }
  CHECK(inc.seq_len(0) == 10);

  // A copy of the first 6 positions continues like the original did.
  inc.seq_cp(0, 7, 6);
  CHECK(inc.seq_len(7) == 6);
  Batch cont;
  cont.add(ids[6], 6, 7, true);
  cont.add(ids[7], 7, 7, true);
  at::Tensor lc = inc.decode(cont).logits;
  CHECK(tol::close(lc[0], all[6], kLogitsRel));
  CHECK(tol::close(lc[1], all[7], kLogitsRel));
  CHECK(inc.seq_len(0) == 10);  // the source is untouched

  // Reserved room survives seq_cp (no reallocation) and the reserved sequence computes the same numbers.
  inc.seq_reserve(8, 9);
  CHECK(inc.seq_len(8) == 0);
  inc.seq_cp(0, 8, 6);
  CHECK(inc.seq_len(8) == 6);
  at::Tensor before = inc.seq_kv(8, 0, 6);
  Batch res;
  for (std::int32_t p = 6; p < 9; ++p) res.add(ids[p], p, 8, true);
  at::Tensor lr = inc.decode(res).logits;
  for (std::int64_t i = 0; i < 3; ++i) CHECK(tol::close(lr[i], all[6 + i], kLogitsRel));
  CHECK(at::equal(inc.seq_kv(8, 0, 6), before));
  CHECK_THROWS_AS(inc.seq_reserve(9, -1), InvalidArgument);
  inc.seq_rm(8);

  // Dropping positions and recomputing gives the same numbers again.
  inc.seq_truncate(0, 3);
  CHECK(inc.seq_len(0) == 3);
  Batch again;
  again.add(ids[3], 3, 0, true);
  CHECK(tol::close(inc.decode(again).logits[0], all[3], kLogitsRel));
  inc.seq_rm(0);
  CHECK(inc.seq_len(0) == 0);
}

TEST_CASE("sequences in an arena compute what sequences with their own rooms do", "[engine][model]") {
  auto model = stories();
  if (!model) return;
  const std::vector<std::int32_t>& ids = kIds;
  const at::Tensor want = full_logits(model);  // [10, vocab]
  Context own(model);
  own.seq_append_kv(0, std::vector<at::Tensor>{});  // an empty list appends nothing
  CHECK(own.seq_len(0) == 0);
  last_logits(own, ids);

  Context ctx(model);
  ctx.reserve_arena(16);  // room for seqs 0 and 1 (6 + 6 positions); seq 2 (8) does not fit and gets its own
  ctx.seq_reserve(0, 6);
  ctx.seq_reserve(1, 6);
  ctx.seq_reserve(2, 8);
  Batch pre;
  for (std::int32_t s = 0; s < 3; ++s)
    for (std::int32_t p = 0; p < 4; ++p) pre.add(ids[p], p, s, false);
  ctx.decode(pre);
  ctx.seq_cp(0, 3, 4);  // a copy outside the reserved sequences
  for (std::int32_t s = 0; s < 4; ++s) {
    Batch step;
    // seq 0 grows past its 6 reserved positions (a new room, its 4 positions copied over)
    const std::int32_t end = s == 0 ? 10 : 6;
    for (std::int32_t p = 4; p < end; ++p) step.add(ids[p], p, s, true);
    const at::Tensor got = ctx.decode(step).logits;  // [end - 4, vocab]
    for (std::int32_t p = 4; p < end; ++p) CHECK(tol::close(got[p - 4], want[p], kLogitsRel));
  }
  // neighbours in the arena do not overwrite each other
  CHECK(at::equal(ctx.seq_kv(1, 0, 6), ctx.seq_kv(3, 0, 6)));
  CHECK(tol::close(ctx.seq_kv(1, 0, 6), own.seq_kv(0, 0, 6), kKvRel));
  CHECK_THROWS_AS(ctx.reserve_arena(-1), InvalidArgument);
  ctx.clear();
  CHECK(ctx.seq_len(1) == 0);
}

TEST_CASE("results do not depend on the rest of the batch", "[engine][model]") {
  auto model = stories();
  if (!model) return;
  const std::vector<std::int32_t> a = {1, 403, 407, 261, 378}, bb = {1, 291, 280, 294, 262, 294, 353, 265, 284};
  Context alone(model);
  at::Tensor la = last_logits(alone, a, 0);
  at::Tensor lb = last_logits(alone, bb, 1);
  Context mixed(model);
  Batch b;  // interleaved entries of two sequences of different lengths
  for (std::size_t i = 0; i < bb.size(); ++i) {
    if (i < a.size()) b.add(a[i], static_cast<std::int32_t>(i), 5, i + 1 == a.size());
    b.add(bb[i], static_cast<std::int32_t>(i), 9, i + 1 == bb.size());
  }
  DecodeOptions opts;
  opts.hidden_layers = {0, 5};
  DecodeOutput out = mixed.decode(b, opts);
  REQUIRE(out.logits.size(0) == 2);
  CHECK(tol::close(out.logits[0], la, kLogitsRel));
  CHECK(tol::close(out.logits[1], lb, kLogitsRel));
  REQUIRE(out.hidden.size() == 2);
  CHECK(out.hidden[0].size(0) == 2);
  CHECK(out.hidden[1].size(1) == 64);

  // Decoding the two sequences together, one token each, matches decoding them one at a time.
  Batch step;
  step.add(265, 5, 5, true);
  step.add(265, 9, 9, true);
  at::Tensor ls = mixed.decode(step).logits;
  Batch sa, sb;
  sa.add(265, 5, 0, true);
  sb.add(265, 9, 1, true);
  CHECK(tol::close(ls[0], alone.decode(sa).logits[0], kLogitsRel));
  CHECK(tol::close(ls[1], alone.decode(sb).logits[0], kLogitsRel));
}

TEST_CASE("decode rejects bad batches without touching the cache", "[engine][model]") {
  auto model = stories();
  if (!model) return;
  Context ctx(model, {16});
  Batch b;
  b.add(600, 0, 0, true);
  CHECK_THROWS_AS(ctx.decode(b), InvalidArgument);  // id out of range
  b.clear();
  b.add(1, 1, 0, true);
  CHECK_THROWS_AS(ctx.decode(b), InvalidArgument);  // does not start at 0
  CHECK(ctx.seq_len(0) == 0);
  b.clear();
  for (int i = 0; i < 17; ++i) b.add(1, i, 0, false);
  CHECK_THROWS_AS(ctx.decode(b), InvalidArgument);  // past n_ctx
  b.clear();
  b.add(1, 0, 0, true);
  DecodeOptions bad;
  bad.hidden_layers = {6};
  CHECK_THROWS_AS(ctx.decode(b, bad), InvalidArgument);
  CHECK_THROWS_AS(ctx.seq_cp(0, 1, 3), InvalidArgument);
}

TEST_CASE("bfloat16 stays close to float32", "[engine][model]") {
  const std::string p = test::shared_path("models/stories260K/stories260K.bin");
  if (p.empty()) return;
  auto f32 = Model::load(p);
  auto bf16 = Model::load(p, {at::kBFloat16, "cpu"});
  CHECK(bf16->dtype() == at::kBFloat16);
  Context c32(f32), c16(bf16);
  const std::vector<std::int32_t> ids = {1, 403, 407, 261, 378};
  at::Tensor a = last_logits(c32, ids), b = last_logits(c16, ids);
  CHECK(tol::close(b, a, tol::bf16_rel(f32->config())));  // one 2^-8 per bfloat16 rounding point
  CHECK(a.argmax().item<std::int64_t>() == b.argmax().item<std::int64_t>());
  CHECK_THROWS_AS(Model::load(p, {at::kDouble, "cpu"}), InvalidArgument);
  if (!at::hasCUDA()) CHECK_THROWS_WITH(Model::load(p, {at::kFloat, "cuda"}), Catch::Contains("cuda"));
}

TEST_CASE("a hand-written HF directory loads and runs", "[engine]") {
  test::TempDir dir("eng_model");
  test::write_tiny_hf(dir.str(), test::tiny_tensors());
  auto model = Model::load(dir.str());
  CHECK(model->config().head_dim == 4);
  CHECK(model->weights().output.is_same(model->weights().tok_embeddings));
  Context ctx(model);
  at::Tensor l = last_logits(ctx, {1, 2, 3});
  CHECK(l.size(0) == 10);
  CHECK(at::isfinite(l).all().item<bool>());
}
