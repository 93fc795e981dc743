#include "crossicl/engine/model.h"

#include <filesystem>

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <fmt/format.h>

#include "crossicl/core/error.h"
#include "detail/engine_ops.h"

namespace crossicl {
namespace {

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

}  // namespace

std::shared_ptr<const Model> Model::load(const std::string& path, const ModelOptions& options) {
  const c10::ScalarType dtype = parse_dtype(options.dtype);
  const c10::Device device = parse_device(options.device);
  if (dtype == at::kHalf && device.is_cpu())
    throw InvalidArgument("dtype 'float16' is only supported on cuda; use float32 or bfloat16 on the cpu");
  namespace fs = std::filesystem;
  if (!fs::exists(path)) throw LoadError(fmt::format("{}: no such file or directory", path));
  Weights w = fs::is_directory(path) ? load_hf_dir(path, dtype)
              : is_gguf_file(path)    ? load_gguf(path, dtype)
                                      : load_llama2c(path, dtype);
  return std::make_shared<const Model>(std::move(w), device);
}

Model::Model(Weights weights, c10::Device device) : weights_(std::move(weights)), device_(device) {
  weights_.config.validate("Model");
  if (!device_.is_cpu()) {
    const bool tied = weights_.output.is_same(weights_.tok_embeddings);
    auto move = [&](at::Tensor& t) { t = t.to(device_); };
    move(weights_.tok_embeddings);
    move(weights_.norm);
    for (LayerWeights& l : weights_.layers)
      for (at::Tensor* t : {&l.attention_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.ffn_norm, &l.w1, &l.w2, &l.w3}) move(*t);
    if (tied)
      weights_.output = weights_.tok_embeddings;
    else
      move(weights_.output);
  }
  inv_freq_ = detail::rope_inv_freq(weights_.config).to(device_);
}

}  // namespace crossicl
