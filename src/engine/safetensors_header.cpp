#include "detail/safetensors_header.h"

#include <algorithm>
#include <string_view>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "crossicl/core/error.h"
#include "detail/checked_size.h"
#include "detail/json.h"
#include "detail/utf8.h"

namespace crossicl::detail {

std::uint64_t safetensors_dtype_size(const std::string& d) {
  if (d == "F64" || d == "I64" || d == "U64") return 8;
  if (d == "F32" || d == "I32" || d == "U32") return 4;
  if (d == "F16" || d == "BF16" || d == "I16" || d == "U16") return 2;
  if (d == "I8" || d == "U8" || d == "BOOL" || d == "F8_E4M3" || d == "F8_E5M2") return 1;
  return 0;
}

SafetensorsHeader parse_safetensors_header(const std::uint8_t* data, std::size_t size, const std::string& path) {
  using nlohmann::json;
  SafetensorsHeader st;
  if (size < 8)
    throw LoadError(fmt::format("{}: too small for a safetensors header (expected at least 8 bytes, got {})", path,
                                size));
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];
  if (n > size - 8)
    throw LoadError(fmt::format("{}: safetensors header length {} exceeds the file ({} bytes after the length)", path,
                                n, size - 8));
  if (n > kMaxSafetensorsHeaderBytes)
    throw LoadError(fmt::format("{}: safetensors header length {} is over the format's limit of {} bytes", path, n,
                                kMaxSafetensorsHeaderBytes));
  st.data_start = 8 + n;
  const std::uint64_t data_size = size - st.data_start;
  json header;
  try {
    header = parse_json(std::string_view(reinterpret_cast<const char*>(data) + 8, n), path);
  } catch (const json::exception& e) {
    // nlohmann quotes the bytes it stopped at, which need not be UTF-8.
    throw LoadError(fmt::format("{}: invalid safetensors JSON header: {}", path, utf8_lossy(e.what())));
  }
  if (!header.is_object()) throw LoadError(fmt::format("{}: safetensors header is not a JSON object", path));
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    const std::string& name = it.key();
    const json& t = it.value();
    if (!t.is_object() || !t.contains("dtype") || !t.contains("shape") || !t.contains("data_offsets") ||
        !t["dtype"].is_string() || !t["shape"].is_array() || !t["data_offsets"].is_array() ||
        t["data_offsets"].size() != 2)
      throw LoadError(fmt::format("{}: tensor '{}': malformed header entry {}", path, name, short_dump(t)));
    SafetensorsEntry e;
    e.dtype = t["dtype"].get<std::string>();
    const std::uint64_t elem = safetensors_dtype_size(e.dtype);
    if (elem == 0) throw LoadError(fmt::format("{}: tensor '{}': unknown dtype '{}'", path, name, e.dtype));
    std::uint64_t numel = 1;
    for (const auto& d : t["shape"]) {
      if (!d.is_number_unsigned() || d.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX))
        throw LoadError(fmt::format("{}: tensor '{}': bad shape {}", path, name, short_dump(t["shape"])));
      const std::uint64_t dim = d.get<std::uint64_t>();
      e.shape.push_back(static_cast<std::int64_t>(dim));
      numel = checked_mul(numel, dim, fmt::format("{}: tensor '{}'", path, name));
    }
    const json& off = t["data_offsets"];
    if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      throw LoadError(fmt::format("{}: tensor '{}': bad data_offsets {}", path, name, short_dump(off)));
    e.begin = off[0].get<std::uint64_t>();
    e.end = off[1].get<std::uint64_t>();
    if (!(e.begin <= e.end && e.end <= data_size))
      throw LoadError(fmt::format("{}: tensor '{}': data_offsets [{}, {}] outside the data section ({} bytes)", path,
                                  name, e.begin, e.end, data_size));
    const std::uint64_t bytes = checked_mul(numel, elem, fmt::format("{}: tensor '{}'", path, name));
    if (bytes != e.end - e.begin)
      throw LoadError(fmt::format("{}: tensor '{}': {} {} needs {} bytes but data_offsets span {}", path, name,
                                  e.dtype, short_dump(t["shape"]), bytes, e.end - e.begin));
    st.entries.emplace(name, std::move(e));
  }
  std::vector<std::pair<const std::string*, const SafetensorsEntry*>> by_offset;
  for (const auto& [name, e] : st.entries) by_offset.emplace_back(&name, &e);
  std::sort(by_offset.begin(), by_offset.end(), [](const auto& a, const auto& b) {
    return a.second->begin != b.second->begin ? a.second->begin < b.second->begin : a.second->end < b.second->end;
  });
  for (std::size_t i = 1; i < by_offset.size(); ++i) {
    const auto& [pn, p] = by_offset[i - 1];
    const auto& [cn, cur] = by_offset[i];
    if (cur->begin < p->end)
      throw LoadError(fmt::format("{}: tensors '{}' [{}, {}] and '{}' [{}, {}] overlap", path, *pn, p->begin, p->end,
                                  *cn, cur->begin, cur->end));
  }
  return st;
}

}  // namespace crossicl::detail
