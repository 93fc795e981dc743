#include "crossicl/engine/engine.h"
#include "crossicl/engine/gguf.h"
#include "crossicl/engine/weights.h"

#include <algorithm>
#include <array>
#include <filesystem>
#include <limits>
#include <memory>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#if defined(__linux__)
#include <sched.h>
#endif

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <fmt/format.h>

#include "crossicl/core/error.h"
#include "detail/calibration_text.h"
#include "detail/enum_names.h"
#include "detail/engine_kernels.h"

namespace crossicl {

// One sequence to push through the model: `ids` continue whatever seq `seq` has cached.
struct Engine::Prefill {
  enum Outputs { kNone, kLast, kAll };
  std::int32_t seq = 0;
  std::vector<std::int32_t> ids;
  Outputs outputs = kLast;
  std::int64_t reuse = 0;   // prefill_cached: most leading tokens that may come from the prefix cache
  std::int64_t cached = 0;  // prefill_cached: leading tokens that came from it (outputs start after them)
  std::vector<at::Tensor> logit_parts;                // pieces of [n_out, vocab]
  std::vector<std::vector<at::Tensor>> hidden_parts;  // per layer, pieces of [n_out, dim]
  at::Tensor logits;                                  // [n_out, vocab]
  std::vector<at::Tensor> hidden;                     // per layer [n_out, dim]
};

// Serialises the public calls: holds mutex_ for the lifetime of one call. A caller that finds another call in
// flight polls should_stop every kPollWait while it waits, so an interrupt reaches it without waiting for the
// other call to end. A call made on the thread that holds the lock (from should_stop or on_forward) would wait
// for itself: it throws instead.
class Engine::Call {
 public:
  explicit Call(const Engine& engine) : engine_(engine), lock_(engine.mutex_, std::defer_lock) {
    if (engine.owner_.load() == std::this_thread::get_id())
      throw InvalidArgument("Engine called from inside one of its own calls (a should_stop or on_forward "
                            "callback): calls cannot nest");
    while (!lock_.try_lock_for(kPollWait)) engine.poll();
    engine.owner_.store(std::this_thread::get_id());
  }
  ~Call() { engine_.owner_.store(std::thread::id()); }  // before lock_ unlocks
  Call(const Call&) = delete;
  Call& operator=(const Call&) = delete;

 private:
  const Engine& engine_;
  std::unique_lock<std::timed_mutex> lock_;
};

namespace {

// Token ids of every prompt; an empty prompt is an error naming its index.
std::vector<std::vector<std::int32_t>> encode_all(const Engine& engine, const std::vector<std::string>& prompts) {
  std::vector<std::vector<std::int32_t>> ids;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    if (prompts[i].empty()) throw InvalidArgument(fmt::format("prompt {} is empty", i));
    ids.push_back(engine.encode(prompts[i]));
  }
  return ids;
}

// Log-probabilities of `ids` under logits rows (row j predicts ids[j]) that come in pieces of [m, vocab] (first
// rows first), with their sum, mean, the first token's probability and whether each token is its row's argmax.
ScoreResult score_rows(const std::vector<at::Tensor>& pieces, const std::vector<std::int32_t>& ids,
                       std::int64_t truncated) {
  const std::size_t n = ids.size();
  ScoreResult r;
  r.token_ids = ids;
  r.logprobs.assign(n, 0.0f);
  std::unique_ptr<bool[]> greedy(new bool[n]);
  std::size_t rows = 0;
  for (const at::Tensor& piece : pieces) rows += static_cast<std::size_t>(piece.size(0));
  if (rows != n) throw std::logic_error(fmt::format("score_rows: {} logits rows for {} scored tokens", rows, n));
  std::size_t row = 0;
  for (const at::Tensor& piece : pieces) {
    detail::token_logprobs_cpu(piece, ids.data() + row, r.logprobs.data() + row, greedy.get() + row);
    row += static_cast<std::size_t>(piece.size(0));
  }
  r.greedy = std::all_of(greedy.get(), greedy.get() + n, [](bool g) { return g; });
  for (float v : r.logprobs) r.sum += v;
  r.mean = r.sum / static_cast<double>(n);
  r.first_logprob = r.logprobs[0];
  r.first = std::exp(r.first_logprob);
  r.truncated = truncated;
  return r;
}

// The wave of items starting at `a`: items are added while the KV positions they hold together stay under
// `budget` (a wave has at least one item). `positions` is their sum: the wave's KV arena.
struct Wave {
  std::size_t end;
  std::int64_t positions;
};
template <class Cost>
Wave next_wave(std::size_t a, std::size_t n, std::int64_t budget, Cost cost) {
  std::size_t b = a;
  std::int64_t total = 0;
  while (b < n && (b == a || cost(b) <= budget - total)) total += cost(b++);  // no overflow: 0 <= total, budget
  return {b, total};
}

// Ends a wave: drops its sequences and arena, and returns the heap's free pages to the OS. A wave's transients
// (activations, block copies) leave free holes between long-lived allocations that glibc keeps resident; without
// the trim they add up over waves to a few hundred MiB of RSS above what is in use (docs/performance.md).
void end_wave(Context& ctx) {
  ctx.clear();
#if defined(__GLIBC__)
  ::malloc_trim(0);
#endif
}

// A prefix cache of `bytes` holding blocks of the model's KV, [n_layers, 2, n_kv_heads, block, head_dim].
std::unique_ptr<PrefixCache> prefix_cache_for(const Model& model, std::int64_t bytes) {
  const Config& c = model.config();
  return std::make_unique<PrefixCache>(
      bytes, Engine::kCacheBlockTokens,
      std::vector<std::int64_t>{c.n_layers, 2, c.n_kv_heads, Engine::kCacheBlockTokens, c.head_dim},
      at::TensorOptions().dtype(model.dtype()).device(model.device()));
}

std::string preview(const std::string& s) {
  return s.size() <= 40 ? s : s.substr(0, 40) + "...";
}

// The names of an enum's values (engine.h), in the order of the values (0, 1, ...).
constexpr std::array<std::string_view, 3> kTruncationNames = {"none", "left", "right"};
constexpr std::array<std::string_view, 3> kPoolingNames = {"mean", "last", "none"};

// score_batch's one rule on its arguments' shapes: one continuation list per prompt.
void check_one_list_per_prompt(std::size_t prompts, std::size_t continuations) {
  if (prompts != continuations)
    throw InvalidArgument(fmt::format("score_batch needs one continuation list per prompt (prompts={}, "
                                      "continuations={})",
                                      prompts, continuations));
}

}  // namespace

Truncation truncation_from_name(std::string_view name) {
  return detail::parse_enum<Truncation>(kTruncationNames, name, "truncation", detail::NameError::MustBe);
}

std::string_view truncation_name(Truncation truncation) { return detail::enum_name(kTruncationNames, truncation); }

Pooling pooling_from_name(std::string_view name) {
  return detail::parse_enum<Pooling>(kPoolingNames, name, "pooling", detail::NameError::MustBe);
}

std::string_view pooling_name(Pooling pooling) { return detail::enum_name(kPoolingNames, pooling); }

int Engine::available_cpus() {
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  return std::max(1u, std::thread::hardware_concurrency());
}

Engine::Engine(const std::string& path, EngineOptions options) : options_(std::move(options)) {
  if (options_.threads < 0) throw InvalidArgument(fmt::format("threads must be >= 0 (threads={})", options_.threads));
  // More threads than CPUs only oversubscribes them (and torch's setting is process-wide), so cap the request.
  options_.threads = std::min(options_.threads, available_cpus());
  if (options_.max_batch_tokens <= 0)
    throw InvalidArgument(fmt::format("max_batch_tokens must be > 0 (max_batch_tokens={})", options_.max_batch_tokens));
  // positions are int32 (Batch::pos)
  if (options_.n_ctx < 0 || options_.n_ctx > std::numeric_limits<std::int32_t>::max())
    throw InvalidArgument(fmt::format("n_ctx must be in [0, 2^31-1] (n_ctx={})", options_.n_ctx));
  if (options_.cache_bytes < 0)
    throw InvalidArgument(fmt::format("cache_bytes must be >= 0 (cache_bytes={})", options_.cache_bytes));
  if (options_.threads > 0) at::set_num_threads(options_.threads);
  namespace fs = std::filesystem;
  std::string tok = options_.tokenizer;
  if (tok.empty() && fs::is_directory(path)) {
    for (const char* name : {"tokenizer.model", "tokenizer.json"})
      if (fs::exists(fs::path(path) / name)) {
        tok = (fs::path(path) / name).string();
        break;
      }
  }
  if (!tok.empty())
    tokenizer_ = std::shared_ptr<Tokenizer>(Tokenizer::from_file(tok));
  else if (is_gguf_file(path))
    tokenizer_ = std::shared_ptr<Tokenizer>(tokenizer_from_gguf(path));
  ModelOptions model_options{options_.dtype, options_.device, options_.quantize, {}};
  model_options.int8.smooth_alpha = options_.smooth_alpha;
  model_options.int8.keep_float = options_.keep_float;
  if (options_.quantize == Quantize::Int8) model_options.int8.calibration = calibration_ids();
  model_ = Model::load(path, model_options);
#if defined(__GLIBC__)
  ::malloc_trim(0);  // int8: the float weights, calibration and smoothing transients freed during the load
#endif
  n_ctx_ = options_.n_ctx > 0 ? options_.n_ctx : model_->config().max_seq_len;
  ctx_ = std::make_unique<Context>(model_, ContextOptions{n_ctx_});
  if (options_.cache_bytes > 0) cache_ = prefix_cache_for(*model_, options_.cache_bytes);
}

std::vector<std::vector<std::int32_t>> Engine::calibration_ids() const {
  std::vector<std::vector<std::int32_t>> out;
  if (!tokenizer_) {
    if (!options_.calibration.empty())
      throw InvalidArgument("calibration texts need a tokenizer (pass tokenizer=, or no calibration)");
    return out;  // the model calibrates on its own fixed token ids (Int8Options)
  }
  if (options_.calibration.empty())
    for (std::string_view text : detail::kCalibrationTexts) out.push_back(tokenizer_->encode(text, true));
  for (const std::string& text : options_.calibration) out.push_back(tokenizer_->encode(text, true));
  return out;
}

CacheStats Engine::cache_stats() const {
  const Call call(*this);
  CacheStats s;
  s.hit_tokens = hit_tokens_;
  s.computed_tokens = computed_tokens_;
  s.block_tokens = kCacheBlockTokens;
  if (cache_) {
    s.cached_bytes = cache_->bytes();
    s.evictions = cache_->evictions();
    s.blocks = cache_->blocks();
    s.capacity_bytes = cache_->capacity();
  }
  return s;
}

void Engine::clear_cache() {
  const Call call(*this);
  if (cache_) cache_ = prefix_cache_for(*model_, options_.cache_bytes);
  hit_tokens_ = 0;
  computed_tokens_ = 0;
}

void Engine::poll() const {
  if (options_.should_stop && options_.should_stop()) throw Interrupted("interrupted");
}

std::int64_t Engine::kv_budget() const {
  constexpr std::int64_t kWaveForwards = 8;  // forward passes' worth of KV per wave
  const std::int64_t m = options_.max_batch_tokens;
  return m > std::numeric_limits<std::int64_t>::max() / kWaveForwards ? std::numeric_limits<std::int64_t>::max()
                                                                       : kWaveForwards * m;
}

std::int64_t Engine::seq_positions(std::size_t prompt_tokens, std::int64_t max_new_tokens) const {
  // a prompt holds <= n_ctx tokens after truncation; clamping each term first keeps the sum far from overflow
  const std::int64_t p = std::min(static_cast<std::int64_t>(prompt_tokens), n_ctx_);
  return std::min(n_ctx_, p + std::min(max_new_tokens, n_ctx_));
}

std::vector<std::int32_t> Engine::encode(const std::string& prompt) const {
  if (!tokenizer_)
    throw InvalidArgument("this engine has no tokenizer: pass token ids, or open it with tokenizer=<file>");
  if (prompt.empty()) throw InvalidArgument("prompt is empty");
  return tokenizer_->encode(prompt, /*bos=*/true);
}

void Engine::check_ids(const std::vector<std::int32_t>& ids, const char* what, std::size_t index) const {
  if (ids.empty()) throw InvalidArgument(fmt::format("{} {} is empty", what, index));
  const std::int64_t vocab = model_->config().vocab_size;
  for (std::size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= vocab)
      throw InvalidArgument(fmt::format("token id {} of {} {} (at {}) out of range [0, {})", ids[i], what, index, i,
                                        vocab));
}

std::int64_t Engine::truncate(std::vector<std::int32_t>& ids, std::int64_t keep, Truncation mode, const char* what,
                              std::size_t index) const {
  const std::int64_t n = static_cast<std::int64_t>(ids.size());
  if (n <= keep) return 0;
  if (mode == Truncation::None)
    throw InvalidArgument(fmt::format("{} {} has {} tokens, more than fit the context window (room for {} of "
                                      "n_ctx={}); pass truncation='left' or 'right'",
                                      what, index, n, keep, n_ctx_));
  keep = std::max<std::int64_t>(keep, 1);
  const std::int64_t drop = n - keep;
  if (mode == Truncation::Right) {
    ids.resize(keep);
  } else {
    const std::int32_t bos = tokenizer_ ? tokenizer_->bos_id() : model_->config().bos_id;
    const std::int64_t first = (bos >= 0 && ids[0] == bos && keep > 1) ? 1 : 0;  // keep BOS in front
    ids.erase(ids.begin() + first, ids.begin() + first + drop);
  }
  return drop;
}

void Engine::run_prefill(std::vector<Prefill>& jobs, const DecodeOptions& options) {
  std::vector<Prefill*> ptrs;
  for (Prefill& job : jobs) ptrs.push_back(&job);
  run_prefill(ptrs, options);
}

void Engine::run_prefill(const std::vector<Prefill*>& jobs, const DecodeOptions& options) {
  const std::size_t n_layers_out = options.hidden_layers.size();
  for (Prefill* job : jobs) {
    job->hidden_parts.assign(n_layers_out, {});
    ctx_->seq_reserve(job->seq, ctx_->seq_len(job->seq) + static_cast<std::int64_t>(job->ids.size()));
  }
  std::size_t j = 0, off = 0;
  while (j < jobs.size() && jobs[j]->ids.empty()) ++j;
  while (j < jobs.size()) {
    poll();
    Batch b;
    std::vector<std::pair<std::size_t, std::int64_t>> owners;  // (job, outputs in this batch)
    const std::int64_t limit = options_.max_batch_tokens;
    while (j < jobs.size() && static_cast<std::int64_t>(b.size()) < limit) {
      Prefill& job = *jobs[j];
      const std::int64_t remaining = static_cast<std::int64_t>(job.ids.size() - off);
      const std::int64_t take = std::min<std::int64_t>(remaining, limit - static_cast<std::int64_t>(b.size()));
      const std::int64_t p0 = ctx_->seq_len(job.seq);
      std::int64_t n_out = 0;
      for (std::int64_t t = 0; t < take; ++t) {
        const bool last = off + t + 1 == job.ids.size();
        const bool out = job.outputs == Prefill::kAll || (job.outputs == Prefill::kLast && last);
        b.add(job.ids[off + t], static_cast<std::int32_t>(p0 + t), job.seq, out);
        n_out += out;
      }
      owners.emplace_back(j, n_out);
      off += take;
      if (off == job.ids.size()) {
        off = 0;
        ++j;
        while (j < jobs.size() && jobs[j]->ids.empty()) ++j;
      }
    }
    DecodeOutput out = ctx_->decode(b, options);
    if (options_.on_forward) options_.on_forward(static_cast<std::int64_t>(b.size()));
    computed_tokens_ += static_cast<std::int64_t>(b.size());
    std::int64_t row = 0;
    for (const auto& [jj, n_out] : owners) {
      if (n_out == 0) continue;
      if (options.logits) jobs[jj]->logit_parts.push_back(out.logits.narrow(0, row, n_out));
      for (std::size_t h = 0; h < n_layers_out; ++h)
        jobs[jj]->hidden_parts[h].push_back(out.hidden[h].narrow(0, row, n_out));
      row += n_out;
    }
  }
  // A job's outputs from one forward pass stay a view of that pass's outputs (which hold only output rows).
  const auto join = [](const std::vector<at::Tensor>& parts) {
    return parts.empty() ? at::Tensor() : parts.size() == 1 ? parts[0] : at::cat(parts, 0);
  };
  for (Prefill* job : jobs) {
    if (!job->logit_parts.empty()) job->logits = join(job->logit_parts);
    for (auto& parts : job->hidden_parts) job->hidden.push_back(join(parts));
    job->logit_parts.clear();
    job->hidden_parts.clear();
  }
}

// Prefill of fresh sequences through the prefix cache. Each job's first `reuse` tokens may come from the cache
// (whole blocks); the rest is computed and every full block of the job's ids is then cached. Within the call,
// a job sharing more full blocks with its predecessor in sorted order than the cache holds waits for a second
// wave, so a prefix shared by several jobs is computed once (by the first of them in sorted order).
void Engine::prefill_cached(std::vector<Prefill>& jobs, const DecodeOptions& options) {
  if (!cache_) {
    run_prefill(jobs, options);
    return;
  }
  const std::int64_t B = cache_->block_tokens();
  std::vector<std::vector<std::int32_t>> full(jobs.size());
  for (std::size_t i = 0; i < jobs.size(); ++i) full[i] = jobs[i].ids;
  std::vector<std::size_t> pending(jobs.size());
  for (std::size_t i = 0; i < jobs.size(); ++i) pending[i] = i;
  std::stable_sort(pending.begin(), pending.end(), [&](std::size_t a, std::size_t b) { return full[a] < full[b]; });
  for (int round = 0; !pending.empty(); ++round) {
    std::vector<std::size_t> wave, later;
    for (std::size_t k = 0; k < pending.size(); ++k) {
      const std::size_t i = pending[k];
      bool defer = false;
      if (round == 0 && k > 0 && jobs[i].reuse >= B) {  // a job waits at most once (two waves per call)
        const auto& a = full[i];
        const auto& prev = full[pending[k - 1]];
        std::size_t lcp = 0;
        while (lcp < a.size() && lcp < prev.size() && a[lcp] == prev[lcp]) ++lcp;
        const std::int64_t shared = std::min<std::int64_t>(static_cast<std::int64_t>(lcp), jobs[i].reuse) / B * B;
        defer = shared > cache_->peek(a, jobs[i].reuse);
      }
      (defer ? later : wave).push_back(i);
    }
    std::vector<Prefill*> run;
    for (std::size_t i : wave) {
      Prefill& job = jobs[i];
      std::vector<at::Tensor> blocks;
      job.cached = job.reuse > 0 ? cache_->match(full[i], job.reuse, &blocks) : 0;
      if (job.cached > 0) {
        ctx_->seq_append_kv(job.seq, blocks);
        job.ids.assign(full[i].begin() + job.cached, full[i].end());
        hit_tokens_ += job.cached;
      }
      run.push_back(&job);
    }
    run_prefill(run, options);
    for (std::size_t i : wave) {
      const std::int32_t seq = jobs[i].seq;
      cache_->insert(full[i], static_cast<std::int64_t>(full[i].size()),
                     [&](std::int64_t begin, const at::Tensor& out) { ctx_->seq_kv_into(seq, begin, out); });
      jobs[i].ids = std::move(full[i]);
    }
    pending.swap(later);
  }
}

std::string Engine::continuation_text(const std::vector<std::int32_t>& prompt,
                                      const std::vector<std::int32_t>& gen) const {
  if (!tokenizer_ || gen.empty()) return "";
  // Decoding the continuation alone would drop SentencePiece's leading space; decode it after the prompt.
  std::vector<std::int32_t> all = prompt;
  all.insert(all.end(), gen.begin(), gen.end());
  const std::string full = tokenizer_->decode(all);
  const std::string pre = tokenizer_->decode(prompt);
  if (full.compare(0, pre.size(), pre) == 0) return full.substr(pre.size());
  return tokenizer_->decode(gen);
}

void Engine::generate_wave(const std::vector<std::vector<std::int32_t>>& prompts, std::size_t a, std::size_t b,
                           std::int64_t kv_positions, const GenerateOptions& options,
                           std::vector<GenerateResult>& results) {
  ctx_->clear();
  const std::size_t n = b - a;
  ctx_->reserve_arena(kv_positions);
  std::vector<Prefill> jobs(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::vector<std::int32_t>& p = prompts[a + i];
    jobs[i].seq = static_cast<std::int32_t>(i);
    jobs[i].ids = p;
    jobs[i].reuse = static_cast<std::int64_t>(p.size()) - 1;  // the last token's logits are needed
    ctx_->seq_reserve(jobs[i].seq, seq_positions(p.size(), options.max_new_tokens));
  }
  prefill_cached(jobs, DecodeOptions{});

  std::vector<std::int32_t> eos = model_->config().eos_ids;
  if (tokenizer_ && tokenizer_->eos_id() >= 0) eos.push_back(tokenizer_->eos_id());
  const bool use_stop = tokenizer_ && !options.stop.empty();
  std::vector<at::Tensor> logits(n);  // [vocab] next-token logits per sequence of the wave
  for (std::size_t i = 0; i < n; ++i) logits[i] = jobs[i].logits[0];
  std::vector<std::size_t> active;  // wave indices
  for (std::size_t i = 0; i < n; ++i) {
    if (options.max_new_tokens == 0)
      results[a + i].finish_reason = "length";
    else
      active.push_back(i);
  }
  while (!active.empty()) {
    std::vector<std::size_t> still;
    for (std::size_t i : active) {
      GenerateResult& r = results[a + i];
      std::int32_t next = 0;
      float logprob = 0;
      detail::greedy_tokens_cpu(logits[i].unsqueeze(0), &next, &logprob);  // [1, vocab]
      r.token_ids.push_back(next);
      r.logprobs.push_back(logprob);
      if (options.stop_at_eos && std::find(eos.begin(), eos.end(), next) != eos.end()) {
        r.finish_reason = "eos";
        continue;
      }
      if (use_stop) {
        const std::string text = continuation_text(prompts[a + i], r.token_ids);
        std::size_t cut = std::string::npos;
        for (const std::string& s : options.stop) cut = std::min(cut, text.find(s));
        if (cut != std::string::npos) {
          r.text = text.substr(0, cut);
          r.finish_reason = "stop";
          continue;
        }
      }
      if (static_cast<std::int64_t>(r.token_ids.size()) >= options.max_new_tokens) {
        r.finish_reason = "length";
        continue;
      }
      if (ctx_->seq_len(static_cast<std::int32_t>(i)) >= n_ctx_) {
        r.finish_reason = "window";
        continue;
      }
      still.push_back(i);
    }
    active.swap(still);
    if (active.empty()) break;
    poll();
    Batch batch;
    for (std::size_t i : active) {
      const std::int32_t seq = static_cast<std::int32_t>(i);
      batch.add(results[a + i].token_ids.back(), static_cast<std::int32_t>(ctx_->seq_len(seq)), seq, true);
    }
    at::Tensor out = ctx_->decode(batch).logits;  // [n_active, vocab]
    if (options_.on_forward) options_.on_forward(static_cast<std::int64_t>(batch.size()));
    for (std::size_t k = 0; k < active.size(); ++k) logits[active[k]] = out[static_cast<std::int64_t>(k)];
  }
  end_wave(*ctx_);
}

std::vector<GenerateResult> Engine::generate(const std::vector<std::string>& prompts,
                                             const GenerateOptions& options) {
  return generate(encode_all(*this, prompts), options);
}

std::vector<GenerateResult> Engine::generate(const std::vector<std::vector<std::int32_t>>& prompts_in,
                                             const GenerateOptions& options) {
  const Call call(*this);
  c10::InferenceMode guard;
  if (options.max_new_tokens < 0)
    throw InvalidArgument(fmt::format("max_new_tokens must be >= 0 (max_new_tokens={})", options.max_new_tokens));
  if (options.truncation != Truncation::None && options.max_new_tokens >= n_ctx_)
    throw InvalidArgument(fmt::format("max_new_tokens must be < n_ctx with truncation '{}', which keeps room for "
                                      "them in the context window (max_new_tokens={}, n_ctx={})",
                                      truncation_name(options.truncation), options.max_new_tokens, n_ctx_));
  for (std::size_t i = 0; i < options.stop.size(); ++i)
    if (options.stop[i].empty()) throw InvalidArgument(fmt::format("stop string {} is empty", i));
  std::vector<std::vector<std::int32_t>> prompts = prompts_in;
  std::vector<GenerateResult> results(prompts.size());
  const std::int64_t keep = options.truncation == Truncation::None ? n_ctx_ : n_ctx_ - options.max_new_tokens;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    check_ids(prompts[i], "prompt", i);
    results[i].truncated = truncate(prompts[i], keep, options.truncation, "prompt", i);
  }
  // Prompts go in waves whose KV (prompt + new tokens) stays within a few forward passes' worth; each wave is
  // prefilled together and decoded together.
  for (std::size_t a = 0; a < prompts.size();) {
    const Wave w = next_wave(a, prompts.size(), kv_budget(),
                             [&](std::size_t i) { return seq_positions(prompts[i].size(), options.max_new_tokens); });
    generate_wave(prompts, a, w.end, w.positions, options, results);
    a = w.end;
  }
  for (std::size_t i = 0; i < results.size(); ++i) {
    GenerateResult& r = results[i];
    if (r.finish_reason == "stop") continue;
    std::vector<std::int32_t> gen = r.token_ids;
    if (r.finish_reason == "eos") gen.pop_back();
    r.text = continuation_text(prompts[i], gen);
  }
  ctx_->clear();
  return results;
}

// One prompt to score: candidate i = p[:split[i]] + scored[i].
struct Engine::ScoreItem {
  std::vector<std::int32_t> p;                     // prompt ids (truncated by truncate_item)
  std::vector<std::int64_t> split;                 // per candidate: prompt tokens before its scored tokens
  std::vector<std::vector<std::int32_t>> scored;   // per candidate: the scored ids
  std::int64_t dropped = 0;                        // prompt tokens dropped by truncation
};

Engine::ScoreItem Engine::score_item_text(const std::string& prompt, const std::vector<std::string>& continuations,
                                          std::size_t index) const {
  if (prompt.empty()) throw InvalidArgument(fmt::format("prompt {} is empty", index));
  ScoreItem item;
  item.p = encode(prompt);
  item.scored.resize(continuations.size());
  item.split.resize(continuations.size());
  for (std::size_t i = 0; i < continuations.size(); ++i) {
    if (continuations[i].empty()) throw InvalidArgument(fmt::format("continuation {} is empty", i));
    const std::vector<std::int32_t> joint = tokenizer_->encode(prompt + continuations[i], true);
    std::size_t l = 0;
    while (l < joint.size() && l < item.p.size() && joint[l] == item.p[l]) ++l;
    if (l == 0)
      throw InvalidArgument(fmt::format("continuation {} ('{}') changes the prompt's first token", i,
                                        preview(continuations[i])));
    if (l == joint.size())
      throw InvalidArgument(fmt::format("continuation {} ('{}') adds no tokens", i, preview(continuations[i])));
    item.split[i] = static_cast<std::int64_t>(l);
    item.scored[i].assign(joint.begin() + l, joint.end());
  }
  return item;
}

void Engine::truncate_item(ScoreItem& item, const ScoreOptions& options, std::size_t index) const {
  std::int64_t longest = 0;
  for (const auto& s : item.scored) longest = std::max<std::int64_t>(longest, static_cast<std::int64_t>(s.size()));
  std::vector<std::int32_t>& p = item.p;
  if (static_cast<std::int64_t>(p.size()) + longest <= n_ctx_) return;
  const std::int64_t keep = n_ctx_ - longest;
  if (keep < 1)
    throw InvalidArgument(fmt::format("a continuation of prompt {} has {} tokens, more than the context window "
                                      "(n_ctx={})",
                                      index, longest, n_ctx_));
  item.dropped = truncate(p, keep, options.truncation, "prompt", index);
  for (auto& s : item.split) {
    if (options.truncation == Truncation::Right) {
      s = std::min<std::int64_t>(s, keep);
    } else {
      // left: the kept tail moved down by `dropped`; a split inside the dropped part keeps the BOS only
      s = std::max<std::int64_t>(s - item.dropped, std::min<std::int64_t>(1, static_cast<std::int64_t>(p.size())));
    }
  }
}

std::vector<std::vector<ScoreResult>> Engine::score_items(std::vector<ScoreItem>& items) {
  std::vector<std::vector<ScoreResult>> results(items.size());
  // Prompts go in waves whose KV (prompt + one copy per candidate) stays within a few forward passes' worth.
  std::size_t a = 0;
  while (a < items.size()) {
    const Wave w = next_wave(a, items.size(), kv_budget(), [&](std::size_t k) {
      std::int64_t c = static_cast<std::int64_t>(items[k].p.size());
      for (const auto& s : items[k].scored) c += static_cast<std::int64_t>(items[k].p.size() + s.size());
      return c;
    });
    const std::size_t b = w.end;
    ctx_->clear();
    ctx_->reserve_arena(w.positions);  // at least the rooms below: shared prefix <= prompt, split <= prompt
    // Shared prefix of item k: everything before its earliest split. It is computed once (or taken from the
    // prefix cache but for its last token), and its last row's logits score the first token of every candidate
    // that splits there; a candidate then computes only its other tokens (none for a one-token continuation).
    std::vector<Prefill> base(b - a);
    std::vector<std::int64_t> shared(b - a, 0);
    for (std::size_t k = a; k < b; ++k) {
      const ScoreItem& it = items[k];
      if (it.scored.empty()) continue;
      shared[k - a] = *std::min_element(it.split.begin(), it.split.end());
      Prefill& job = base[k - a];
      job.seq = static_cast<std::int32_t>(k - a);
      ctx_->seq_reserve(job.seq, shared[k - a]);
      job.ids.assign(it.p.begin(), it.p.begin() + shared[k - a]);
      job.outputs = Prefill::kLast;
      job.reuse = shared[k - a] - 1;
    }
    prefill_cached(base, DecodeOptions{});
    // Candidate i of item k: the prompt tokens from the shared prefix to its split, then its scored tokens but
    // the last (whose logits nobody reads).
    std::vector<Prefill> jobs;
    std::vector<std::vector<std::ptrdiff_t>> job_of(b - a);  // per candidate: its job in `jobs`, or -1
    std::int32_t seq = static_cast<std::int32_t>(b - a);
    for (std::size_t k = a; k < b; ++k) {
      const ScoreItem& it = items[k];
      const std::int64_t sh = shared[k - a];
      for (std::size_t i = 0; i < it.scored.size(); ++i) {
        Prefill job;
        job.ids.assign(it.p.begin() + sh, it.p.begin() + it.split[i]);
        job.ids.insert(job.ids.end(), it.scored[i].begin(), it.scored[i].end() - 1);
        if (job.ids.empty()) {
          job_of[k - a].push_back(-1);
          continue;
        }
        job.seq = seq++;
        ctx_->seq_reserve(job.seq, it.split[i] + static_cast<std::int64_t>(it.scored[i].size()));
        ctx_->seq_cp(static_cast<std::int32_t>(k - a), job.seq, sh);
        job.outputs = Prefill::kAll;
        job_of[k - a].push_back(static_cast<std::ptrdiff_t>(jobs.size()));
        jobs.push_back(std::move(job));
      }
      ctx_->seq_rm(static_cast<std::int32_t>(k - a));
    }
    run_prefill(jobs, DecodeOptions{});
    for (std::size_t k = a; k < b; ++k) {
      const ScoreItem& it = items[k];
      for (std::size_t i = 0; i < it.scored.size(); ++i) {
        const std::ptrdiff_t j = job_of[k - a][i];
        std::vector<at::Tensor> rows;  // row t predicts scored token t
        if (it.split[i] == shared[k - a]) {
          rows.push_back(base[k - a].logits);  // [1, vocab]: the shared prefix's last token
          if (j >= 0) rows.push_back(jobs[j].logits);
        } else {  // the row of the split's last prompt token onwards
          rows.push_back(jobs[j].logits.narrow(0, it.split[i] - 1 - shared[k - a],
                                               static_cast<std::int64_t>(it.scored[i].size())));
        }
        results[k].push_back(score_rows(rows, it.scored[i], it.dropped));
      }
    }
    end_wave(*ctx_);
    a = b;
  }
  return results;
}

std::vector<ScoreResult> Engine::score(const std::string& prompt, const std::vector<std::string>& continuations,
                                       const ScoreOptions& options) {
  encode(prompt);  // errors for a missing tokenizer / empty prompt come first
  if (continuations.empty()) return {};
  return score_batch(std::vector<std::string>{prompt}, {continuations}, options)[0];
}

std::vector<ScoreResult> Engine::score(const std::vector<std::int32_t>& prompt,
                                       const std::vector<std::vector<std::int32_t>>& continuations,
                                       const ScoreOptions& options) {
  check_ids(prompt, "prompt", 0);
  if (continuations.empty()) return {};
  return score_batch(std::vector<std::vector<std::int32_t>>{prompt}, {continuations}, options)[0];
}

std::vector<std::vector<ScoreResult>> Engine::score_batch(const std::vector<std::string>& prompts,
                                                          const std::vector<std::vector<std::string>>& continuations,
                                                          const ScoreOptions& options) {
  check_one_list_per_prompt(prompts.size(), continuations.size());
  std::vector<ScoreItem> items;
  for (std::size_t k = 0; k < prompts.size(); ++k) {
    items.push_back(score_item_text(prompts[k], continuations[k], k));
    truncate_item(items.back(), options, k);
  }
  const Call call(*this);
  c10::InferenceMode guard;
  return score_items(items);
}

std::vector<std::vector<ScoreResult>> Engine::score_batch(
    const std::vector<std::vector<std::int32_t>>& prompts,
    const std::vector<std::vector<std::vector<std::int32_t>>>& continuations, const ScoreOptions& options) {
  check_one_list_per_prompt(prompts.size(), continuations.size());
  std::vector<ScoreItem> items(prompts.size());
  for (std::size_t k = 0; k < prompts.size(); ++k) {
    check_ids(prompts[k], "prompt", k);
    for (std::size_t i = 0; i < continuations[k].size(); ++i) check_ids(continuations[k][i], "continuation", i);
    items[k].p = prompts[k];
    items[k].scored = continuations[k];
    items[k].split.assign(continuations[k].size(), static_cast<std::int64_t>(prompts[k].size()));
    truncate_item(items[k], options, k);
  }
  const Call call(*this);
  c10::InferenceMode guard;
  return score_items(items);
}

std::vector<int> Engine::resolve_layers(const std::vector<int>& layers) const {
  const std::int64_t n_layers = model_->config().n_layers;
  if (layers.empty()) throw InvalidArgument("layers is empty");
  std::vector<int> out;
  for (int layer : layers) {
    if (layer < -(n_layers + 1) || layer > n_layers)
      throw InvalidArgument(fmt::format("layer {} out of range [{}, {}]", layer, -(n_layers + 1), n_layers));
    out.push_back(layer < 0 ? static_cast<int>(layer + n_layers + 1) : layer);
  }
  return out;
}

std::vector<at::Tensor> Engine::hidden_states(const std::vector<std::string>& prompts,
                                              const HiddenStatesOptions& options) {
  return hidden_states(encode_all(*this, prompts), options);
}

std::vector<at::Tensor> Engine::hidden_states(const std::vector<std::vector<std::int32_t>>& prompts_in,
                                              const HiddenStatesOptions& options) {
  const Call call(*this);
  c10::InferenceMode guard;
  DecodeOptions dec;
  dec.logits = false;
  dec.hidden_layers = resolve_layers(options.layers);
  const Pooling pooling = options.pooling;
  std::vector<std::vector<std::int32_t>> prompts = prompts_in;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    check_ids(prompts[i], "prompt", i);
    truncate(prompts[i], n_ctx_, options.truncation, "prompt", i);
    if (pooling == Pooling::Mean) {
      const std::int64_t n = static_cast<std::int64_t>(prompts[i].size());
      const std::int64_t end = options.end < 0 ? n : options.end;
      if (options.begin < 0 || options.begin >= end || end > n)
        throw InvalidArgument(fmt::format("mean span [{}, {}) is not inside prompt {} of {} tokens", options.begin,
                                          options.end, i, n));
    }
  }
  ctx_->clear();
  std::vector<Prefill> jobs(prompts.size());
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    jobs[i].seq = static_cast<std::int32_t>(i);
    jobs[i].ids = prompts[i];
    jobs[i].outputs = pooling == Pooling::Last ? Prefill::kLast : Prefill::kAll;
    // cached positions return no hidden states: reuse only what no output needs
    const std::int64_t n = static_cast<std::int64_t>(prompts[i].size());
    jobs[i].reuse = pooling == Pooling::Last ? n - 1 : pooling == Pooling::Mean ? options.begin : 0;
  }
  prefill_cached(jobs, dec);
  std::vector<at::Tensor> out;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    at::Tensor h = at::stack(jobs[i].hidden, 0);  // [n_layers_selected, n_out, dim]
    if (pooling == Pooling::Last) {
      h = h.select(1, 0);  // [n_layers_selected, dim]
    } else if (pooling == Pooling::Mean) {
      const std::int64_t n = static_cast<std::int64_t>(prompts[i].size());
      const std::int64_t end = options.end < 0 ? n : options.end;
      // rows start at the first computed position (after the cached ones)
      h = h.narrow(1, options.begin - jobs[i].cached, end - options.begin).mean(1);  // [n_layers_selected, dim]
    }
    out.push_back(h.contiguous());
  }
  ctx_->clear();
  return out;
}

at::Tensor Engine::logits(const std::vector<std::int32_t>& token_ids) {
  check_ids(token_ids, "token_ids", 0);
  const Call call(*this);
  c10::InferenceMode guard;
  if (static_cast<std::int64_t>(token_ids.size()) > n_ctx_)
    throw InvalidArgument(
        fmt::format("token_ids has {} tokens, more than the context window (n_ctx={})", token_ids.size(), n_ctx_));
  ctx_->clear();
  std::vector<Prefill> jobs(1);
  jobs[0].ids = token_ids;
  jobs[0].outputs = Prefill::kAll;
  run_prefill(jobs, DecodeOptions{});
  ctx_->clear();
  return jobs[0].logits;
}

}  // namespace crossicl
