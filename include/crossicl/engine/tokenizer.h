// Tokenizers of the LLaMA family: SentencePiece models (tokenizer.model, through the sentencepiece library),
// HF tokenizer.json BPE (LLaMA-2 style with byte fallback and the Prepend/Replace normaliser; byte-level BPE
// with a pre-tokenizer regex as in LLaMA-3/GPT-2), and vocabularies built from arrays (GGUF metadata).
// BOS/EOS follow HF: encode(text, bos=true) prepends BOS when the model has one; EOS is never appended unless
// asked. decode(encode(text, bos=false)) == text for valid UTF-8.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace crossicl {

/// Byte span [begin, end) of the input text covered by one token (empty for BOS/EOS).
using TokenOffset = std::pair<std::size_t, std::size_t>;

/// A text <-> token id mapping. Immutable after construction and safe to use from several threads.
///
///   auto tok = crossicl::Tokenizer::from_file("tokenizer.model");
///   std::vector<std::int32_t> ids = tok->encode("Hello world", /*bos=*/true);
class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  /// Loads `tokenizer.model` (SentencePiece) or `tokenizer.json` (HF); the kind is decided by content.
  /// Throws LoadError naming the file.
  static std::unique_ptr<Tokenizer> from_file(const std::string& path);

  /// Token ids of `text`; `bos` prepends the BOS id (if the vocabulary has one), `eos` appends EOS.
  /// Throws InvalidArgument for text that is not valid UTF-8 (naming the byte offset).
  virtual std::vector<std::int32_t> encode(std::string_view text, bool bos = true, bool eos = false) const = 0;

  /// Like encode, also returning for each token the byte span of `text` it covers.
  virtual std::vector<std::int32_t> encode_with_offsets(std::string_view text, std::vector<TokenOffset>& offsets,
                                                        bool bos = true, bool eos = false) const = 0;

  /// Text of a sequence of ids; special tokens (BOS/EOS/pad) are skipped unless `keep_special`.
  /// Throws InvalidArgument for an id outside [0, vocab_size).
  virtual std::string decode(const std::vector<std::int32_t>& ids, bool keep_special = false) const = 0;

  /// Raw piece of one id as stored in the vocabulary (e.g. "▁the", "<0x0A>", "Ġthe").
  virtual std::string piece(std::int32_t id) const = 0;

  virtual std::int32_t vocab_size() const = 0;
  virtual std::int32_t bos_id() const = 0;  // -1 when the vocabulary has none
  virtual std::int32_t eos_id() const = 0;  // -1 when the vocabulary has none
};

}  // namespace crossicl
