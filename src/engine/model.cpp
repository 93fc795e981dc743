#include "crossicl/engine/model.h"

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <set>

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <fmt/format.h>

#include "crossicl/core/error.h"
#include "detail/engine_mmap.h"
#include "detail/engine_ops.h"
#include "detail/engine_quant.h"
#include "detail/enum_names.h"

namespace crossicl {
namespace {

constexpr std::array<std::string_view, 2> kQuantizeNames = {"none", "int8"};

c10::Device parse_device(const std::string& name) {
  c10::Device device(c10::kCPU);
  try {
    device = c10::Device(name);
  } catch (const std::exception&) {
    throw InvalidArgument(fmt::format("unknown device '{}' (expected cpu or cuda[:index])", name));
  }
  if (device.is_cuda() && !at::hasCUDA())
    throw InvalidArgument(fmt::format("device '{}' is not available: this torch has no CUDA support", name));
  if (device.is_cuda() && device.has_index() && static_cast<std::size_t>(device.index()) >= at::getNumGPUs())
    throw InvalidArgument(
        fmt::format("device '{}' is not available: this machine has {} CUDA device(s)", name, at::getNumGPUs()));
  if (!device.is_cpu() && !device.is_cuda())
    throw InvalidArgument(fmt::format("unsupported device '{}' (expected cpu or cuda[:index])", name));
  return device;
}

// Makes wq/wk/wv views of the rows of wqkv and w1/w3 views of w13, where both the fused tensor and its parts are
// held (an int8 model drops the float ones).
void view_parts(LayerWeights& l) {
  if (l.wqkv.defined() && l.wq.defined()) {
    const std::int64_t nq = l.wq.size(0), nk = l.wk.size(0), nv = l.wv.size(0);
    l.wq = l.wqkv.narrow(0, 0, nq);
    l.wk = l.wqkv.narrow(0, nq, nk);
    l.wv = l.wqkv.narrow(0, nq + nk, nv);
  }
  if (l.w13.defined() && l.w1.defined()) {
    const std::int64_t h = l.w1.size(0);
    l.w1 = l.w13.narrow(0, 0, h);
    l.w3 = l.w13.narrow(0, h, h);
  }
}

// Fuses wq/wk/wv into wqkv and w1/w3 into w13 (see LayerWeights) and makes the parts views of the fused rows.
// Pages of memory-mapped parts are released once copied, so the weights are held once.
void fuse_projections(LayerWeights& l) {
  if (!l.wqkv.defined()) {
    l.wqkv = at::cat({l.wq, l.wk, l.wv}, 0);
    for (const at::Tensor* t : {&l.wq, &l.wk, &l.wv}) detail::release_mapped_pages(*t);
  }
  if (!l.w13.defined()) {
    l.w13 = at::cat({l.w1, l.w3}, 0);
    for (const at::Tensor* t : {&l.w1, &l.w3}) detail::release_mapped_pages(*t);
  }
  view_parts(l);
}

constexpr std::array<std::string_view, 5> kKeepFloatNames = {"qkv", "o", "gate_up", "down", "head"};

// Int8Options::keep_float as one flag per name of kKeepFloatNames; InvalidArgument names an unknown one.
std::array<bool, 5> keep_float_flags(const std::vector<std::string>& names) {
  std::array<bool, 5> keep{};
  for (const std::string& n : names) {
    const auto it = std::find(kKeepFloatNames.begin(), kKeepFloatNames.end(), n);
    if (it == kKeepFloatNames.end())
      throw InvalidArgument(fmt::format("keep_float: unknown layer '{}' (expected any of qkv, o, gate_up, down, head)", n));
    keep[static_cast<std::size_t>(it - kKeepFloatNames.begin())] = true;
  }
  return keep;
}

// Replaces the float Linear weights of every block by int8 ones (Quantize::Int8) and releases the float ones
// (their memory-mapped pages too), so the int8 weights are held alone; those `keep` names (kKeepFloatNames order)
// stay float32, with an empty QuantWeight.
std::vector<QuantLayer> quantize_layers(std::vector<LayerWeights>& layers, const std::array<bool, 5>& keep) {
  std::vector<QuantLayer> out;
  for (LayerWeights& l : layers) {
    auto quantized = [](at::Tensor& w, bool keep_it) {
      if (keep_it) return QuantWeight{};
      QuantWeight q = detail::quantize_linear(w);
      detail::release_mapped_pages(w);
      w = at::Tensor();
      return q;
    };
    QuantLayer q{quantized(l.wqkv, keep[0]), quantized(l.wo, keep[1]), quantized(l.w13, keep[2]),
                 quantized(l.w2, keep[3])};
    if (!keep[0]) l.wq = l.wk = l.wv = at::Tensor();
    if (!keep[2]) l.w1 = l.w3 = at::Tensor();
    out.push_back(std::move(q));
  }
  return out;
}

// Bytes of memory the kernel reports available (MemAvailable), or -1 when it cannot be read.
std::int64_t memory_available() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  std::int64_t kib = 0;
  std::string unit;
  while (f >> key >> kib >> unit)
    if (key == "MemAvailable:") return kib * 1024;
  return -1;
}

// Copies what every decode step streams, each block's four Linear weights (float, or int8 codes and scales) and
// the LM head, into one detail::HugePageArena, block by block, each part's old memory freed (or its mapped pages
// released) as it is replaced, so the weights are held once. Skipped when the weights still viewing a file
// mapping would need more than half the memory available as anonymous copies: such a model keeps reading its
// pages from the page cache.
void place_on_huge_pages(Weights& w, std::vector<QuantLayer>& q, QuantWeight& qout, QuantWeight& qemb) {
  auto each = [&](std::size_t layer, auto&& fn) {
    if (layer == w.layers.size()) {
      for (at::Tensor* t : {&w.output, &qout.q, &qout.scale}) fn(*t);
      return;
    }
    LayerWeights& l = w.layers[layer];
    for (at::Tensor* t : {&l.wqkv, &l.wo, &l.w13, &l.w2}) fn(*t);
    if (layer < q.size())
      for (QuantWeight* x : {&q[layer].wqkv, &q[layer].wo, &q[layer].w13, &q[layer].w2})
        for (at::Tensor* t : {&x->q, &x->scale}) fn(*t);
  };
  std::int64_t bytes = 0, mapped = 0;
  for (std::size_t i = 0; i <= w.layers.size(); ++i)
    each(i, [&](const at::Tensor& t) {
      bytes += detail::HugePageArena::bytes_for(t);
      if (detail::is_mapped_view(t)) mapped += detail::HugePageArena::bytes_for(t);
    });
  const std::int64_t available = mapped > 0 ? memory_available() : -1;
  if (available >= 0 && mapped > available / 2) return;
  const bool tied = w.output.defined() && w.output.is_same(w.tok_embeddings);
  const bool qtied = qout.q.defined() && qout.q.is_same(qemb.q);
  detail::HugePageArena arena(bytes);
  for (std::size_t i = 0; i <= w.layers.size(); ++i) {
    each(i, [&](at::Tensor& t) {
      at::Tensor c = arena.copy(t);
      if (c.is_same(t)) return;
      detail::release_mapped_pages(t);
      t = std::move(c);
    });
    if (i < w.layers.size()) view_parts(w.layers[i]);  // the old fused tensors go with their last views
  }
  if (tied) w.tok_embeddings = w.output;
  if (qtied) qemb = qout;
}

// 512 token ids in [0, vocab) from a fixed linear congruential sequence: calibration when none is given.
std::vector<std::vector<std::int32_t>> fixed_calibration(std::int64_t vocab) {
  std::uint64_t state = 0x9E3779B97F4A7C15ULL;
  std::vector<std::int32_t> ids;
  for (int i = 0; i < 512; ++i) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    ids.push_back(static_cast<std::int32_t>((state >> 33) % static_cast<std::uint64_t>(vocab)));
  }
  return {ids};
}

}  // namespace

Quantize quantize_from_name(std::string_view name) {
  return detail::parse_enum<Quantize>(kQuantizeNames, name, "quantize", detail::NameError::MustBe);
}

std::string_view quantize_name(Quantize quantize) { return detail::enum_name(kQuantizeNames, quantize); }

std::shared_ptr<const Model> Model::load(const std::string& path, const ModelOptions& options) {
  const c10::ScalarType dtype = options.dtype;
  dtype_name(dtype);  // InvalidArgument for a dtype other than float32, bfloat16 and float16
  const c10::Device device = parse_device(options.device);
  if (dtype == at::kHalf && device.is_cpu())
    throw InvalidArgument("dtype 'float16' is only supported on cuda; use float32 or bfloat16 on the cpu");
  if (options.quantize != Quantize::None && (dtype != at::kFloat || !device.is_cpu()))
    throw InvalidArgument(fmt::format("quantize '{}' needs dtype 'float32' on the cpu (got dtype '{}' on '{}')",
                                      quantize_name(options.quantize), dtype_name(dtype), options.device));
  namespace fs = std::filesystem;
  if (!fs::exists(path)) throw LoadError(fmt::format("{}: no such file or directory", path));
  Weights w = fs::is_directory(path) ? load_hf_dir(path, dtype)
              : is_gguf_file(path)    ? load_gguf(path, dtype)
                                      : load_llama2c(path, dtype);
  return std::make_shared<const Model>(std::move(w), device, options.quantize, options.int8);
}

Model::Model(Weights weights, c10::Device device, Quantize quantize, const Int8Options& int8)
    : weights_(std::move(weights)), device_(device) {
  weights_.config.validate("Model");
  for (LayerWeights& l : weights_.layers) fuse_projections(l);
  inv_freq_ = detail::rope_inv_freq(weights_.config);
  if (quantize == Quantize::Int8) {
    if (weights_.dtype != at::kFloat || !device_.is_cpu())
      throw InvalidArgument("quantize 'int8' needs float32 weights on the cpu");
    if (!(int8.smooth_alpha >= 0 && int8.smooth_alpha <= 1))
      throw InvalidArgument(fmt::format("smooth_alpha must be in [0, 1] (smooth_alpha={})", int8.smooth_alpha));
    if (int8.smooth_alpha > 0) {
      // this model is still float32 here (quantize_ None): the calibration runs the float forward pass
      const detail::ActStats stats =
          detail::calibrate(*this, int8.calibration.empty() ? fixed_calibration(weights_.config.vocab_size)
                                                            : int8.calibration);
      std::vector<at::Tensor> replaced;  // wo, w2 as loaded: memory-mapped for some formats
      for (const LayerWeights& l : weights_.layers) replaced.insert(replaced.end(), {l.wo, l.w2});
      detail::smooth_layers(weights_.layers, weights_.config, stats, int8.smooth_alpha);
      // smoothing read them (faulting mapped pages back in) and made new tensors: drop the old pages now
      for (const at::Tensor& t : replaced) detail::release_mapped_pages(t);
    }
    const std::array<bool, 5> keep = keep_float_flags(int8.keep_float);
    quant_layers_ = quantize_layers(weights_.layers, keep);
    quantize_ = Quantize::Int8;
    // The LM head per vocabulary row, which is also the per-row quantisation of the embedding table: a tied
    // model keeps one int8 table for both.
    if (!keep[4]) {
      const bool tied = weights_.output.is_same(weights_.tok_embeddings);
      quant_output_ = detail::quantize_rows(weights_.output);
      quant_embeddings_ = tied ? quant_output_ : detail::quantize_rows(weights_.tok_embeddings);
      for (const at::Tensor* t : {&weights_.output, &weights_.tok_embeddings}) detail::release_mapped_pages(*t);
      weights_.output = at::Tensor();
      weights_.tok_embeddings = at::Tensor();
    }
  }
  if (!device_.is_cpu()) {
    const bool tied = weights_.output.is_same(weights_.tok_embeddings);
    auto move = [&](at::Tensor& t) { t = t.to(device_); };
    move(weights_.tok_embeddings);
    move(weights_.norm);
    for (LayerWeights& l : weights_.layers) {
      for (at::Tensor* t : {&l.attention_norm, &l.wqkv, &l.wo, &l.ffn_norm, &l.w13, &l.w2}) move(*t);
      fuse_projections(l);  // the parts become views of the moved fused tensors
    }
    if (tied)
      weights_.output = weights_.tok_embeddings;
    else
      move(weights_.output);
  }
  if (device_.is_cpu()) place_on_huge_pages(weights_, quant_layers_, quant_output_, quant_embeddings_);
  inv_freq_ = inv_freq_.to(device_);
}

std::int64_t Model::weight_bytes() const {
  std::set<const void*> seen;  // storages counted (views of fused tensors and tied tables share one)
  std::int64_t bytes = 0;
  auto add = [&](const at::Tensor& t) {
    if (t.defined() && seen.insert(t.storage().data()).second) bytes += static_cast<std::int64_t>(t.storage().nbytes());
  };
  add(weights_.tok_embeddings);
  add(weights_.norm);
  add(weights_.output);
  for (const LayerWeights& l : weights_.layers)
    for (const at::Tensor* t : {&l.attention_norm, &l.ffn_norm, &l.wqkv, &l.wo, &l.w13, &l.w2}) add(*t);
  for (const QuantWeight* w : {&quant_output_, &quant_embeddings_}) {
    add(w->q);
    add(w->scale);
  }
  for (const QuantLayer& l : quant_layers_)
    for (const QuantWeight* w : {&l.wqkv, &l.wo, &l.w13, &l.w2}) {
      add(w->q);
      add(w->scale);
    }
  return bytes;
}

}  // namespace crossicl
