#include "crossicl/engine/gguf.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include <fmt/format.h>

#include "crossicl/core/error.h"
#include "detail/utf8.h"

namespace crossicl {

namespace {

enum ValueType : std::uint32_t {
  kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7, kString = 8, kArray = 9,
  kU64 = 10, kI64 = 11, kF64 = 12,
};

constexpr int kMaxArrayDepth = 4;
constexpr std::uint32_t kMaxDims = 4;  // GGML_MAX_DIMS

// Bounds-checked little-endian cursor over the file image.
class Cursor {
 public:
  Cursor(const std::uint8_t* data, std::size_t size, const std::string& path) : d_(data), n_(size), path_(path) {}

  std::size_t pos() const { return p_; }
  std::size_t left() const { return n_ - p_; }

  [[noreturn]] void fail(const std::string& what) const {
    throw LoadError(fmt::format("{}: corrupt GGUF at byte {}: {}", path_, p_, what));
  }
  void need(std::uint64_t bytes, const char* what) const {
    if (bytes > left()) fail(fmt::format("{} needs {} bytes, only {} left in the file", what, bytes, left()));
  }
  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v{};
    for (std::size_t i = 0; i < sizeof(T); ++i) v |= static_cast<T>(static_cast<T>(d_[p_ + i]) << (8 * i));
    p_ += sizeof(T);
    return v;
  }
  float read_f32(const char* what) {
    const auto bits = read<std::uint32_t>(what);
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
  }
  double read_f64(const char* what) {
    const auto bits = read<std::uint64_t>(what);
    double f;
    std::memcpy(&f, &bits, 8);
    return f;
  }
  std::string read_string(const char* what) {
    const auto len = read<std::uint64_t>(what);
    need(len, what);
    std::string s(reinterpret_cast<const char*>(d_ + p_), static_cast<std::size_t>(len));
    p_ += static_cast<std::size_t>(len);
    return s;
  }

 private:
  const std::uint8_t* d_;
  std::size_t n_;
  const std::string& path_;
  std::size_t p_ = 0;
};

std::uint64_t scalar_size(std::uint32_t type) {
  switch (type) {
    case kU8: case kI8: case kBool: return 1;
    case kU16: case kI16: return 2;
    case kU32: case kI32: case kF32: return 4;
    case kU64: case kI64: case kF64: return 8;
    case kString: return 8;  // at least the length field
    case kArray: return 12;  // at least type + count
    default: return 0;
  }
}

nlohmann::json read_value(Cursor& c, std::uint32_t type, int depth) {
  switch (type) {
    case kU8: return c.read<std::uint8_t>("uint8 value");
    case kI8: return static_cast<std::int8_t>(c.read<std::uint8_t>("int8 value"));
    case kU16: return c.read<std::uint16_t>("uint16 value");
    case kI16: return static_cast<std::int16_t>(c.read<std::uint16_t>("int16 value"));
    case kU32: return c.read<std::uint32_t>("uint32 value");
    case kI32: return static_cast<std::int32_t>(c.read<std::uint32_t>("int32 value"));
    case kU64: return c.read<std::uint64_t>("uint64 value");
    case kI64: return static_cast<std::int64_t>(c.read<std::uint64_t>("int64 value"));
    case kF32: return c.read_f32("float32 value");
    case kF64: return c.read_f64("float64 value");
    case kBool: {
      const auto b = c.read<std::uint8_t>("bool value");
      if (b > 1) c.fail(fmt::format("bool value {} is neither 0 nor 1", b));
      return b == 1;
    }
    case kString: return c.read_string("string value");
    case kArray: {
      if (depth >= kMaxArrayDepth) c.fail("arrays nested too deeply");
      const auto elem = c.read<std::uint32_t>("array element type");
      const auto count = c.read<std::uint64_t>("array length");
      const std::uint64_t min_size = scalar_size(elem);
      if (min_size == 0) c.fail(fmt::format("unknown array element type {}", elem));
      if (count > c.left() / min_size)
        c.fail(fmt::format("array of {} elements of type {} cannot fit in the {} bytes left", count, elem, c.left()));
      nlohmann::json arr = nlohmann::json::array();
      arr.get_ref<nlohmann::json::array_t&>().reserve(static_cast<std::size_t>(count));
      for (std::uint64_t i = 0; i < count; ++i) arr.push_back(read_value(c, elem, depth + 1));
      return arr;
    }
    default: c.fail(fmt::format("unknown metadata value type {}", type));
  }
}

}  // namespace

GGUFReader::GGUFReader(const std::uint8_t* data, std::size_t size, std::string path)
    : data_(data), size_(size), path_(std::move(path)) {
  Cursor c(data_, size_, path_);
  if (size_ < 4 || std::string(reinterpret_cast<const char*>(data_), 4) != "GGUF")
    throw LoadError(fmt::format("{}: not a GGUF file (no 'GGUF' magic)", path_));
  c.read<std::uint32_t>("magic");
  version_ = c.read<std::uint32_t>("version");
  if (version_ != 2 && version_ != 3)
    throw LoadError(fmt::format("{}: unsupported GGUF version {} (supported: 2, 3)", path_, version_));
  const auto n_tensors = c.read<std::uint64_t>("tensor count");
  const auto n_kv = c.read<std::uint64_t>("metadata count");
  // Each key/value takes at least 8 (key length) + 4 (type) + 1 bytes, each tensor info at least 8 + 4 + 4 + 8.
  if (n_kv > c.left() / 13) c.fail(fmt::format("metadata count {} cannot fit in the file", n_kv));
  if (n_tensors > c.left() / 24) c.fail(fmt::format("tensor count {} cannot fit in the file", n_tensors));

  for (std::uint64_t i = 0; i < n_kv; ++i) {
    std::string key = c.read_string("metadata key");
    const auto type = c.read<std::uint32_t>("metadata value type");
    if (metadata_.contains(key)) c.fail(fmt::format("duplicate metadata key '{}'", key));
    metadata_[key] = read_value(c, type, 0);
    types_[key] = type;
  }
  if (metadata_.contains("general.alignment")) {
    const auto& a = metadata_["general.alignment"];
    if (!a.is_number_unsigned() || a.get<std::uint64_t>() == 0 || (a.get<std::uint64_t>() & (a.get<std::uint64_t>() - 1)))
      throw LoadError(fmt::format("{}: general.alignment must be a power of two, got {}", path_, a.dump()));
    alignment_ = a.get<std::uint64_t>();
  }

  struct Raw {
    std::uint64_t rel_offset;
    std::size_t info_pos;
  };
  std::vector<Raw> raw;
  tensors_.reserve(static_cast<std::size_t>(n_tensors));
  for (std::uint64_t i = 0; i < n_tensors; ++i) {
    const std::size_t info_pos = c.pos();
    GGUFTensorInfo t;
    t.name = c.read_string("tensor name");
    const auto n_dims = c.read<std::uint32_t>("tensor dimension count");
    if (n_dims == 0 || n_dims > kMaxDims)
      c.fail(fmt::format("tensor '{}' has {} dimensions (1 to {} allowed)", t.name, n_dims, kMaxDims));
    std::uint64_t numel = 1;
    for (std::uint32_t d = 0; d < n_dims; ++d) {
      const auto dim = c.read<std::uint64_t>("tensor dimension");
      if (dim == 0 || dim > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) ||
          numel > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) / dim)
        c.fail(fmt::format("tensor '{}' has an invalid dimension {}", t.name, dim));
      numel *= dim;
      t.shape.push_back(static_cast<std::int64_t>(dim));
    }
    const auto type = c.read<std::uint32_t>("tensor type");
    if (!ggml_type_supported(type))
      throw LoadError(fmt::format("{}: tensor '{}' has ggml type {}, which crossicl cannot dequantise", path_, t.name,
                                  ggml_type_name(type)));
    t.type = static_cast<GGMLType>(type);
    const std::int64_t block = ggml_block_size(t.type);
    if (t.shape[0] % block != 0)
      c.fail(fmt::format("tensor '{}' of type {} has rows of {} elements, not a multiple of {}", t.name,
                         ggml_type_name(type), t.shape[0], block));
    t.numel = static_cast<std::int64_t>(numel);
    // numel < 2^63, but its bytes can still overflow u64 (an F32 [2^56, 64] would wrap to 0 and pass the checks).
    if (__builtin_mul_overflow(numel / static_cast<std::uint64_t>(block),
                               static_cast<std::uint64_t>(ggml_type_size(t.type)), &t.nbytes))
      c.fail(fmt::format("tensor '{}' of {} elements of type {}: byte size overflows", t.name, numel,
                         ggml_type_name(type)));
    const auto rel = c.read<std::uint64_t>("tensor offset");
    if (rel % alignment_ != 0)
      c.fail(fmt::format("tensor '{}' offset {} is not a multiple of the alignment {}", t.name, rel, alignment_));
    if (index_.count(t.name)) c.fail(fmt::format("duplicate tensor name '{}'", t.name));
    index_.emplace(t.name, tensors_.size());
    raw.push_back({rel, info_pos});
    tensors_.push_back(std::move(t));
  }
  // The data section starts at the next multiple of the alignment.
  const std::uint64_t data_start = (c.pos() + alignment_ - 1) / alignment_ * alignment_;
  if (data_start > size_ && !tensors_.empty())
    throw LoadError(fmt::format("{}: data section at byte {} starts past the end of the file ({} bytes)", path_,
                                data_start, size_));
  for (std::size_t i = 0; i < tensors_.size(); ++i) {
    auto& t = tensors_[i];
    const std::uint64_t begin = data_start + raw[i].rel_offset;
    if (raw[i].rel_offset > size_ || begin > size_ || t.nbytes > size_ - begin)
      throw LoadError(fmt::format("{}: tensor '{}' ({} bytes at data offset {}) runs past the end of the file ({} bytes)",
                                  path_, t.name, t.nbytes, raw[i].rel_offset, size_));
    t.offset = begin;
  }
  std::vector<const GGUFTensorInfo*> by_offset;
  for (const auto& t : tensors_) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
  for (std::size_t i = 1; i < by_offset.size(); ++i)
    if (by_offset[i - 1]->offset + by_offset[i - 1]->nbytes > by_offset[i]->offset)
      throw LoadError(fmt::format("{}: tensors '{}' and '{}' overlap", path_, by_offset[i - 1]->name, by_offset[i]->name));
}

std::uint32_t GGUFReader::value_type(const std::string& key) const {
  auto it = types_.find(key);
  if (it == types_.end()) throw LoadError(fmt::format("{}: no metadata key '{}'", path_, key));
  return it->second;
}

std::string GGUFReader::get_string(const std::string& key) const {
  if (value_type(key) != kString) throw LoadError(fmt::format("{}: metadata '{}' is not a string", path_, key));
  return metadata_.at(key).get<std::string>();
}

std::int64_t GGUFReader::get_int(const std::string& key) const {
  const auto t = value_type(key);
  if (t == kF32 || t == kF64 || t == kString || t == kArray || t == kBool)
    throw LoadError(fmt::format("{}: metadata '{}' is not an integer", path_, key));
  const auto& v = metadata_.at(key);
  if (v.is_number_unsigned() && v.get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
    throw LoadError(fmt::format("{}: metadata '{}' = {} is out of range", path_, key, v.dump()));
  return v.get<std::int64_t>();
}

double GGUFReader::get_float(const std::string& key) const {
  const auto t = value_type(key);
  if (t == kString || t == kArray || t == kBool)
    throw LoadError(fmt::format("{}: metadata '{}' is not a number", path_, key));
  return metadata_.at(key).get<double>();
}

const nlohmann::json& GGUFReader::get_array(const std::string& key) const {
  if (value_type(key) != kArray) throw LoadError(fmt::format("{}: metadata '{}' is not an array", path_, key));
  return metadata_.at(key);
}

const GGUFTensorInfo& GGUFReader::tensor(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw LoadError(fmt::format("{}: no tensor '{}'", path_, name));
  return tensors_[it->second];
}

void GGUFReader::read_f32(const GGUFTensorInfo& t, float* dst) const {
  dequantize(t.type, tensor_data(t), dst, t.numel);
}

}  // namespace crossicl

namespace crossicl {

VocabArrays vocab_from_gguf(const GGUFReader& g) {
  VocabArrays v;
  v.model = g.get_string("tokenizer.ggml.model");
  if (v.model != "llama" && v.model != "gpt2")
    throw LoadError(fmt::format("{}: tokenizer.ggml.model '{}' is not supported (supported: llama, gpt2)", g.path(),
                                detail::utf8_lossy(v.model)));
  // Pieces are matched in text and decoded as UTF-8, so each must be valid UTF-8 (GGUF strings are raw bytes).
  auto strings = [&](const char* key) {
    std::vector<std::string> out;
    for (const auto& x : g.get_array(key)) {
      if (!x.is_string()) throw LoadError(fmt::format("{}: {} must hold strings", g.path(), key));
      out.push_back(x.get<std::string>());
      const std::size_t at = detail::find_invalid_utf8(out.back());
      if (at != std::string_view::npos)
        throw LoadError(fmt::format("{}: {}[{}] is not valid UTF-8 (byte 0x{:02x} at offset {})", g.path(), key,
                                    out.size() - 1, static_cast<unsigned char>(out.back()[at]), at));
    }
    return out;
  };
  v.tokens = strings("tokenizer.ggml.tokens");
  if (g.has("tokenizer.ggml.scores"))
    for (const auto& x : g.get_array("tokenizer.ggml.scores")) {
      if (!x.is_number()) throw LoadError(fmt::format("{}: tokenizer.ggml.scores must hold numbers", g.path()));
      v.scores.push_back(x.get<float>());
    }
  if (g.has("tokenizer.ggml.token_type"))
    for (const auto& x : g.get_array("tokenizer.ggml.token_type")) {
      if (!x.is_number_integer()) throw LoadError(fmt::format("{}: tokenizer.ggml.token_type must hold integers", g.path()));
      v.token_types.push_back(x.get<std::int32_t>());
    }
  if (g.has("tokenizer.ggml.merges")) v.merges = strings("tokenizer.ggml.merges");
  if (g.has("tokenizer.ggml.pre")) v.pre = g.get_string("tokenizer.ggml.pre");
  auto id = [&](const char* key) -> std::int32_t {
    if (!g.has(key)) return -1;
    const std::int64_t x = g.get_int(key);
    if (x < 0 || x >= static_cast<std::int64_t>(v.tokens.size()))
      throw LoadError(fmt::format("{}: {} = {} is outside the vocabulary (size {})", g.path(), key, x, v.tokens.size()));
    return static_cast<std::int32_t>(x);
  };
  v.bos_id = id("tokenizer.ggml.bos_token_id");
  v.eos_id = id("tokenizer.ggml.eos_token_id");
  v.unk_id = id("tokenizer.ggml.unknown_token_id");
  auto flag = [&](const char* key, bool fallback) {
    if (!g.has(key)) return fallback;
    if (!g.metadata().at(key).is_boolean()) throw LoadError(fmt::format("{}: {} must be a bool", g.path(), key));
    return g.metadata().at(key).get<bool>();
  };
  // llama.cpp's defaults: SentencePiece vocabularies add BOS, byte-level ones do not unless the file says so.
  v.add_bos = flag("tokenizer.ggml.add_bos_token", v.model == "llama");
  v.add_eos = flag("tokenizer.ggml.add_eos_token", false);
  return v;
}

}  // namespace crossicl
