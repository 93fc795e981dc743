// Tokenizer::from_file: reads the file and dispatches on its content (JSON text or a SentencePiece proto).
#include "crossicl/engine/tokenizer.h"

#include <fmt/format.h>

#include "crossicl/core/error.h"
#include "detail/io.h"
#include "detail/tokenizer_impl.h"

namespace crossicl {

std::unique_ptr<Tokenizer> Tokenizer::from_file(const std::string& path) {
  // read_file refuses what is not a regular file (a FIFO would block) and files over Limits.max_file_bytes.
  const std::string bytes = detail::read_file(path);
  if (bytes.empty()) throw LoadError(fmt::format("tokenizer file '{}' is empty", path));
  // tokenizer.json is a JSON object; a SentencePiece model is a binary protobuf, which never starts with '{'
  // (field 1 "pieces" is tagged 0x0a).
  std::size_t i = 0;
  if (bytes.size() >= 3 && bytes.compare(0, 3, "\xEF\xBB\xBF") == 0) i = 3;
  while (i < bytes.size() && (bytes[i] == ' ' || bytes[i] == '\n' || bytes[i] == '\r' || bytes[i] == '\t')) ++i;
  if (i < bytes.size() && bytes[i] == '{') return detail::load_hf_tokenizer(path, bytes);
  return detail::load_sentencepiece_tokenizer(path, bytes);
}

}  // namespace crossicl
