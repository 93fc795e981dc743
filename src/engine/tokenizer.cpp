// Tokenizer::from_file: reads the file and dispatches on its content (JSON text or a SentencePiece proto).
#include "crossicl/engine/tokenizer.h"

#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "crossicl/core/error.h"
#include "detail/tokenizer_impl.h"

namespace crossicl {

std::unique_ptr<Tokenizer> Tokenizer::from_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw LoadError(fmt::format("cannot open tokenizer file '{}'", path));
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) throw LoadError(fmt::format("cannot read tokenizer file '{}'", path));
  const std::string bytes = buf.str();
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
