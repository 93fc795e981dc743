// The header of a safetensors file, parsed and checked without torch (the HF loader of safetensors.cpp maps the
// tensors it describes; tests/fuzz/fuzz_safetensors.cpp fuzzes it). Layout: u64 little-endian header length N, N
// bytes of JSON {name: {dtype, shape, data_offsets}, "__metadata__": {...}}, then the data section; offsets are
// relative to the start of the data.
//
//   auto map = detail::MappedFile::open(path);
//   detail::SafetensorsHeader h = detail::parse_safetensors_header(map->data(), map->size(), path);
//   const detail::SafetensorsEntry& e = h.entries.at("model.norm.weight");   // bytes at h.data_start + e.begin
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace crossicl::detail {

/// Largest header accepted, in bytes: the limit of the format's reference implementation (100 MB).
inline constexpr std::uint64_t kMaxSafetensorsHeaderBytes = 100'000'000;

/// One tensor of the header.
struct SafetensorsEntry {
  std::string dtype;                 // "F32", "BF16", ... (one that safetensors_dtype_size knows)
  std::vector<std::int64_t> shape;   // each dim in [0, 2^63)
  std::uint64_t begin = 0, end = 0;  // byte range relative to the data section; end - begin = dtype size * numel
};

/// A checked header: every entry lies inside the data section, its bytes match dtype and shape, no two overlap.
struct SafetensorsHeader {
  std::uint64_t data_start = 0;                      // absolute offset of the data section (8 + N)
  std::map<std::string, SafetensorsEntry> entries;   // by tensor name ("__metadata__" is skipped)
};

/// Bytes per element of a safetensors dtype name ("F32" -> 4), 0 for an unknown one.
std::uint64_t safetensors_dtype_size(const std::string& dtype);

/// Parses the header of the file image [data, data + size). Throws LoadError naming `path` (and the tensor) for
/// a header length past the file or over kMaxSafetensorsHeaderBytes, JSON that is invalid or nested deeper than
/// limits().max_json_depth, a malformed entry, an unknown dtype, a size overflow, data_offsets outside the data
/// section or not matching dtype * shape, and overlapping tensors.
SafetensorsHeader parse_safetensors_header(const std::uint8_t* data, std::size_t size, const std::string& path);

}  // namespace crossicl::detail
