// libFuzzer target for the GGUF header parser: any byte string either parses or throws LoadError/InvalidArgument;
// AddressSanitizer catches any read outside the input. Parsed tensors are dequantised too.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "crossicl/core/error.h"
#include "crossicl/engine/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    crossicl::GGUFReader reader(data, size, "fuzz-input");
    for (const auto& t : reader.tensors()) {
      if (t.numel > (1 << 16)) continue;  // keep each input cheap
      std::vector<float> out(static_cast<std::size_t>(t.numel));
      reader.read_f32(t, out.data());
    }
  } catch (const crossicl::LoadError&) {
  } catch (const crossicl::InvalidArgument&) {
  }
  return 0;
}
