// Engine facade on stories260K with token ids: generation bookkeeping (window, truncation, interrupt) and
// continuation scoring against plain logits.
#include <cmath>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "../test_data.h"
#include "../tolerance.h"  // after ATen: its tensor overloads
#include "crossicl/core/error.h"
#include "crossicl/engine/engine.h"

using namespace crossicl;
namespace tol = crossicl::test::tol;

namespace {

std::string stories_bin() { return test::shared_path("models/stories260K/stories260K.bin"); }

}  // namespace

TEST_CASE("engine options parse their names and list the valid ones", "[engine]") {
  for (Truncation t : {Truncation::None, Truncation::Left, Truncation::Right})
    CHECK(truncation_from_name(truncation_name(t)) == t);
  for (Pooling p : {Pooling::Mean, Pooling::Last, Pooling::None}) CHECK(pooling_from_name(pooling_name(p)) == p);
  CHECK_THROWS_WITH(truncation_from_name("middle"), "truncation must be 'none', 'left' or 'right' (got 'middle')");
  CHECK_THROWS_WITH(pooling_from_name("max"), "pooling must be 'mean', 'last' or 'none' (got 'max')");
  CHECK_THROWS_AS(truncation_from_name("Left"), InvalidArgument);
  CHECK(dtype_name(at::kFloat) == "float32");
  CHECK(dtype_name(at::kBFloat16) == "bfloat16");
  CHECK(dtype_name(at::kHalf) == "float16");
  CHECK_THROWS_AS(dtype_name(at::kDouble), InvalidArgument);
}

TEST_CASE("generation stops at the context window and truncates prompts on request", "[engine][model]") {
  const std::string p = stories_bin();
  if (p.empty()) return;
  EngineOptions o;
  o.n_ctx = 16;
  Engine e(p, o);
  CHECK(e.tokenizer() == nullptr);
  CHECK(e.n_ctx() == 16);
  std::vector<std::int32_t> prompt = {1, 403, 407, 261, 378, 265, 282, 295, 433, 280};
  GenerateOptions g;
  g.max_new_tokens = 20;
  g.stop_at_eos = false;
  auto r = e.generate(std::vector<std::vector<std::int32_t>>{prompt}, g);
  REQUIRE(r.size() == 1);
  CHECK(r[0].finish_reason == "window");
  CHECK(r[0].token_ids.size() == 16 - 10 + 1);  // the last token is produced but not fed
  CHECK(r[0].text.empty());

  std::vector<std::int32_t> longp(20, 403);
  longp[0] = 1;
  longp[19] = 261;
  CHECK_THROWS_AS(e.generate(std::vector<std::vector<std::int32_t>>{longp}, g), InvalidArgument);
  g.max_new_tokens = 4;
  g.truncation = Truncation::Left;
  auto left = e.generate(std::vector<std::vector<std::int32_t>>{longp}, g);
  CHECK(left[0].truncated == 20 - 12);
  CHECK(left[0].token_ids.size() == 4);
  // left truncation keeps BOS + the newest 11 tokens: same as passing them directly
  std::vector<std::int32_t> kept = {1};
  kept.insert(kept.end(), longp.end() - 11, longp.end());
  g.truncation = Truncation::None;
  auto direct = e.generate(std::vector<std::vector<std::int32_t>>{kept}, g);
  CHECK(direct[0].token_ids == left[0].token_ids);
  g.max_new_tokens = -1;
  CHECK_THROWS_AS(e.generate(std::vector<std::vector<std::int32_t>>{prompt}, g), InvalidArgument);
}

TEST_CASE("score equals log-softmax of the full sequence's logits", "[engine][model]") {
  const std::string p = stories_bin();
  if (p.empty()) return;
  Engine e(p);
  const std::vector<std::int32_t> prompt = {1, 403, 407, 261, 378};
  const std::vector<std::vector<std::int32_t>> conts = {{265, 282}, {433}, {280, 294, 262}};
  auto res = e.score(prompt, conts);
  REQUIRE(res.size() == 3);
  for (std::size_t i = 0; i < conts.size(); ++i) {
    std::vector<std::int32_t> full = prompt;
    full.insert(full.end(), conts[i].begin(), conts[i].end());
    const at::Tensor logits = e.logits(full).to(at::kDouble);  // [n, vocab]
    at::Tensor lp = at::log_softmax(logits, -1);                // [n, vocab]
    // other batch shapes round differently: the float32 log-prob bound, its absolute term scaled by the logits
    const double rel = tol::model_rel(e.config(), static_cast<std::int64_t>(full.size()), tol::Output::LogProbs);
    const double scale = tol::max_abs(logits.narrow(0, static_cast<std::int64_t>(prompt.size() - 1),
                                                    static_cast<std::int64_t>(conts[i].size())));
    double sum = 0;
    for (std::size_t t = 0; t < conts[i].size(); ++t) {
      const double want = lp[static_cast<std::int64_t>(prompt.size() - 1 + t)][conts[i][t]].item<double>();
      CHECK(res[i].logprobs[t] == tol::approx(want, rel, scale));
      sum += want;
    }
    const double k = static_cast<double>(conts[i].size());
    CHECK(res[i].sum == tol::approx(sum, rel, k * scale));
    CHECK(res[i].mean == tol::approx(sum / k, rel, scale));
    // first = exp of the float log-prob in double: the same double exp
    CHECK(res[i].first == tol::approx(std::exp(static_cast<double>(res[i].logprobs[0])), tol::f64_rel(2)));
  }
  CHECK_THROWS_AS(e.score(prompt, {{265, 999}}), InvalidArgument);
  CHECK_THROWS_AS(e.score(std::vector<std::int32_t>{}, {{265}}), InvalidArgument);
}

TEST_CASE("should_stop aborts between forward passes with Interrupted", "[engine][model]") {
  const std::string p = stories_bin();
  if (p.empty()) return;
  int calls = 0;
  EngineOptions o;
  o.should_stop = [&calls] { return ++calls > 3; };
  Engine e(p, o);
  GenerateOptions g;
  g.max_new_tokens = 50;
  CHECK_THROWS_AS(e.generate(std::vector<std::vector<std::int32_t>>{{1, 403}}, g), Interrupted);
  CHECK(calls == 4);
  EngineOptions bad;
  bad.threads = -1;
  CHECK_THROWS_AS(Engine(p, bad), InvalidArgument);
}
