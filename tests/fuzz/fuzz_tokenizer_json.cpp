// libFuzzer target for HF tokenizer.json: load, then encode and decode. Input: tokenizer.json text, NUL, the text
// to encode, optionally NUL and a tokenizer_config.json written beside it. Offsets must lie inside the text.
#include <cstddef>
#include <cstdint>
#include <string>

#include "crossicl/core/error.h"
#include "detail/tokenizer_impl.h"
#include "detail/utf8.h"
#include "fuzz_tokenizer.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace crossicl;
  const auto parts = fuzz::split_nul(data, size, 3);
  if (parts[2].empty()) {
    fuzz::remove_scratch("tokenizer_config.json");
  } else {
    fuzz::write_scratch("tokenizer_config.json", parts[2]);
  }
  try {
    const auto tok = detail::load_hf_tokenizer(fuzz::scratch_dir() + "/tokenizer.json", std::string(parts[0]));
    fuzz::exercise_tokenizer(*tok, {std::string(parts[1]), detail::utf8_lossy(parts[1])});
  } catch (const LoadError&) {
  } catch (const InvalidArgument&) {
  }
  return 0;
}
