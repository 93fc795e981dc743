// Tokenizers of the LLaMA family: SentencePiece models (tokenizer.model, through the sentencepiece library),
// HF tokenizer.json BPE (LLaMA-2 style with byte fallback and the Prepend/Replace normaliser; byte-level BPE
// with a pre-tokenizer regex as in LLaMA-3/GPT-2), and vocabularies built from arrays (GGUF metadata).
// BOS/EOS follow HF: encode(text, bos=true) adds the tokens the tokenizer's own rule adds (HF's
// add_special_tokens=True: the post_processor template of tokenizer.json, else tokenizer_config.json's
// add_bos_token; always BOS for SentencePiece models); EOS is appended only when asked.
// decode(encode(text, bos=false)) == text for valid UTF-8 wherever the vocabulary can represent the text.
// Added/special tokens written in the text (e.g. "<|im_start|>") are matched before BPE, as HF does.
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

/// A vocabulary given as arrays, as GGUF metadata stores it (`tokenizer.ggml.*`). The "llama" model tokenizes
/// as LLaMA's tokenizer.model does; SentencePiece normalizer options that the arrays do not carry (e.g.
/// remove_extra_whitespaces of some small models) are not applied.
struct VocabArrays {
  std::string model = "llama";            // "llama": SentencePiece BPE ranked by `scores`, byte fallback;
                                          // "gpt2": byte-level BPE with `merges`
  std::string pre;                        // gpt2: tokenizer.ggml.pre; "llama-bpe"/"llama3": LLaMA-3 regex, "qwen2":
                                          // Qwen2's, "smollm": digits split one by one; anything else: GPT-2's regex
  std::vector<std::string> tokens;        // id -> piece
  std::vector<float> scores;              // id -> score (llama; higher merges first)
  std::vector<std::int32_t> token_types;  // id -> 1 normal, 2 unknown, 3 control, 4 user defined, 5 unused,
                                          // 6 byte; empty: all normal
  std::vector<std::string> merges;        // gpt2: "left right" pieces, by rank
  std::int32_t bos_id = -1;               // -1: none
  std::int32_t eos_id = -1;               // -1: none
  std::int32_t unk_id = -1;               // -1: none
  bool add_bos = true;                    // encode(text, bos=true) prepends bos_id
  bool add_eos = false;                   // encode(text, bos=true) also appends eos_id
};

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

  /// Tokenizer of a vocabulary given as arrays (e.g. read from GGUF metadata). Throws LoadError when the arrays
  /// are inconsistent (sizes, ids, merges naming unknown pieces).
  ///
  ///   crossicl::VocabArrays v;
  ///   v.tokens = {...}; v.scores = {...}; v.token_types = {...}; v.bos_id = 1; v.eos_id = 2; v.unk_id = 0;
  ///   auto tok = crossicl::Tokenizer::from_vocab(v);
  static std::unique_ptr<Tokenizer> from_vocab(const VocabArrays& vocab);

  /// Token ids of `text`; `bos` adds the tokenizer's own special tokens (BOS for LLaMA; HF's
  /// add_special_tokens=True), `eos` appends the EOS id (if the vocabulary has one). Empty text gives [BOS] or [].
  /// Throws InvalidArgument for text that is not valid UTF-8 (naming the byte offset).
  virtual std::vector<std::int32_t> encode(std::string_view text, bool bos = true, bool eos = false) const = 0;

  /// Like encode, also returning for each token the byte span of `text` it covers (a byte-fallback or byte-level
  /// token inside a character spans the whole character, as HF reports it; a prepended "\u2581" takes the span
  /// of the first character).
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
