// Engine facade on stories260K with token ids: generation bookkeeping (window, truncation, interrupt, argument
// bounds), continuation scoring against plain logits, and calls from several threads.
#include <atomic>
#include <chrono>
#include <cmath>
#include <limits>
#include <thread>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
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
  // threads is capped by the CPUs this process may use (checked before torch's process-wide setting changes)
  const int cpus = Engine::available_cpus();
  CHECK(cpus >= 1);
  CHECK(cpus <= static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  const int before = at::get_num_threads();
  EngineOptions many;
  many.threads = 1000000;
  CHECK(Engine(p, many).threads() == cpus);
  CHECK(at::get_num_threads() == cpus);
  at::set_num_threads(before);
  bad.threads = 0;
  bad.n_ctx = std::int64_t{1} << 31;
  CHECK_THROWS_WITH(Engine(p, bad), "n_ctx must be in [0, 2^31-1] (n_ctx=2147483648)");
}

TEST_CASE("max_new_tokens of any size reserves at most n_ctx positions", "[engine][model]") {
  const std::string p = stories_bin();
  if (p.empty()) return;
  EngineOptions o;
  o.n_ctx = 24;
  Engine e(p, o);
  const std::vector<std::vector<std::int32_t>> prompts = {{1, 403, 407}, {1, 261}};
  GenerateOptions g;
  g.stop_at_eos = false;
  g.max_new_tokens = 100;
  const auto want = e.generate(prompts, g);
  // 10^12 asked for 1.3 TB of KV; 2^62 wrapped the arena's size; 2^63 - 1 overflowed prompt + max_new_tokens
  for (const std::int64_t m :
       {std::int64_t{1000000000000}, std::int64_t{1} << 62, std::numeric_limits<std::int64_t>::max()}) {
    g.max_new_tokens = m;
    const auto r = e.generate(prompts, g);
    REQUIRE(r.size() == 2);
    for (std::size_t i = 0; i < r.size(); ++i) {
      CHECK(r[i].finish_reason == "window");
      CHECK(r[i].token_ids.size() == 24 - prompts[i].size() + 1);
      CHECK(r[i].token_ids == want[i].token_ids);
    }
  }
  // truncation keeps room for max_new_tokens: none is left for the prompt
  g.truncation = Truncation::Left;
  g.max_new_tokens = 1000000000000;
  CHECK_THROWS_WITH(e.generate(prompts, g), "max_new_tokens must be < n_ctx with truncation 'left', which keeps room "
                                            "for them in the context window (max_new_tokens=1000000000000, n_ctx=24)");
  g.max_new_tokens = 23;  // room for one prompt token (BOS)
  CHECK(e.generate(prompts, g)[0].truncated == 2);
  // the arena's size is a checked product (5 layers x 2 x 4 kv heads x 8 head_dim = 320 values per position)
  Context ctx(e.model_ptr());
  CHECK_THROWS_WITH(ctx.reserve_arena(std::int64_t{1} << 62),
                    "reserve_arena: n * n_layers * 2 * n_kv_heads * head_dim overflows int64 (n=4611686018427387904, "
                    "n_layers=5, n_kv_heads=4, head_dim=8)");
  ctx.reserve_arena(16);
  ctx.clear();
}

TEST_CASE("calls from several threads are serialised and a waiting caller polls should_stop", "[engine][model]") {
  const std::string p = stories_bin();
  if (p.empty()) return;
  std::atomic<std::thread::id> stop_thread{};  // should_stop is true on this thread only
  std::atomic<bool> hold{false};               // on_forward keeps its call (and the lock) while this is set
  std::atomic<bool> running{false};
  EngineOptions o;
  o.n_ctx = 128;
  o.should_stop = [&] { return std::this_thread::get_id() == stop_thread.load(); };
  o.on_forward = [&](std::int64_t) {
    running = true;
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);  // no hang if broken
    while (hold && std::chrono::steady_clock::now() < give_up) std::this_thread::yield();
  };
  Engine e(p, o);
  GenerateOptions g;
  g.max_new_tokens = 1000;
  g.stop_at_eos = false;
  const std::vector<std::vector<std::int32_t>> prompt = {{1, 403, 407}};
  const auto want = e.generate(prompt, g);
  running = false;
  hold = true;
  std::vector<GenerateResult> got;
  std::thread worker([&] { got = e.generate(prompt, g); });
  while (!running) std::this_thread::yield();
  // the worker holds the lock until `hold` is cleared: this thread waits, polls should_stop and gives up
  stop_thread = std::this_thread::get_id();
  CHECK_THROWS_AS(e.cache_stats(), Interrupted);
  stop_thread = std::thread::id();
  hold = false;
  worker.join();
  REQUIRE(got.size() == 1);
  CHECK(got[0].token_ids == want[0].token_ids);
  CHECK(e.cache_stats().computed_tokens == 2 * 3);

  // a callback calling its own Engine gets an error, not a deadlock
  EngineOptions nested;
  Engine* self = nullptr;
  nested.on_forward = [&](std::int64_t) { self->cache_stats(); };
  Engine n(p, nested);
  self = &n;
  CHECK_THROWS_WITH(n.generate(prompt, g), "Engine called from inside one of its own calls (a should_stop or "
                                           "on_forward callback): calls cannot nest");
  CHECK_NOTHROW(n.cache_stats());  // the failed call let go of the lock
}
