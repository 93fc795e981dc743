// libFuzzer target for GGUF files: the header, metadata and tensor directory (GGUFReader), the typed getters on
// every key, a bounded dequantised prefix of every tensor however large it is declared (the directory must keep
// each tensor inside the image), and the tokenizer path: tokenizer.ggml.* -> Tokenizer -> encode/decode.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "crossicl/core/error.h"
#include "crossicl/engine/gguf.h"
#include "detail/utf8.h"
#include "fuzz_tokenizer.h"

namespace {

using namespace crossicl;

constexpr std::int64_t kMaxDequantized = 1 << 14;  // elements dequantised per tensor (whole blocks)

void getters(const GGUFReader& g) {
  for (const auto& kv : g.metadata().items()) {
    const std::string& key = kv.key();
    for (int k = 0; k < 4; ++k) {
      try {
        if (k == 0) g.get_string(key);
        if (k == 1) g.get_int(key);
        if (k == 2) g.get_float(key);
        if (k == 3) g.get_array(key);
      } catch (const LoadError&) {
      }
    }
  }
}

void tensors(const GGUFReader& g, std::size_t size) {
  std::vector<float> out;
  for (const GGUFTensorInfo& t : g.tensors()) {
    if (t.offset > size || t.nbytes > size - t.offset) __builtin_trap();  // the directory's promise
    const std::int64_t block = ggml_block_size(t.type);
    const std::int64_t n = std::min(t.numel, kMaxDequantized) / block * block;
    out.resize(static_cast<std::size_t>(n));
    dequantize(t.type, g.tensor_data(t), out.data(), n);
    if (t.numel <= kMaxDequantized) {
      out.resize(static_cast<std::size_t>(t.numel));
      g.read_f32(t, out.data());
    }
  }
}

void tokenizer(const GGUFReader& g, const std::uint8_t* data, std::size_t size) {
  if (!g.has("tokenizer.ggml.model")) return;
  const auto tok = Tokenizer::from_vocab(vocab_from_gguf(g));
  const std::string tail(reinterpret_cast<const char*>(data) + size - std::min<std::size_t>(size, 48),
                         std::min<std::size_t>(size, 48));
  fuzz::exercise_tokenizer(*tok, {"Hello world, it's 2024!\n\t  x",
                                  " h\xC3\xA9llo \xE4\xB8\x96\xE7\x95\x8C \xF0\x9F\x99\x82", detail::utf8_lossy(tail),
                                  tail});
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    GGUFReader reader(data, size, "fuzz.gguf");
    getters(reader);
    tensors(reader, size);
    tokenizer(reader, data, size);
  } catch (const LoadError&) {
  } catch (const InvalidArgument&) {
  }
  return 0;
}
