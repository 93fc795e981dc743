// libFuzzer target for the llama2.c checkpoint header (detail::parse_llama2c_header, the torch-free part of
// load_llama2c). Input: the 28 header bytes, then optionally a u64 little-endian file size. The parser reads only
// the header and compares the size the header implies with the one given, so a claimed size exercises the layout
// arithmetic of files far larger than any input.
#include <cstddef>
#include <cstdint>

#include "crossicl/core/error.h"
#include "detail/llama2c_header.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace d = crossicl::detail;
  std::size_t file_size = size;
  if (size >= d::kLlama2cHeaderBytes + 8) {
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | data[d::kLlama2cHeaderBytes + i];
    file_size = static_cast<std::size_t>(n);
  }
  try {
    const d::Llama2cLayout l = d::parse_llama2c_header(data, file_size, "fuzz.bin");
    for (int i = 1; i < d::kLlama2cBlockCount; ++i)
      if (l.offsets[i] < l.offsets[i - 1] || l.offsets[i] > file_size) __builtin_trap();
  } catch (const crossicl::LoadError&) {
  }
  return 0;
}
