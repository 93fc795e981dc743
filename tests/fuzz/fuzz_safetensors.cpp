// libFuzzer target for safetensors headers (detail::parse_safetensors_header, the torch-free part of the HF
// loader): any image parses into entries that lie inside the data section without overlapping, or throws
// LoadError.
#include <cstddef>
#include <cstdint>

#include "crossicl/core/error.h"
#include "detail/safetensors_header.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto h = crossicl::detail::parse_safetensors_header(data, size, "fuzz.safetensors");
    if (h.data_start > size) __builtin_trap();
    std::uint64_t total = 0;
    for (const auto& [name, e] : h.entries) {
      if (e.begin > e.end || e.end > size - h.data_start) __builtin_trap();
      total += e.end - e.begin;
    }
    if (total > size - h.data_start) __builtin_trap();  // no overlaps
  } catch (const crossicl::LoadError&) {
  }
  return 0;
}
