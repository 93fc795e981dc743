// Python bindings of the libtorch engine: crossicl.Engine, its results and crossicl.ModelConfig.
// torch's c10::Error reaches Python as RuntimeError without the C++ backtrace.
//
// Locks: the Engine serialises its calls with one lock (engine.h), and its thread takes the GIL while holding
// that lock (the signal poll, the progress callback). So no binding may wait for the Engine's lock while holding
// the GIL: every call that takes it (generate, score, score_batch, hidden_states, logits, cache_stats,
// clear_cache) runs inside released(); the GIL-free ones (encode, the construction) do too, as they can be long.
// config, tokenizer, n_ctx, dtype, device and resolve_layers read immutable state and keep the GIL.
// Ctrl-C: between forward passes, and while waiting for another thread's call, the engine polls Python for
// signals (make_should_stop), so KeyboardInterrupt reaches a call in the main thread promptly.
// Options arrive as the names of the C++ enums ("left", "mean", "bfloat16") and are parsed once by their
// *_from_name parsers (parse_dtype for dtypes); a bad name is a ValueError listing the valid ones.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <fmt/format.h>

#include "crossicl/core/error.h"
#include "crossicl/engine/engine.h"
#include "crossicl/engine/weights.h"
#include "convert.h"
#include "registry.h"

namespace py = pybind11;

namespace crossicl::bindings {
namespace {

using Ids = std::vector<std::int32_t>;

// A prompt list: str, a list of str, or a list of token-id lists (not mixed).
struct Prompts {
  std::vector<std::string> texts;
  std::vector<Ids> ids;
  bool is_text = true;
};

std::string utf8_of(const py::handle& o, const char* what, std::size_t i) {
  if (py::isinstance<py::bytes>(o)) return o.cast<std::string>();
  Py_ssize_t n = 0;
  const char* s = PyUnicode_AsUTF8AndSize(o.ptr(), &n);
  if (!s) {
    PyErr_Clear();
    throw InvalidArgument(fmt::format("{} {} is not valid UTF-8 text", what, i));
  }
  return std::string(s, static_cast<std::size_t>(n));
}

Ids ids_of(const py::handle& o, const char* what, std::size_t i) {
  std::vector<long long> v;
  try {
    v = o.cast<std::vector<long long>>();
  } catch (const py::cast_error&) {
    throw InvalidArgument(fmt::format("{} {} must be a str or a sequence of int token ids", what, i));
  }
  Ids out;
  for (long long x : v) {
    if (x < INT32_MIN || x > INT32_MAX)
      throw InvalidArgument(fmt::format("token id {} of {} {} out of range", x, what, i));
    out.push_back(static_cast<std::int32_t>(x));
  }
  return out;
}

bool is_text(const py::handle& o) { return py::isinstance<py::str>(o) || py::isinstance<py::bytes>(o); }

Prompts prompts_of(const py::object& obj, const char* what) {
  Prompts p;
  if (is_text(obj)) {
    p.texts.push_back(utf8_of(obj, what, 0));
    return p;
  }
  if (!py::isinstance<py::sequence>(obj) && !py::hasattr(obj, "__iter__"))
    throw InvalidArgument(fmt::format("{}s must be a str or a list of str / token-id lists", what));
  std::size_t i = 0;
  std::optional<bool> text;
  for (const py::handle& item : obj) {
    const bool t = is_text(item);
    if (text && *text != t) throw InvalidArgument(fmt::format("{} {} mixes text and token ids with the others", what, i));
    text = t;
    if (t)
      p.texts.push_back(utf8_of(item, what, i));
    else
      p.ids.push_back(ids_of(item, what, i));
    ++i;
  }
  p.is_text = text.value_or(true);
  return p;
}

// A float32 numpy copy of a tensor (any dtype and device), same shape.
py::array_t<float> tensor_to_numpy(const at::Tensor& t) {
  at::Tensor c = t.to(at::kFloat).contiguous().cpu();
  std::vector<py::ssize_t> shape(c.sizes().begin(), c.sizes().end());
  py::array_t<float> a(shape);
  std::memcpy(a.mutable_data(), c.data_ptr<float>(), sizeof(float) * static_cast<std::size_t>(c.numel()));
  return a;
}

// The arguments of score and score_batch: prompts of one kind (text or token ids) and one continuation list
// per prompt, of the prompts' kind (Engine::score_batch checks that there is one list per prompt).
struct ScoreArgs {
  Prompts prompts;
  std::vector<Prompts> continuations;
};

// Every non-empty continuation list must be of the prompts' kind.
void check_kinds(const ScoreArgs& a) {
  const std::size_t n = a.prompts.is_text ? a.prompts.texts.size() : a.prompts.ids.size();
  if (a.continuations.size() != n) return;  // Engine::score_batch reports the mismatch
  for (std::size_t k = 0; k < n; ++k) {
    const Prompts& c = a.continuations[k];
    const std::size_t count = c.is_text ? c.texts.size() : c.ids.size();
    if (count > 0 && c.is_text != a.prompts.is_text)
      throw InvalidArgument(fmt::format("continuations of prompt {} must be {} like the prompts", k,
                                        a.prompts.is_text ? "text" : "token-id lists"));
  }
}

// score(prompt, continuations): one prompt (str or one id list) and its continuations.
ScoreArgs score_args_one(const py::object& prompt, const py::object& continuations) {
  ScoreArgs a;
  a.continuations.push_back(prompts_of(continuations, "continuation"));
  a.prompts.is_text = is_text(prompt);
  if (a.prompts.is_text)
    a.prompts.texts.push_back(utf8_of(prompt, "prompt", 0));
  else
    a.prompts.ids.push_back(ids_of(prompt, "prompt", 0));
  check_kinds(a);
  return a;
}

// score_batch(prompts, continuations): `continuations` is one list per prompt, or (flat: a list of str, or a
// list of id lists whose first item's first item is an int) one list applied to every prompt.
ScoreArgs score_args(const py::object& prompts, const py::object& continuations) {
  ScoreArgs a;
  a.prompts = prompts_of(prompts, "prompt");
  const Prompts& p = a.prompts;
  const std::size_t n = p.is_text ? p.texts.size() : p.ids.size();
  if (is_text(continuations) || !py::isinstance<py::sequence>(continuations))
    throw InvalidArgument("continuations must be a list of str / token-id lists (applied to every "
                          "prompt) or one such list per prompt");
  py::sequence seq = continuations.cast<py::sequence>();
  bool flat = false;
  if (py::len(seq) > 0) {
    py::object first = seq[0];
    if (is_text(first)) {
      flat = true;
    } else if (py::isinstance<py::sequence>(first) && py::len(first) > 0) {
      py::object inner = first.cast<py::sequence>()[0];
      flat = !is_text(inner) && !py::isinstance<py::sequence>(inner);
    }
  }
  if (flat) {
    a.continuations.assign(n, prompts_of(continuations, "continuation"));
  } else {
    for (const py::handle& c : seq)
      a.continuations.push_back(prompts_of(py::reinterpret_borrow<py::object>(c), "continuation"));
  }
  check_kinds(a);
  return a;
}

ScoreOptions score_options(const std::string& truncation) {
  ScoreOptions o;
  o.truncation = truncation_from_name(truncation);
  return o;
}

// Engine::score_batch on normalised arguments, without the GIL.
std::vector<std::vector<ScoreResult>> score_batch(Engine& e, ScoreArgs& a, const ScoreOptions& o) {
  if (a.prompts.is_text) {
    std::vector<std::vector<std::string>> c;
    for (auto& x : a.continuations) c.push_back(std::move(x.texts));
    return released([&] { return e.score_batch(a.prompts.texts, c, o); });
  }
  std::vector<std::vector<Ids>> c;
  for (auto& x : a.continuations) c.push_back(std::move(x.ids));
  return released([&] { return e.score_batch(a.prompts.ids, c, o); });
}

// Ident of the interpreter's main thread, the only one that runs Python signal handlers (set at import).
unsigned long g_main_thread = 0;

// How often a call in the main thread takes the GIL to run pending signal handlers.
constexpr std::chrono::milliseconds kSignalPoll{50};

// EngineOptions::should_stop of a Python Engine: runs pending signal handlers and reports whether one raised
// (Ctrl-C: KeyboardInterrupt, then left pending for the Interrupted translator). Python runs them only in the
// main thread (PyErr_CheckSignals returns 0 elsewhere), so other threads return false without taking the GIL;
// the main thread takes it at most every kSignalPoll, rather than queueing for it behind busy Python threads at
// every decode step. Taking the GIL here, with the Engine's lock held, is safe because no binding waits for that
// lock with the GIL held.
std::function<bool()> make_should_stop() {
  return [] {
    if (PyThread_get_thread_ident() != g_main_thread) return false;
    thread_local std::chrono::steady_clock::time_point last{};
    const auto now = std::chrono::steady_clock::now();
    if (now - last < kSignalPoll) return false;
    last = now;
    py::gil_scoped_acquire acquire;
    return PyErr_CheckSignals() != 0;
  };
}

std::shared_ptr<Engine> make_engine(const std::filesystem::path& path, std::optional<std::filesystem::path> tokenizer,
                                    const std::string& dtype, const std::string& device, int threads,
                                    std::int64_t n_ctx, std::int64_t max_batch_tokens, std::int64_t cache_bytes,
                                    std::optional<py::function> progress, const std::string& quantize,
                                    std::optional<std::vector<std::string>> calibration, double smooth_alpha,
                                    std::vector<std::string> keep_float) {
  EngineOptions o;
  o.keep_float = std::move(keep_float);
  if (calibration) o.calibration = std::move(*calibration);
  o.smooth_alpha = smooth_alpha;
  if (tokenizer) o.tokenizer = tokenizer->string();
  o.dtype = parse_dtype(dtype);
  o.device = device;
  o.quantize = quantize_from_name(quantize);
  o.threads = threads;
  o.n_ctx = n_ctx;
  o.max_batch_tokens = max_batch_tokens;
  o.cache_bytes = cache_bytes;
  o.should_stop = make_should_stop();
  if (progress) {
    // Runs on the calling thread with the Engine's lock held: calling the same Engine from it raises ValueError.
    auto fn = std::make_shared<py::function>(std::move(*progress));
    o.on_forward = [fn](std::int64_t tokens) {
      py::gil_scoped_acquire acquire;
      (*fn)(tokens);
    };
  }
  return released([&] { return std::make_shared<Engine>(path.string(), std::move(o)); });
}

std::string repr_floats(const std::vector<float>& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size() && i < 8; ++i) s += fmt::format("{}{:.4g}", i ? ", " : "", v[i]);
  return s + (v.size() > 8 ? ", ...]" : "]");
}

}  // namespace

void register_engine(py::module_& m) {
  g_main_thread = py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>();
  // The truncation parser itself, so that Python can check an experiment file early with the engine's rule and
  // message.
  m.def("check_truncation", [](const std::string& name) { return std::string(truncation_name(truncation_from_name(name))); },
        py::arg("name"),
        "The canonical name of a truncation mode ('none', 'left', 'right'); ValueError listing them otherwise.");
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const c10::Error& e) {
      py::set_error(PyExc_RuntimeError, e.what_without_backtrace());
    } catch (const Interrupted&) {
      // EngineOptions::should_stop saw a signal: its handler's exception (KeyboardInterrupt for Ctrl-C) is
      // pending; raise KeyboardInterrupt if the handler did not raise.
      if (!PyErr_Occurred()) PyErr_SetNone(PyExc_KeyboardInterrupt);
    }
  });

  readonly(py::class_<RopeScaling>(m, "RopeScaling", "RoPE frequency scaling of a model (type '' = none, 'llama3')."),
           "type", &RopeScaling::type, "factor", &RopeScaling::factor,
           "low_freq_factor", &RopeScaling::low_freq_factor, "high_freq_factor", &RopeScaling::high_freq_factor,
           "original_max_position_embeddings", &RopeScaling::original_max_position_embeddings);

  readonly(py::class_<Config>(m, "ModelConfig", "Sizes and settings of a LLaMA-family model (read-only)."),
           "dim", &Config::dim, "hidden_dim", &Config::hidden_dim, "n_layers", &Config::n_layers,
           "n_heads", &Config::n_heads, "n_kv_heads", &Config::n_kv_heads, "vocab_size", &Config::vocab_size,
           "max_seq_len", &Config::max_seq_len, "head_dim", &Config::head_dim, "norm_eps", &Config::norm_eps,
           "rope_theta", &Config::rope_theta, "rope_scaling", &Config::rope_scaling,
           "tie_word_embeddings", &Config::tie_word_embeddings, "bos_id", &Config::bos_id,
           "eos_ids", &Config::eos_ids)
      .def("__repr__", [](const Config& c) {
        return fmt::format("ModelConfig(dim={}, hidden_dim={}, n_layers={}, n_heads={}, n_kv_heads={}, "
                           "vocab_size={}, max_seq_len={}, head_dim={})",
                           c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size, c.max_seq_len,
                           c.head_dim);
      });

  py::class_<GenerateResult>(m, "GenerateResult", "One greedy generation.")
      .def_property_readonly("text", [](const GenerateResult& r) { return to_str(r.text); },
                             "Decoded continuation, cut before a stop string ('' without a tokenizer).")
      .def_readonly("token_ids", &GenerateResult::token_ids, "Generated ids (EOS / the stop-completing token kept).")
      .def_readonly("logprobs", &GenerateResult::logprobs, "Natural-log probability of each generated id.")
      .def_readonly("truncated", &GenerateResult::truncated, "Prompt tokens dropped by truncation.")
      .def_readonly("finish_reason", &GenerateResult::finish_reason, "'length', 'stop', 'eos' or 'window'.")
      .def("__repr__", [](const GenerateResult& r) {
        return fmt::format("GenerateResult(text={}, n_tokens={}, finish_reason='{}', truncated={})",
                           std::string(py::repr(to_str(r.text))), r.token_ids.size(), r.finish_reason, r.truncated);
      });

  py::class_<ScoreResult>(m, "ScoreResult", "Log-probability of one continuation given the prompt.")
      .def_readonly("sum", &ScoreResult::sum, "Sum of the continuation tokens' log-probs (natural log).")
      .def_readonly("mean", &ScoreResult::mean, "sum / number of continuation tokens.")
      .def_readonly("first", &ScoreResult::first, "Probability (not log) of the continuation's first token.")
      .def_readonly("first_logprob", &ScoreResult::first_logprob, "log(first).")
      .def_readonly("token_ids", &ScoreResult::token_ids, "The scored continuation tokens.")
      .def_readonly("logprobs", &ScoreResult::logprobs, "Log-prob of each scored token.")
      .def_readonly("truncated", &ScoreResult::truncated, "Prompt tokens dropped by truncation.")
      .def_readonly("greedy", &ScoreResult::greedy,
                    "Whether every scored token is its position's argmax (ties: the lowest id): greedy decoding "
                    "would produce the continuation (lm-eval's is_greedy).")
      .def("__repr__", [](const ScoreResult& r) {
        return fmt::format("ScoreResult(sum={:.6g}, mean={:.6g}, first={:.6g}, logprobs={})", r.sum, r.mean, r.first,
                           repr_floats(r.logprobs));
      });

  py::class_<Engine, std::shared_ptr<Engine>>(m, "Engine", R"doc(
LLaMA-family inference on libtorch: greedy generation, continuation scoring, hidden states, logits.

``path`` is an HF model directory (config.json + safetensors; its tokenizer.model / tokenizer.json is used
unless ``tokenizer`` is given), a GGUF file (its own tokenizer is used unless ``tokenizer`` is given) or a
llama2.c ``.bin`` checkpoint (pass ``tokenizer=`` for text input).
Prompts are str (tokenized with BOS) or lists of token ids (used as given).

    engine = crossicl.Engine("stories260K.bin", tokenizer="tok512.model")
    out = engine.generate(["Once upon a time"], max_new_tokens=20, stop=["."])
    out[0].text, out[0].token_ids, out[0].logprobs
    scores = engine.score("The capital of France is", [" Paris", " Rome"])   # .sum .mean .first
    h = engine.hidden_states(["a text"], layers=[0, -1], pooling="mean")     # [1, 2, dim]

Threads: any method may be called from any thread while another call is in flight; the calls are serialised
(one runs at a time, each gives the result it would give alone) and release the GIL while they wait and run.
Ctrl-C raises KeyboardInterrupt in a call made from the main thread, also while it waits for another thread's
call. Calling the engine from its own ``progress`` callback raises ValueError.
)doc")
      .def(py::init(&make_engine), py::arg("path"), py::arg("tokenizer") = py::none(), py::kw_only(),
           py::arg("dtype") = "float32", py::arg("device") = "cpu", py::arg("threads") = 0, py::arg("n_ctx") = 0,
           py::arg("max_batch_tokens") = 1024, py::arg("cache_bytes") = EngineOptions{}.cache_bytes,
           py::arg("progress") = py::none(), py::arg("quantize") = "none", py::arg("calibration") = py::none(),
           py::arg("smooth_alpha") = EngineOptions{}.smooth_alpha, py::arg("keep_float") = std::vector<std::string>{},
           "Loads the model (and tokenizer). dtype 'float32' or 'bfloat16'; device 'cpu' or 'cuda'; threads = torch "
           "intra-op threads (0 = torch default; capped at the CPUs this process may use; process-wide: torch has "
           "one setting for every Engine and for the caller's own torch work); n_ctx = context window (0 = the "
           "model's); max_batch_tokens = most tokens per forward pass; cache_bytes = bytes of KV kept by the "
           "prefix cache (0 = off); progress = callable(tokens) called after each forward pass with the tokens it "
           "ran (e.g. tqdm.update); quantize = 'none' or 'int8' (W8A8 Linear layers: int8 weights per output channel, "
           "activations per token; float32 on the cpu only); calibration = texts run once at load to calibrate int8 "
           "smoothing (None = crossicl's built-in texts); smooth_alpha = SmoothQuant strength in [0, 1] (0 = no "
           "smoothing); keep_float = int8 Linear layers left in float32, any of 'qkv', 'o', 'gate_up', 'down' (every "
           "block) and 'head' (LM head and embeddings); raises crossicl.LoadError for bad files, ValueError "
           "for bad options.")
      .def_property_readonly("config", [](const Engine& e) { return e.config(); }, "The model's ModelConfig.")
      .def_property_readonly("tokenizer", [](const Engine& e) { return e.tokenizer(); },
                             "The crossicl.Tokenizer, or None when opened without one.")
      .def_property_readonly("n_ctx", &Engine::n_ctx, "Context window in tokens.")
      .def_property_readonly("threads", &Engine::threads,
                             "The intra-op threads this Engine set: threads= capped at the CPUs this process may "
                             "use (0 = torch default).")
      .def_property_readonly("dtype", [](const Engine& e) { return std::string(c10::toString(e.model().dtype())); })
      .def_property_readonly("device", [](const Engine& e) { return e.model().device().str(); })
      .def_property_readonly(
          "quantize", [](const Engine& e) { return std::string(quantize_name(e.model().quantize())); },
          "'none' or 'int8' (the quantize= the Engine was opened with).")
      .def_property_readonly("weight_bytes", [](const Engine& e) { return e.model().weight_bytes(); },
                             "Bytes of the model's parameters held (int8 weights and their scales with "
                             "quantize='int8'; shared tensors counted once).")
      .def("encode",
           [](const Engine& e, const py::object& text) {
             const std::string s = utf8_of(text, "prompt", 0);
             return released([&] { return e.encode(s); });
           },
           py::arg("text"), "BOS + token ids of text (the engine's prompt tokenization).")
      .def(
          "generate",
          [](Engine& e, const py::object& prompts, std::int64_t max_new_tokens, std::vector<std::string> stop,
             bool stop_at_eos, const std::string& truncation) {
            Prompts p = prompts_of(prompts, "prompt");
            GenerateOptions o;
            o.max_new_tokens = max_new_tokens;
            o.stop = std::move(stop);
            o.stop_at_eos = stop_at_eos;
            o.truncation = truncation_from_name(truncation);
            return released([&] { return p.is_text ? e.generate(p.texts, o) : e.generate(p.ids, o); });
          },
          py::arg("prompts"), py::kw_only(), py::arg("max_new_tokens") = 10,
          py::arg("stop") = std::vector<std::string>{"\n"}, py::arg("stop_at_eos") = true,
          py::arg("truncation") = "none",
          "Greedy continuation of each prompt -> list[GenerateResult]. stop: strings ending the text (cut there); "
          "truncation: 'none' (ValueError when a prompt exceeds n_ctx), 'left' or 'right' (keep room for "
          "max_new_tokens).")
      .def(
          "score",
          [](Engine& e, const py::object& prompt, const py::object& continuations, const std::string& truncation) {
            // Engine::score is score_batch of one prompt (its errors for a missing tokenizer or an empty
            // prompt come first, even without continuations)
            const ScoreOptions o = score_options(truncation);
            ScoreArgs a = score_args_one(prompt, continuations);
            if (a.prompts.is_text)
              return released([&] { return e.score(a.prompts.texts[0], a.continuations[0].texts, o); });
            return released([&] { return e.score(a.prompts.ids[0], a.continuations[0].ids, o); });
          },
          py::arg("prompt"), py::arg("continuations"), py::kw_only(), py::arg("truncation") = "none",
          "Log-probs of each continuation after the prompt -> list[ScoreResult] (.sum, .mean, .first = "
          "probability of the first continuation token). The prompt is computed once; text is tokenized jointly "
          "as prompt + continuation and the tokens after the common prefix with the prompt's tokens are scored.")
      .def(
          "score_batch",
          [](Engine& e, const py::object& prompts, const py::object& continuations, const std::string& truncation) {
            ScoreArgs a = score_args(prompts, continuations);
            return score_batch(e, a, score_options(truncation));
          },
          py::arg("prompts"), py::arg("continuations"), py::kw_only(), py::arg("truncation") = "none",
          "score() for many prompts -> list (per prompt) of list[ScoreResult]. continuations: one list per prompt, "
          "or a single list applied to every prompt. Prompts and candidates are packed into forward passes; shared "
          "prefixes come from the prefix cache.")
      .def(
          "cache_stats",
          [](const Engine& e) {
            const CacheStats s = released([&] { return e.cache_stats(); });  // waits for a call in flight
            py::dict d;
            d["hit_tokens"] = s.hit_tokens;
            d["computed_tokens"] = s.computed_tokens;
            d["cached_bytes"] = s.cached_bytes;
            d["evictions"] = s.evictions;
            d["blocks"] = s.blocks;
            d["block_tokens"] = s.block_tokens;
            d["capacity_bytes"] = s.capacity_bytes;
            return d;
          },
          "Prefix-cache counters -> dict: hit_tokens (prompt tokens taken from the cache), computed_tokens "
          "(prefill tokens run), cached_bytes, evictions, blocks, block_tokens, capacity_bytes.")
      .def("clear_cache", [](Engine& e) { released([&] { e.clear_cache(); }); },
           "Drops every cached prefix and resets the cache_stats counters.")
      .def(
          "hidden_states",
          [](Engine& e, const py::object& prompts, std::vector<int> layers, const std::string& pooling,
             std::int64_t begin, std::int64_t end, const std::string& truncation) -> py::object {
            Prompts p = prompts_of(prompts, "prompt");
            HiddenStatesOptions o;
            o.layers = std::move(layers);
            o.pooling = pooling_from_name(pooling);
            o.begin = begin;
            o.end = end;
            o.truncation = truncation_from_name(truncation);
            std::vector<at::Tensor> hs =
                released([&] { return p.is_text ? e.hidden_states(p.texts, o) : e.hidden_states(p.ids, o); });
            if (o.pooling == Pooling::None) {
              py::list out;
              for (const auto& h : hs) out.append(tensor_to_numpy(h));
              return py::object(std::move(out));
            }
            if (hs.empty())
              return py::array_t<float>(std::vector<py::ssize_t>{0, static_cast<py::ssize_t>(o.layers.size()),
                                                                  static_cast<py::ssize_t>(e.config().dim)});
            return tensor_to_numpy(at::stack(hs, 0));
          },
          py::arg("prompts"), py::kw_only(), py::arg("layers") = std::vector<int>{-1}, py::arg("pooling") = "mean",
          py::arg("begin") = 0, py::arg("end") = -1, py::arg("truncation") = "none",
          "Hidden states as float32 numpy: [n_prompts, n_layers, dim] for pooling 'mean' (tokens [begin, end), "
          "end=-1 = all) or 'last'; for 'none' a list of [n_layers, n_tokens, dim]. Layer 0 = embeddings, i = "
          "output of block i, -1 / n_layers = final-norm output (as HF output_hidden_states).")
      .def("resolve_layers", &Engine::resolve_layers, py::arg("layers"),
           "Layer numbers made absolute (0 .. n_layers; negatives count from the end, -1 = n_layers), with "
           "hidden_states' rule: ValueError for an empty list or a layer outside [-(n_layers + 1), n_layers].")
      .def(
          "logits",
          [](Engine& e, const py::object& token_ids) {
            Ids ids = ids_of(token_ids, "token_ids", 0);
            at::Tensor l = released([&] { return e.logits(ids); });
            return tensor_to_numpy(l);
          },
          py::arg("token_ids"), "Logits of every position of one id sequence -> float32 numpy [n, vocab].");
}

}  // namespace crossicl::bindings
