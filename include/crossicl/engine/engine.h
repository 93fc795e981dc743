// The convenient facade over Model + Context + Tokenizer: callers pass lists of prompts and get generations,
// continuation scores, hidden states or logits. The Engine owns batching (prompts of different lengths are
// packed into one forward pass without padding), the KV cache and caching policy (a scored prompt is computed
// once and its cache reused by every candidate continuation; a prefix cache (prefix_cache.h) keeps the KV of
// prompt prefixes in blocks of Engine::kCacheBlockTokens tokens across calls, so a shared prefix is computed once).
// Results do not depend on batching or caching beyond float rounding (different matmul shapes).
//
// Prompts are text (tokenized with BOS, as HF and llama2.c do) or token ids (used as given).
//
// Threads: every method may be called from any thread while another call is in flight; the calls that run the
// model or touch the KV or prefix cache (generate, score, score_batch, hidden_states, logits, cache_stats,
// clear_cache) are serialised by one lock, so they run one at a time in the order the lock grants, and each
// gives the result it would give alone (up to the float rounding of a prefix the prefix cache holds or not, as
// above). config, model, tokenizer, n_ctx, encode and resolve_layers take no lock (they
// read immutable state; the Tokenizer is thread-safe). A caller waiting for the lock polls
// EngineOptions::should_stop every kPollWait, as the running call does between forward passes, so an interrupt
// (Ctrl-C in Python) reaches it too. The callbacks run inside a call, on its thread, with the lock held: calling
// the same Engine from them throws InvalidArgument instead of deadlocking. Distinct Engines are independent,
// except that EngineOptions::threads sets torch's process-wide intra-op thread count.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include "crossicl/engine/config.h"
#include "crossicl/engine/context.h"
#include "crossicl/engine/model.h"
#include "crossicl/engine/prefix_cache.h"
#include "crossicl/engine/tokenizer.h"

namespace crossicl {

/// Thrown when EngineOptions::should_stop asked to abort (e.g. Ctrl-C in Python).
class Interrupted : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// What to do with a prompt longer than the room the context window leaves for it.
enum class Truncation {
  None,   // InvalidArgument naming the prompt ("none")
  Left,   // drop the oldest tokens, keeping BOS in front ("left")
  Right,  // drop the newest tokens ("right")
};

/// Parses "none", "left" or "right". Throws InvalidArgument naming the unknown name and the valid ones.
///
///   auto t = crossicl::truncation_from_name("left");  // Truncation::Left
Truncation truncation_from_name(std::string_view name);
/// The name of a truncation mode ("none", "left", "right").
std::string_view truncation_name(Truncation truncation);

/// How Engine::hidden_states reduces the positions of a prompt.
enum class Pooling {
  Mean,  // mean over the tokens [begin, end) ("mean")
  Last,  // the last token ("last")
  None,  // every position ("none")
};

/// Parses "mean", "last" or "none". Throws InvalidArgument naming the unknown name and the valid ones.
Pooling pooling_from_name(std::string_view name);
/// The name of a pooling ("mean", "last", "none").
std::string_view pooling_name(Pooling pooling);

/// How to open an Engine.
struct EngineOptions {
  std::string tokenizer;            // tokenizer file; "" = tokenizer.model/tokenizer.json of an HF dir or the
                                    // vocabulary of a GGUF file; none for a llama2.c .bin
  c10::ScalarType dtype = c10::ScalarType::Float;  // at::kFloat or at::kBFloat16 (at::kHalf on cuda)
  std::string device = "cpu";       // "cpu" or "cuda[:i]"; InvalidArgument naming it when unavailable
  Quantize quantize = Quantize::None;  // Int8: W8A8 Linear layers (model.h; float32 on the cpu only, else
                                       // InvalidArgument)
  std::vector<std::string> calibration;  // Int8: texts run once at load to calibrate smoothing (model.h,
                                         // Int8Options); empty = crossicl's built-in calibration texts
                                         // (fixed token ids when the engine has no tokenizer)
  double smooth_alpha = 0.5;             // Int8: SmoothQuant strength in [0, 1] (0 = no smoothing)
  std::vector<std::string> keep_float;   // Int8: Linear layers left in float32 ("qkv", "o", "gate_up", "down",
                                         // "head"; model.h, Int8Options)
  int threads = 0;                  // torch intra-op threads (0 = torch default); capped at the CPUs this
                                    // process may run on (available_cpus(); Engine::threads() tells the count
                                    // used). Set at construction through at::set_num_threads, which is
                                    // process-wide: it applies to every Engine and to the caller's own torch
                                    // work, and the last Engine built wins
  std::int64_t n_ctx = 0;           // context window in tokens (0 = the model's max_seq_len; <= 2^31-1)
  std::int64_t max_batch_tokens = 1024;  // most tokens per forward pass when packing prompts (> 0)
  std::int64_t cache_bytes = std::int64_t{256} << 20;  // bytes of KV kept for cached prompt prefixes (LRU);
                                                       // 0 = prefix cache off (>= 0)
  std::function<bool()> should_stop;     // polled between forward passes, and every Engine::kPollWait while a
                                         // call waits for another call to finish; true throws Interrupted
                                         // (empty = never). Called on the calling thread, from several threads
                                         // at once when several wait: it must be thread-safe
  std::function<void(std::int64_t)> on_forward;  // progress: called after each forward pass with the number of
                                                 // tokens it ran (prefill chunk or decode step; empty = none), on
                                                 // the calling thread with the Engine's lock held
};

/// Options of Engine::generate (greedy decoding).
struct GenerateOptions {
  std::int64_t max_new_tokens = 10;      // tokens to generate at most (>= 0; any size: a sequence stops with
                                         // finish_reason "window" when the context is full, and KV is reserved
                                         // for at most n_ctx positions per prompt). With truncation Left/Right
                                         // it must be < n_ctx (it is the room kept for generation):
                                         // InvalidArgument naming both otherwise
  std::vector<std::string> stop = {"\n"};  // stop when the decoded continuation contains one; text is cut there
                                          // (needs a tokenizer; ignored without one)
  bool stop_at_eos = true;                // stop after generating EOS (EOS is kept in token_ids, not in text)
  Truncation truncation = Truncation::None;  // prompt longer than n_ctx - max_new_tokens: None = InvalidArgument
                                             // if it exceeds n_ctx, Left = drop the oldest tokens (BOS kept),
                                             // Right = drop the newest tokens
};

/// One generation.
struct GenerateResult {
  std::string text;                     // decoded continuation, cut before a stop string ("" without tokenizer)
  std::vector<std::int32_t> token_ids;  // generated ids (including the EOS or the token completing a stop string)
  std::vector<float> logprobs;          // natural-log probability of each generated id
  std::int64_t truncated = 0;           // prompt tokens dropped by truncation (0 = none)
  std::string finish_reason;            // "length", "stop", "eos" or "window" (context full)
};

/// Options of Engine::score.
struct ScoreOptions {
  Truncation truncation = Truncation::None;  // prompt + longest continuation over n_ctx: None = InvalidArgument,
                                             // Left/Right = drop prompt tokens as in GenerateOptions
};

/// Log-probability of one continuation given the prompt.
struct ScoreResult {
  double sum = 0;                       // sum of the continuation tokens' log-probs (natural log)
  double mean = 0;                      // sum / number of continuation tokens
  double first = 0;                     // probability (not log) of the continuation's first token
  double first_logprob = 0;             // log of `first`
  std::vector<std::int32_t> token_ids;  // the continuation's tokens that were scored
  std::vector<float> logprobs;          // log-prob of each of them
  bool greedy = false;                  // every scored token is the argmax of its position's logits (ties: the
                                        // lowest id, as at::argmax): greedy decoding would produce it
  std::int64_t truncated = 0;           // prompt tokens dropped by truncation
};

/// Options of Engine::hidden_states.
struct HiddenStatesOptions {
  std::vector<int> layers = {-1};            // 0 = embeddings, i = output of block i, n_layers = final-norm
                                             // output; i < 0 counts from the end (-1 = n_layers); InvalidArgument
                                             // outside [-(n_layers + 1), n_layers]
  Pooling pooling = Pooling::Mean;           // Mean over [begin, end), Last token, None (every position)
  std::int64_t begin = 0;                    // first token of the mean span (index into the prompt's tokens, BOS = 0)
  std::int64_t end = -1;                     // one past the last token of the span (-1 = the end of the prompt)
  Truncation truncation = Truncation::None;  // prompt over n_ctx: None = InvalidArgument, Left/Right drop tokens
};

/// Generation, scoring and hidden states over a LLaMA-family model.
///
///   crossicl::EngineOptions o;
///   o.tokenizer = "tok512.model";
///   crossicl::Engine engine("stories260K.bin", o);
///   auto out = engine.generate({"Once upon a time"}, {});   // out[0].text, out[0].token_ids
///   auto s = engine.score("Q: 2+2? A:", {" 4", " 5"});      // s[i].sum, s[i].mean, s[i].first
class Engine {
 public:
  /// Tokens per prefix-cache block: prefixes are reused in multiples of this many tokens.
  static constexpr std::int64_t kCacheBlockTokens = 16;
  /// How often a call waiting for another call to finish polls EngineOptions::should_stop.
  static constexpr std::chrono::milliseconds kPollWait{20};

  /// Loads `path` (HF directory, GGUF file or llama2.c .bin) and the tokenizer. Throws LoadError / InvalidArgument.
  explicit Engine(const std::string& path, EngineOptions options = {});

  /// The CPUs this process may run on: the size of its sched_getaffinity mask (Linux), else
  /// std::thread::hardware_concurrency(); at least 1. The cap on EngineOptions::threads.
  static int available_cpus();

  const Config& config() const { return model_->config(); }
  const Model& model() const { return *model_; }
  std::shared_ptr<const Model> model_ptr() const { return model_; }
  /// The tokenizer, or null when the engine was opened without one (token-id input only).
  const std::shared_ptr<Tokenizer>& tokenizer() const { return tokenizer_; }
  /// Context window in tokens.
  std::int64_t n_ctx() const { return n_ctx_; }
  /// The intra-op threads this Engine set: EngineOptions::threads capped at available_cpus() (0 = torch default).
  int threads() const { return options_.threads; }

  /// Token ids of a prompt: BOS + encode(text). Throws InvalidArgument without a tokenizer, for an empty
  /// prompt or for text that is not UTF-8.
  std::vector<std::int32_t> encode(const std::string& prompt) const;

  /// Greedy continuation of every prompt; prompts are prefilled together (packed, no padding).
  std::vector<GenerateResult> generate(const std::vector<std::string>& prompts, const GenerateOptions& options = {});
  std::vector<GenerateResult> generate(const std::vector<std::vector<std::int32_t>>& prompts,
                                       const GenerateOptions& options = {});

  /// Scores each continuation after `prompt`. The prompt is computed once and its KV cache copied for every
  /// candidate. Boundary rule: prompt + continuation is tokenized jointly; the scored tokens are those after
  /// the longest common prefix of the joint ids and the prompt's ids (normally exactly the prompt's ids; when
  /// the tokenizer merges across the boundary, the merged token is scored as part of the continuation).
  std::vector<ScoreResult> score(const std::string& prompt, const std::vector<std::string>& continuations,
                                 const ScoreOptions& options = {});
  /// Token-id version: the continuation ids are scored exactly as given after the prompt ids.
  std::vector<ScoreResult> score(const std::vector<std::int32_t>& prompt,
                                 const std::vector<std::vector<std::int32_t>>& continuations,
                                 const ScoreOptions& options = {});

  /// score() for many prompts at once: continuations[i] are scored after prompts[i] (same boundary rule and
  /// truncation). Prompts and candidates are packed into forward passes; each prompt is computed once for all
  /// of its candidates, and prefixes shared between prompts come from the prefix cache.
  ///
  ///   auto r = engine.score_batch({"2+2=", "3+3="}, {{" 4", " 5"}, {" 6", " 7"}});  // r[1][0].sum
  std::vector<std::vector<ScoreResult>> score_batch(const std::vector<std::string>& prompts,
                                                    const std::vector<std::vector<std::string>>& continuations,
                                                    const ScoreOptions& options = {});
  std::vector<std::vector<ScoreResult>> score_batch(
      const std::vector<std::vector<std::int32_t>>& prompts,
      const std::vector<std::vector<std::vector<std::int32_t>>>& continuations, const ScoreOptions& options = {});

  /// Counters of the prefix cache (see prefix_cache.h); computed_tokens is counted with the cache off too.
  CacheStats cache_stats() const;
  /// Drops every cached prefix and resets the counters.
  void clear_cache();

  /// Hidden states of each prompt: per prompt a float32 tensor [n_layers_selected, dim] for Pooling::Mean/Last,
  /// [n_layers_selected, n_tokens, dim] for Pooling::None. Layer indices follow HF output_hidden_states.
  std::vector<at::Tensor> hidden_states(const std::vector<std::string>& prompts,
                                        const HiddenStatesOptions& options = {});
  std::vector<at::Tensor> hidden_states(const std::vector<std::vector<std::int32_t>>& prompts,
                                        const HiddenStatesOptions& options = {});

  /// The layer indices of HiddenStatesOptions::layers made absolute (0 .. n_layers; -1 = n_layers): the one rule
  /// for layer numbers, also used by crossicl.analysis. InvalidArgument for an empty list or a layer outside
  /// [-(n_layers + 1), n_layers].
  std::vector<int> resolve_layers(const std::vector<int>& layers) const;

  /// Logits of every position of one sequence of ids.  // [n, vocab_size] float32
  at::Tensor logits(const std::vector<std::int32_t>& token_ids);

 private:
  // The token ids of the calibration texts for Quantize::Int8 (options_.calibration, else the built-in ones);
  // empty without a tokenizer (the model then uses fixed ids).
  std::vector<std::vector<std::int32_t>> calibration_ids() const;
  struct Prefill;
  struct ScoreItem;
  class Call;  // holds mutex_ for one serialised call (engine.cpp)
  // Generation of prompts [a, b) as one wave: prefilled together, decoded together; fills results[a, b).
  // `kv_positions` (per prompt: prompt + max_new_tokens, at most n_ctx) sizes the wave's KV arena.
  void generate_wave(const std::vector<std::vector<std::int32_t>>& prompts, std::size_t a, std::size_t b,
                     std::int64_t kv_positions, const GenerateOptions& options,
                     std::vector<GenerateResult>& results);
  // KV positions one wave of generate/score prompts may hold at once (saturates instead of overflowing).
  std::int64_t kv_budget() const;
  // KV positions a generated sequence can fill: its prompt + max_new_tokens, at most n_ctx (no overflow).
  std::int64_t seq_positions(std::size_t prompt_tokens, std::int64_t max_new_tokens) const;
  ScoreItem score_item_text(const std::string& prompt, const std::vector<std::string>& continuations,
                            std::size_t index) const;
  void truncate_item(ScoreItem& item, const ScoreOptions& options, std::size_t index) const;
  std::vector<std::vector<ScoreResult>> score_items(std::vector<ScoreItem>& items);
  void prefill_cached(std::vector<Prefill>& jobs, const DecodeOptions& options);
  void check_ids(const std::vector<std::int32_t>& ids, const char* what, std::size_t index) const;
  std::int64_t truncate(std::vector<std::int32_t>& ids, std::int64_t keep, Truncation mode, const char* what,
                        std::size_t index) const;
  void poll() const;
  void run_prefill(std::vector<Prefill>& jobs, const DecodeOptions& options);
  void run_prefill(const std::vector<Prefill*>& jobs, const DecodeOptions& options);
  std::string continuation_text(const std::vector<std::int32_t>& prompt, const std::vector<std::int32_t>& gen) const;

  std::shared_ptr<const Model> model_;
  std::shared_ptr<Tokenizer> tokenizer_;
  EngineOptions options_;
  std::int64_t n_ctx_ = 0;
  std::unique_ptr<Context> ctx_;
  std::unique_ptr<PrefixCache> cache_;  // null when cache_bytes == 0
  std::int64_t hit_tokens_ = 0;         // see CacheStats
  std::int64_t computed_tokens_ = 0;
  mutable std::timed_mutex mutex_;                  // serialises the calls (see the file comment)
  mutable std::atomic<std::thread::id> owner_{};    // the thread holding mutex_ (default id: none)
};

}  // namespace crossicl
