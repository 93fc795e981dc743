#include "crossicl/engine/model.h"

#include <filesystem>

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <fmt/format.h>

#include "crossicl/core/error.h"
#include "detail/engine_mmap.h"
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
  const std::int64_t nq = l.wq.size(0), nk = l.wk.size(0), nv = l.wv.size(0), h = l.w1.size(0);
  l.wq = l.wqkv.narrow(0, 0, nq);
  l.wk = l.wqkv.narrow(0, nq, nk);
  l.wv = l.wqkv.narrow(0, nq + nk, nv);
  l.w1 = l.w13.narrow(0, 0, h);
  l.w3 = l.w13.narrow(0, h, h);
}

}  // namespace

std::shared_ptr<const Model> Model::load(const std::string& path, const ModelOptions& options) {
  const c10::ScalarType dtype = options.dtype;
  dtype_name(dtype);  // InvalidArgument for a dtype other than float32, bfloat16 and float16
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
  for (LayerWeights& l : weights_.layers) fuse_projections(l);
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
  inv_freq_ = detail::rope_inv_freq(weights_.config).to(device_);
}

}  // namespace crossicl
