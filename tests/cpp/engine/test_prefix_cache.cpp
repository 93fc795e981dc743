// The prefix cache (trie of token blocks, LRU eviction within a byte bound) and the Engine's promise that
// results do not depend on batching or caching: stories260K generations, scores and hidden states with 1, 8 or
// 32 prompts per forward pass, cache off / cold / warm.
#include <cmath>
#include <random>

#include <ATen/ATen.h>
#include <catch2/catch.hpp>

#include "../test_data.h"
#include "../tolerance.h"  // after ATen: its tensor overloads
#include "crossicl/core/error.h"
#include "crossicl/engine/engine.h"
#include "crossicl/engine/prefix_cache.h"

using namespace crossicl;
namespace tol = crossicl::test::tol;

namespace {

std::string stories_bin() { return test::shared_path("models/stories260K/stories260K.bin"); }

// Float32 products of other shapes (batching, cached vs computed prefixes) round differently: token ids are equal,
// numbers agree within the float32 bound of stories260K over the <= 96 tokens of these sequences (tolerance.h).
constexpr std::int64_t kMaxTokens = 96;
const double kLogProbRel = tol::model_rel(tol::kStories260K, kMaxTokens, tol::Output::LogProbs);
const double kLogitsRel = tol::model_rel(tol::kStories260K, kMaxTokens, tol::Output::Logits);
const double kHiddenRel = tol::model_rel(tol::kStories260K, kMaxTokens);

// KV of a block: its begin position in every element, so a test can tell which block it got.
void block_kv(std::int64_t begin, const at::Tensor& out) { out.fill_(static_cast<double>(begin)); }

// 32 prompts over 4 shared prefixes (two of them sharing 20 tokens), suffixes of 3..40 tokens.
std::vector<std::vector<std::int32_t>> shared_prefix_prompts() {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> tok(3, 511), len(3, 40);
  std::vector<std::vector<std::int32_t>> prefixes(4);
  for (int k = 0; k < 4; ++k) {
    prefixes[k].push_back(1);
    for (int t = 0; t < 44; ++t) prefixes[k].push_back(tok(rng));
  }
  for (int t = 1; t < 20; ++t) prefixes[1][t] = prefixes[0][t];
  std::vector<std::vector<std::int32_t>> prompts;
  for (int i = 0; i < 32; ++i) {
    std::vector<std::int32_t> p = prefixes[i % 4];
    const int n = len(rng);
    for (int t = 0; t < n; ++t) p.push_back(tok(rng));
    prompts.push_back(p);
  }
  return prompts;
}

// Log-probs of a whole call compared at once: a log-prob's error scales with the logits, not with its own size, so
// the absolute term scales with the largest |log-prob| of the call.
void check_same(const std::vector<GenerateResult>& a, const std::vector<GenerateResult>& b) {
  REQUIRE(a.size() == b.size());
  std::vector<float> la, lb;
  for (std::size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i].token_ids == b[i].token_ids);
    REQUIRE(a[i].logprobs.size() == b[i].logprobs.size());
    la.insert(la.end(), a[i].logprobs.begin(), a[i].logprobs.end());
    lb.insert(lb.end(), b[i].logprobs.begin(), b[i].logprobs.end());
  }
  CHECK(tol::close(la, lb, kLogProbRel));
}

void check_same(const std::vector<std::vector<ScoreResult>>& a, const std::vector<std::vector<ScoreResult>>& b) {
  REQUIRE(a.size() == b.size());
  std::vector<float> la, lb;
  for (std::size_t i = 0; i < a.size(); ++i) {
    REQUIRE(a[i].size() == b[i].size());
    for (std::size_t j = 0; j < a[i].size(); ++j) {
      CHECK(a[i][j].token_ids == b[i][j].token_ids);
      REQUIRE(a[i][j].logprobs.size() == b[i][j].logprobs.size());
      la.insert(la.end(), a[i][j].logprobs.begin(), a[i][j].logprobs.end());
      lb.insert(lb.end(), b[i][j].logprobs.begin(), b[i][j].logprobs.end());
    }
  }
  CHECK(tol::close(la, lb, kLogProbRel));
}

}  // namespace

TEST_CASE("prefix cache matches whole blocks and evicts least recently used leaves", "[engine][cache]") {
  CHECK_THROWS_AS(PrefixCache(0, 4, {4}), InvalidArgument);
  CHECK_THROWS_AS(PrefixCache(100, 0, {4}), InvalidArgument);
  CHECK_THROWS_AS(PrefixCache(100, 4, {4, 0}), InvalidArgument);
  const std::int64_t block_bytes = 4 * sizeof(float);
  PrefixCache cache(3 * block_bytes, 4, {4}, at::kFloat);  // room for 3 blocks
  const std::vector<std::int32_t> a = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  CHECK(cache.peek(a, 10) == 0);
  CHECK(cache.insert(a, 10, block_kv) == 2);  // blocks [0,4) and [4,8); the partial block is not cached
  CHECK(cache.blocks() == 2);
  CHECK(cache.bytes() == 2 * block_bytes);
  CHECK(cache.peek(a, 10) == 8);
  CHECK(cache.peek(a, 7) == 4);  // at most 7 tokens: one block
  std::vector<at::Tensor> got;
  CHECK(cache.match(a, 100, &got) == 8);
  REQUIRE(got.size() == 2);
  CHECK(got[1][0].item<float>() == 4.f);
  // a prompt diverging inside the second block shares only the first
  const std::vector<std::int32_t> b = {1, 2, 3, 4, 5, 6, 0, 8, 9, 10, 11, 12};
  CHECK(cache.peek(b, 12) == 4);
  CHECK(cache.insert(b, 12, block_kv) == 2);  // [4,8) of b, then [8,12) evicts the oldest leaf (a's [4,8))
  CHECK(cache.blocks() == 3);
  CHECK(cache.evictions() == 1);
  CHECK(cache.bytes() <= 3 * block_bytes);
  CHECK(cache.peek(a, 10) == 4);
  CHECK(cache.peek(b, 12) == 12);
  // using b's first block keeps it; a new branch evicts b's leaf, never an inner block
  const std::vector<std::int32_t> c = {9, 9, 9, 9};
  CHECK(cache.insert(c, 4, [](std::int64_t begin, const at::Tensor& out) { out.fill_(100. + begin); }) == 1);
  CHECK(cache.peek(b, 12) == 8);
  CHECK(cache.peek(c, 4) == 4);
  // c's block went into the slot b's evicted leaf left: every block still reads its own rows
  got.clear();
  CHECK(cache.match(b, 12, &got) == 8);
  CHECK(cache.match(c, 4, &got) == 4);
  REQUIRE(got.size() == 3);
  CHECK(got[0][0].item<float>() == 0.f);
  CHECK(got[1][0].item<float>() == 4.f);
  CHECK(got[2][0].item<float>() == 100.f);
  // a block whose fill throws is not kept; the blocks before it are
  const std::vector<std::int32_t> d = {7, 7, 7, 7, 8, 8, 8, 8};
  CHECK_THROWS_AS(cache.insert(d, 8,
                               [](std::int64_t begin, const at::Tensor& out) {
                                 if (begin > 0) throw InvalidArgument("no rows");
                                 out.fill_(7.);
                               }),
                  InvalidArgument);
  CHECK(cache.peek(d, 8) == 4);
  CHECK(cache.bytes() <= 3 * block_bytes);
  cache.clear();
  CHECK(cache.blocks() == 0);
  CHECK(cache.bytes() == 0);
  CHECK(cache.peek(b, 12) == 0);
  PrefixCache tiny(block_bytes - 1, 4, {4}, at::kFloat);  // a block alone does not fit
  CHECK(tiny.insert(a, 10, block_kv) == 0);
  CHECK(tiny.blocks() == 0);
}

TEST_CASE("Context copies KV rows out of and into sequences", "[engine][cache][model]") {
  const std::string p = stories_bin();
  if (p.empty()) return;
  auto model = Model::load(p);
  Context ctx(model);
  Batch b;
  const std::vector<std::int32_t> ids = {1, 403, 407, 261, 378, 265};
  for (std::size_t i = 0; i < ids.size(); ++i) b.add(ids[i], static_cast<std::int32_t>(i), 0, i + 1 == ids.size());
  at::Tensor want = ctx.decode(b).logits;  // [1, vocab]
  at::Tensor kv = ctx.seq_kv(0, 0, 4);      // [n_layers, 2, n_kv_heads, 4, head_dim]
  CHECK(kv.sizes() == at::IntArrayRef({5, 2, 4, 4, 8}));
  ctx.seq_append_kv(1, kv);
  CHECK(ctx.seq_len(1) == 4);
  Batch rest;
  rest.add(ids[4], 4, 1, false);
  rest.add(ids[5], 5, 1, true);
  at::Tensor got = ctx.decode(rest).logits;
  CHECK(tol::close(got, want, kLogitsRel));
  // the same rows appended as blocks (one of them non-contiguous, one in double), or read into a given tensor
  at::Tensor t = at::empty({5, 2, 4, 8, 3}).transpose(3, 4);  // [5, 2, 4, 3, 8], not contiguous
  ctx.seq_kv_into(0, 1, t);
  ctx.seq_append_kv(2, {kv.narrow(3, 0, 1), t});
  CHECK(ctx.seq_len(2) == 4);
  CHECK(at::equal(ctx.seq_kv(2, 0, 4), kv));
  ctx.seq_append_kv(3, {kv.narrow(3, 0, 2).to(at::kDouble), kv.narrow(3, 2, 2)});
  CHECK(at::equal(ctx.seq_kv(3, 0, 4), kv));
  CHECK_THROWS_AS(ctx.seq_kv(0, 4, 3), InvalidArgument);
  CHECK_THROWS_AS(ctx.seq_kv_into(0, 4, at::empty({5, 2, 4, 3, 8})), InvalidArgument);
  CHECK_THROWS_AS(ctx.seq_kv_into(0, 0, at::empty({5, 2, 4, 3, 7})), InvalidArgument);
  CHECK_THROWS_AS(ctx.seq_append_kv(2, at::zeros({5, 2, 4, 3, 7})), InvalidArgument);
  // a bad block among good ones: nothing is appended
  CHECK_THROWS_AS(ctx.seq_append_kv(2, {kv, at::zeros({5, 2, 4, 3, 7})}), InvalidArgument);
  CHECK(ctx.seq_len(2) == 4);
}

TEST_CASE("generate, score and hidden states do not depend on batching or the prefix cache",
          "[engine][cache][model][slow]") {
  const std::string p = stories_bin();
  if (p.empty()) return;
  const auto prompts = shared_prefix_prompts();
  std::int64_t total = 0;
  for (const auto& q : prompts) total += static_cast<std::int64_t>(q.size());
  const std::int64_t per_prompt = total / static_cast<std::int64_t>(prompts.size());
  GenerateOptions g;
  g.max_new_tokens = 6;
  g.stop_at_eos = false;
  std::vector<std::vector<std::vector<std::int32_t>>> conts(prompts.size());
  for (std::size_t i = 0; i < prompts.size(); ++i)
    conts[i] = {{265}, {282, 295}, {static_cast<std::int32_t>(300 + i), 433, 280}};
  HiddenStatesOptions last;
  last.layers = {0, 2, -1};
  last.pooling = Pooling::Last;
  HiddenStatesOptions mean = last;
  mean.pooling = Pooling::Mean;
  mean.begin = 20;

  EngineOptions off;
  off.cache_bytes = 0;
  off.max_batch_tokens = per_prompt;  // about one prompt per forward pass
  Engine ref(p, off);
  const auto want = ref.generate(prompts, g);
  const auto want_scores = ref.score_batch(prompts, conts);
  const auto want_last = ref.hidden_states(prompts, last);
  const auto want_mean = ref.hidden_states(prompts, mean);
  const CacheStats ref_stats = ref.cache_stats();
  CHECK(ref_stats.hit_tokens == 0);
  CHECK(ref_stats.blocks == 0);
  CHECK(ref_stats.computed_tokens > 3 * total);
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    // score_batch == score == log-softmax of the full sequence
    const auto one = ref.score(prompts[i], conts[i]);
    check_same({one}, {want_scores[i]});
  }

  for (std::int64_t per_pass : {1, 8, 32}) {
    for (std::int64_t cache_bytes : {std::int64_t{0}, std::int64_t{64} << 20}) {
      INFO("prompts per pass " << per_pass << ", cache_bytes " << cache_bytes);
      EngineOptions o;
      o.max_batch_tokens = per_pass * per_prompt;
      o.cache_bytes = cache_bytes;
      Engine e(p, o);
      for (int round = 0; round < 2; ++round) {  // cold, then warm
        INFO("round " << round);
        check_same(e.generate(prompts, g), want);
        check_same(e.score_batch(prompts, conts), want_scores);
        const auto hl = e.hidden_states(prompts, last);
        const auto hm = e.hidden_states(prompts, mean);
        for (std::size_t i = 0; i < prompts.size(); ++i) {
          CHECK(tol::close(hl[i], want_last[i], kHiddenRel));
          CHECK(tol::close(hm[i], want_mean[i], kHiddenRel + tol::gamma(kMaxTokens)));  // + the mean's sum
        }
      }
      const CacheStats s = e.cache_stats();
      if (cache_bytes == 0) {
        CHECK(s.hit_tokens == 0);
        CHECK(s.computed_tokens == 2 * ref_stats.computed_tokens);
      } else {
        // the 4 prefixes (45 tokens = 2 full blocks of 16) are computed once in the cold round
        CHECK(s.hit_tokens > 0);
        CHECK(s.computed_tokens < ref_stats.computed_tokens);
        CHECK(s.blocks > 0);
        CHECK(s.cached_bytes > 0);
        CHECK(s.cached_bytes <= cache_bytes);
        CHECK(s.block_tokens == Engine::kCacheBlockTokens);
      }
    }
  }
}

TEST_CASE("a prefix shared within one generate call is computed once; eviction keeps the bound",
          "[engine][cache][model]") {
  const std::string p = stories_bin();
  if (p.empty()) return;
  std::vector<std::int32_t> prefix(64, 0);
  for (std::size_t t = 0; t < prefix.size(); ++t) prefix[t] = static_cast<std::int32_t>(t == 0 ? 1 : 300 + t);
  std::vector<std::vector<std::int32_t>> prompts;
  for (int i = 0; i < 5; ++i) {
    auto q = prefix;
    q.push_back(400 + i);
    q.push_back(410 + i);
    prompts.push_back(q);
  }
  GenerateOptions g;
  g.max_new_tokens = 1;
  EngineOptions o;
  Engine e(p, o);
  e.generate(prompts, g);
  CacheStats s = e.cache_stats();
  CHECK(s.hit_tokens == 4 * 64);                   // four prompts reuse the first one's 4 blocks
  CHECK(s.computed_tokens == 66 + 4 * 2);
  CHECK(s.blocks == 4);                            // the 66-token prompts end in a partial block
  e.clear_cache();
  s = e.cache_stats();
  CHECK(s.blocks == 0);
  CHECK(s.hit_tokens == 0);
  CHECK(s.computed_tokens == 0);

  // a cache of 3 blocks: it never holds more, and results match the uncached engine
  const std::int64_t block_bytes = 5 * 2 * 4 * Engine::kCacheBlockTokens * 8 * 4;  // stories260K, float32
  EngineOptions small;
  small.cache_bytes = 3 * block_bytes;
  Engine f(p, small);
  EngineOptions none;
  none.cache_bytes = 0;
  Engine ref(p, none);
  const auto want = ref.generate(prompts, g);
  check_same(f.generate(prompts, g), want);
  s = f.cache_stats();
  CHECK(s.blocks <= 3);
  CHECK(s.cached_bytes <= 3 * block_bytes);
  CHECK(s.evictions > 0);
  EngineOptions bad;
  bad.cache_bytes = -1;
  CHECK_THROWS_AS(Engine(p, bad), InvalidArgument);
}
