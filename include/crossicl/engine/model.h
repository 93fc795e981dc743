// A loaded LLaMA-family model: immutable weights (memory-mapped where the file format allows) and its config.
// A Model holds no per-request state; Contexts (KV caches) run the forward pass over it (Context::decode, which
// runs src/engine/transformer.cpp), so one Model can be shared by several Contexts and threads. See context.h for
// running it and engine.h for the facade.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include "crossicl/engine/config.h"
#include "crossicl/engine/weights.h"

namespace crossicl {

/// How the Linear weights are stored and multiplied.
enum class Quantize {
  None,  // in the model's dtype ("none")
  Int8,  // W8A8 ("int8"): int8 weights, symmetric per output channel, quantised once at load; activations
         // quantised per token before each product; int8 x int8 -> int32 GEMM rescaled to float32. Norms, RoPE,
         // attention and softmax stay float32. Needs dtype float32 on the cpu
};

/// Parses "none" or "int8". Throws InvalidArgument naming the unknown name and the valid ones.
///
///   auto q = crossicl::quantize_from_name("int8");  // Quantize::Int8
Quantize quantize_from_name(std::string_view name);
/// The name of a quantisation ("none", "int8").
std::string_view quantize_name(Quantize quantize);

/// How Quantize::Int8 prepares the weights.
struct Int8Options {
  std::vector<std::vector<std::int32_t>> calibration;  // token id sequences run once in float32 at load to
                                                       // measure each Linear input's channel maxima for
                                                       // smoothing; empty = 512 fixed pseudo-random ids (Engine
                                                       // passes its calibration texts, engine.h)
  double smooth_alpha = 0.5;  // SmoothQuant migration strength in [0, 1]: 0 = no smoothing (no calibration
                              // run), 1 moves all of the activations' range into the weights
  std::vector<std::string> keep_float;  // Linear layers left in float32 (their QuantWeight empty): any of "qkv",
                                        // "o", "gate_up", "down" (in every block) and "head" (the LM head and,
                                        // tied or not, the embeddings); InvalidArgument for another name
};

/// How to load a model.
struct ModelOptions {
  c10::ScalarType dtype = at::kFloat;  // compute and storage dtype: float32 or bfloat16 (float16 on cuda)
  std::string device = "cpu";          // "cpu" or "cuda[:index]" (needs a CUDA build of torch)
  Quantize quantize = Quantize::None;  // Int8: W8A8 Linear layers (float32 on the cpu only; InvalidArgument else)
  Int8Options int8;                    // calibration and smoothing of Quantize::Int8 (ignored otherwise)
};

/// A Linear weight quantised to int8, symmetric per output channel: w[o, i] ~ q[o, i] * scale[o] with
/// scale[o] = max_i |w[o, i]| / 127 (0 for an all-zero row) and q = round-half-even(w / scale) in [-127, 127].
struct QuantWeight {
  at::Tensor q;      // [out, in] int8; the Linear layers' is a transposed view of [in, out] rows (the layout the
                     // int8 GEMM reads fastest), the LM head's the embedding table's own rows
  at::Tensor scale;  // [out] float32
};

/// The int8 Linear weights of one block (Quantize::Int8), fused as LayerWeights::wqkv and w13; one that
/// Int8Options::keep_float leaves in float32 has an undefined `q` (LayerWeights keeps its float tensor).
struct QuantLayer {
  QuantWeight wqkv;  // [(n_heads + 2 * n_kv_heads) * head_dim, dim]
  QuantWeight wo;    // [dim, n_heads * head_dim]
  QuantWeight w13;   // [2 * hidden_dim, dim]
  QuantWeight w2;    // [dim, hidden_dim]
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

  /// Wraps already loaded weights, moving them to `device` when it is not the CPU, and quantising them
  /// (`quantize`). With Quantize::Int8 the float Linear weights (LayerWeights::wq .. w13) are released (undefined
  /// tensors) and quant_layers() holds them; the LM head and the token embeddings become one int8 table per
  /// matrix (quant_output(), quant_embeddings(); weights().output and tok_embeddings undefined), the embedding
  /// rows dequantised on lookup. Unless int8.smooth_alpha is 0, the float model first runs int8.calibration and its
  /// blocks are smoothed (SmoothQuant, detail/engine_quant.h) before they are quantised: the RMSNorm weights of
  /// weights().layers then differ from the file's, and the float function is unchanged up to rounding.
  Model(Weights weights, c10::Device device, Quantize quantize = Quantize::None, const Int8Options& int8 = {});

  const Config& config() const { return weights_.config; }
  const Weights& weights() const { return weights_; }
  c10::ScalarType dtype() const { return weights_.dtype; }
  c10::Device device() const { return device_; }
  /// RoPE inverse frequencies, float32 on the model's device.  // [head_dim / 2]
  const at::Tensor& inv_freq() const { return inv_freq_; }
  Quantize quantize() const { return quantize_; }
  /// The int8 Linear weights per block (Quantize::Int8), else empty.
  const std::vector<QuantLayer>& quant_layers() const { return quant_layers_; }
  /// The int8 LM head [vocab_size, dim] (Quantize::Int8), else undefined tensors.
  const QuantWeight& quant_output() const { return quant_output_; }
  /// The int8 token embeddings [vocab_size, dim] (Quantize::Int8; the same tensors as quant_output() when the
  /// model ties them), else undefined tensors.
  const QuantWeight& quant_embeddings() const { return quant_embeddings_; }
  /// Bytes of the parameters held (float and int8 tensors and scales; a tensor shared by two roles, or a view
  /// of a fused tensor, counted once).
  std::int64_t weight_bytes() const;

 private:
  Weights weights_;
  c10::Device device_;
  at::Tensor inv_freq_;  // [head_dim / 2]
  Quantize quantize_ = Quantize::None;
  std::vector<QuantLayer> quant_layers_;
  QuantWeight quant_output_;
  QuantWeight quant_embeddings_;
};

}  // namespace crossicl
