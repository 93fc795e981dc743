// libFuzzer target for JSON Lines datasets (load_examples: plain or gzip, UTF-8 and JSON checks per line, ids):
// any file loads or throws LoadError naming the file and line.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "crossicl/core/dataset.h"
#include "crossicl/core/error.h"
#include "detail/json.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path =
      crossicl::fuzz::write_scratch("data.jsonl", std::string_view(reinterpret_cast<const char*>(data), size));
  try {
    for (const crossicl::Example& ex : crossicl::load_examples(path)) {
      if (ex.id.empty() && ex.fields.empty()) continue;
      ex.extra.dump();  // depth-checked on load, so any walk of the value is bounded
      crossicl::detail::short_dump(ex.extra);
    }
  } catch (const crossicl::LoadError&) {
  }
  return 0;
}
