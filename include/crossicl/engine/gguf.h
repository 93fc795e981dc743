// GGUF files (llama.cpp's model format, versions 2 and 3): header, typed metadata, tensor directory and the
// dequantisation of every common tensor type to float32. The reader parses an in-memory image of the file
// (normally a memory mapping owned by the caller) and checks every count, length, offset, alignment and tensor
// extent against the image before use: a corrupt or hostile file gives a LoadError naming the file and the
// byte offset, never an out-of-bounds read or a huge allocation. Needs no torch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "crossicl/engine/tokenizer.h"

namespace crossicl {

/// ggml tensor types (the values stored in GGUF files).
enum class GGMLType : std::uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15, BF16 = 30,
};

/// Name of a ggml type ("Q4_K"), or "type <n>" for an unknown one.
std::string ggml_type_name(std::uint32_t type);
/// Whether crossicl can dequantise this type (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K).
bool ggml_type_supported(std::uint32_t type);
/// Elements per block and bytes per block of a supported type; throws InvalidArgument for others.
std::int64_t ggml_block_size(GGMLType type);
std::int64_t ggml_type_size(GGMLType type);

/// Dequantises `n` elements (a multiple of the block size) stored as `type` at `src` into `dst`.
/// Throws InvalidArgument for an unsupported type or an n that is not a whole number of blocks.
void dequantize(GGMLType type, const std::uint8_t* src, float* dst, std::int64_t n);

/// One entry of the tensor directory.
struct GGUFTensorInfo {
  std::string name;                 // e.g. "blk.0.attn_q.weight"
  std::vector<std::int64_t> shape;  // ggml order: shape[0] varies fastest (a [out, in] matrix is {in, out})
  GGMLType type = GGMLType::F32;    // storage type
  std::uint64_t offset = 0;         // absolute byte offset of the data in the file image
  std::uint64_t nbytes = 0;         // bytes of the data
  std::int64_t numel = 0;           // number of elements
};

/// A parsed GGUF image.
///
///   auto map = ...;  // bytes of the file, kept alive by the caller
///   crossicl::GGUFReader gguf(map.data(), map.size(), "model.gguf");
///   std::string arch = gguf.get_string("general.architecture");
///   std::vector<float> w(gguf.tensor("token_embd.weight").numel);
///   gguf.read_f32(gguf.tensor("token_embd.weight"), w.data());
class GGUFReader {
 public:
  /// Parses the image [data, data + size). Throws LoadError naming `path` and the byte offset.
  GGUFReader(const std::uint8_t* data, std::size_t size, std::string path);

  std::uint32_t version() const { return version_; }
  std::uint64_t alignment() const { return alignment_; }
  const std::string& path() const { return path_; }

  /// Every metadata value as JSON (integers, floats, bools, strings, nested arrays).
  const nlohmann::json& metadata() const { return metadata_; }
  bool has(const std::string& key) const { return metadata_.contains(key); }
  /// GGUF value type of a key (0 = UINT8 ... 12 = FLOAT64; arrays: 9).
  std::uint32_t value_type(const std::string& key) const;
  /// Typed getters; throw LoadError naming the file and key when it is absent or of another type.
  std::string get_string(const std::string& key) const;
  std::int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;
  const nlohmann::json& get_array(const std::string& key) const;

  const std::vector<GGUFTensorInfo>& tensors() const { return tensors_; }
  bool has_tensor(const std::string& name) const { return index_.count(name) > 0; }
  /// Throws LoadError naming the tensor and the file when absent.
  const GGUFTensorInfo& tensor(const std::string& name) const;
  /// Raw bytes of a tensor inside the image.
  const std::uint8_t* tensor_data(const GGUFTensorInfo& t) const { return data_ + t.offset; }
  /// Dequantises a tensor into `dst` (t.numel floats). Throws LoadError for an unsupported type.
  void read_f32(const GGUFTensorInfo& t, float* dst) const;

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::string path_;
  std::uint32_t version_ = 0;
  std::uint64_t alignment_ = 32;
  nlohmann::json metadata_ = nlohmann::json::object();
  std::map<std::string, std::uint32_t> types_;
  std::vector<GGUFTensorInfo> tensors_;
  std::map<std::string, std::size_t> index_;
};

/// A GGUF file mapped read-only, with the reader of its image (the mapping lives as long as this object).
///
///   auto f = crossicl::GGUFFile::open("model.gguf");
///   std::string arch = f->reader().get_string("general.architecture");
class GGUFFile {
 public:
  /// Maps and parses `path`. Throws LoadError naming the file (and the byte offset of a parse error).
  static std::unique_ptr<GGUFFile> open(const std::string& path);

  const GGUFReader& reader() const { return *reader_; }

 private:
  GGUFFile() = default;
  std::shared_ptr<const void> mapping_;  // keeps the mapped bytes alive
  std::unique_ptr<GGUFReader> reader_;
};

/// The tokenizer arrays of a GGUF file's `tokenizer.ggml.*` metadata (model, tokens, scores, token types, merges,
/// special ids, add_bos/add_eos, pre). Throws LoadError naming the file and key when one is missing or mistyped,
/// and naming the index when a token or merge is not valid UTF-8 (GGUF strings are raw bytes).
VocabArrays vocab_from_gguf(const GGUFReader& gguf);

/// The tokenizer of a GGUF file (maps the file, reads its metadata). Throws LoadError naming the file.
std::unique_ptr<Tokenizer> tokenizer_from_gguf(const std::string& path);

}  // namespace crossicl
