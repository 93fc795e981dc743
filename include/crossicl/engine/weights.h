// The parameter tensors of a LLaMA-family model and the loaders that read them: llama2.c checkpoints (legacy
// v0: 7 int32 header + fp32 weights), HF directories (config.json + model.safetensors, single or sharded) and
// GGUF files. Files are memory-mapped; a tensor whose stored dtype equals the requested dtype (and is suitably
// aligned) is a view of the mapped bytes (no copy), and each such tensor keeps its mapping alive.
//
// RoPE convention: the forward pass uses HF's rotate_half (dim i pairs with i + head_dim/2). llama2.c and GGUF
// rotate adjacent pairs (2i, 2i+1), so their wq/wk rows are permuted per head on load (the inverse of HF's
// convert_llama_weights_to_hf permute); every format then reproduces its reference implementation.
//
// Every size read from a file is checked against the file before use; a bad file throws LoadError naming the
// file, the tensor and the expected and actual values.
//
// Implemented by one .cpp per format: src/engine/llama2c.cpp (load_llama2c), safetensors.cpp (load_hf_dir),
// gguf_weights.cpp (load_gguf, is_gguf_file, and the gguf.h entry points that open a file; the GGUF container
// parser is gguf.cpp) and weights.cpp (parse_dtype, dtype_name, and the memory mapping of detail/engine_mmap.h
// that the loaders share). The header parsers need no torch (llama2c_header.cpp, safetensors_header.cpp), so the
// libFuzzer targets of tests/fuzz build them alone. A path that is not a regular file (a FIFO, a device) is
// refused before it is opened.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include "crossicl/engine/config.h"

namespace crossicl {

/// Weights of one transformer block; Linear weights are [out_features, in_features] as in HF.
struct LayerWeights {
  at::Tensor attention_norm;  // [dim]
  at::Tensor wq;              // [n_heads * head_dim, dim]
  at::Tensor wk;              // [n_kv_heads * head_dim, dim]
  at::Tensor wv;              // [n_kv_heads * head_dim, dim]
  at::Tensor wo;              // [dim, n_heads * head_dim]
  at::Tensor ffn_norm;        // [dim]
  at::Tensor w1;              // [hidden_dim, dim]  (HF gate_proj)
  at::Tensor w2;              // [dim, hidden_dim]  (HF down_proj)
  at::Tensor w3;              // [hidden_dim, dim]  (HF up_proj)
  // Set by Model (not by the loaders): the projections that read the same input, fused row-wise so that each is
  // one matrix product; wq/wk/wv and w1/w3 are then views of their rows.
  at::Tensor wqkv;            // [(n_heads + 2 * n_kv_heads) * head_dim, dim]  rows: wq, wk, wv
  at::Tensor w13;             // [2 * hidden_dim, dim]  rows: w1, w3
};

/// All parameters of a model plus the config they were read with.
struct Weights {
  Config config;
  at::Tensor tok_embeddings;          // [vocab_size, dim]
  std::vector<LayerWeights> layers;   // n_layers blocks
  at::Tensor norm;                    // [dim] final RMSNorm
  at::Tensor output;                  // [vocab_size, dim] classifier (same storage as tok_embeddings if tied)
  c10::ScalarType dtype = c10::ScalarType::Float;  // dtype of every tensor above
};

/// Reads a llama2.c legacy (v0) checkpoint. A negative vocab_size in the header means an untied classifier
/// follows the RoPE tables. norm_eps 1e-5, rope_theta 10000 (llama2.c's constants).
///
///   crossicl::Weights w = crossicl::load_llama2c("stories260K.bin", at::kFloat);
Weights load_llama2c(const std::string& path, c10::ScalarType dtype);

/// Reads an HF LLaMA directory: config.json and model.safetensors or model.safetensors.index.json + shards;
/// tensors stored as F32, F16 or BF16.
///
///   crossicl::Weights w = crossicl::load_hf_dir("SmolLM2-135M/", at::kFloat);
Weights load_hf_dir(const std::string& dir, c10::ScalarType dtype);

/// Reads a GGUF checkpoint of the "llama" architecture (llama.cpp tensor names; F32/F16/BF16 and the block
/// quantisations of crossicl/engine/gguf.h, dequantised to `dtype` on load). Another architecture, RoPE scaling
/// stored in the file, or a tensor of an unexpected shape throws LoadError naming it.
///
///   crossicl::Weights w = crossicl::load_gguf("SmolLM2-135M-Instruct.Q4_1.gguf", at::kFloat);
Weights load_gguf(const std::string& path, c10::ScalarType dtype);

/// Whether `path` is a file starting with the GGUF magic.
bool is_gguf_file(const std::string& path);

/// Parses a dtype name: "float32"/"f32"/"float", "bfloat16"/"bf16", "float16"/"f16"/"half".
/// Throws InvalidArgument naming the value otherwise.
c10::ScalarType parse_dtype(const std::string& name);

/// The name of a compute dtype: "float32" (at::kFloat), "bfloat16" (at::kBFloat16) or "float16" (at::kHalf).
/// Throws InvalidArgument for any other dtype.
std::string_view dtype_name(c10::ScalarType dtype);

}  // namespace crossicl
