// A loaded LLaMA-family model: immutable weights (memory-mapped where the file format allows) and its config.
// A Model holds no per-request state; Contexts (KV caches) run the forward pass over it (Context::decode, which
// runs src/engine/transformer.cpp), so one Model can be shared by several Contexts and threads. See context.h for
// running it and engine.h for the facade.
#pragma once

#include <memory>
#include <string>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include "crossicl/engine/config.h"
#include "crossicl/engine/weights.h"

namespace crossicl {

/// How to load a model.
struct ModelOptions {
  c10::ScalarType dtype = at::kFloat;  // compute and storage dtype: float32 or bfloat16 (float16 on cuda)
  std::string device = "cpu";          // "cpu" or "cuda[:index]" (needs a CUDA build of torch)
};

/// Immutable weights + config of a LLaMA-family decoder.
///
///   auto model = crossicl::Model::load("stories260K.bin");        // llama2.c checkpoint
///   auto model = crossicl::Model::load("SmolLM2-135M/", {at::kBFloat16});  // HF directory
class Model {
 public:
  /// Loads an HF directory (config.json + safetensors), a GGUF file or a llama2.c checkpoint file. Throws
  /// LoadError for a missing or malformed file, InvalidArgument for a bad dtype or an unavailable device.
  static std::shared_ptr<const Model> load(const std::string& path, const ModelOptions& options = {});

  /// Wraps already loaded weights, moving them to `device` when it is not the CPU.
  Model(Weights weights, c10::Device device);

  const Config& config() const { return weights_.config; }
  const Weights& weights() const { return weights_; }
  c10::ScalarType dtype() const { return weights_.dtype; }
  c10::Device device() const { return device_; }
  /// RoPE inverse frequencies, float32 on the model's device.  // [head_dim / 2]
  const at::Tensor& inv_freq() const { return inv_freq_; }

 private:
  Weights weights_;
  c10::Device device_;
  at::Tensor inv_freq_;  // [head_dim / 2]
};

}  // namespace crossicl
