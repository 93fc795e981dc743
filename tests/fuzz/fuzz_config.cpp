// libFuzzer target for HF config.json (Config::from_hf_json, which also validates the sizes): any file gives a
// valid Config or throws LoadError.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "crossicl/core/error.h"
#include "crossicl/engine/config.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path =
      crossicl::fuzz::write_scratch("config.json", std::string_view(reinterpret_cast<const char*>(data), size));
  try {
    const crossicl::Config c = crossicl::Config::from_hf_json(path);
    if (c.head_dim <= 0 || c.n_heads <= 0 || c.n_kv_heads <= 0 || c.n_heads % c.n_kv_heads != 0) __builtin_trap();
  } catch (const crossicl::LoadError&) {
  }
  return 0;
}
