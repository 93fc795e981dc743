// The stages of an HF tokenizer.json pipeline, in the order HF tokenizers runs them on a text:
//
//   added tokens split out        tokenizer_hf.cpp             (also: the loader, crossicl::Tokenizer)
//   -> normalizer                 tokenizer_hf_normalizer.cpp  NormOp: Prepend, Replace
//   -> pre-tokenizer              tokenizer_hf_pretok.cpp      PreOp: Split, Digits, ByteLevel, Metaspace, ...
//   -> model                      tokenizer_hf_bpe.cpp         BpeModel (detail/tokenizer_hf_bpe.h)
//   -> post-processor             tokenizer_hf_post.cpp        PostProcessor: the tokens around the sequence
//   and back from ids to text:
//   decoder                       tokenizer_hf_decoder.cpp     DecOp: Replace, ByteFallback, Fuse, Strip, ...
//
// Each stage has a loader that reads its part of tokenizer.json (throwing LoadError that names `path`) and a
// function that applies it. Offsets: while a segment of the input is normalized and pre-tokenized, every byte of
// the working text carries the byte span of the input it came from (Work::ab/ae), so tokens can report spans.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "crossicl/engine/tokenizer.h"
#include "detail/tokenizer_pretok.h"

namespace crossicl::detail {

/// Scratch buffers larger than this (bytes) are released after use instead of being kept by the thread.
inline constexpr std::size_t kMaxKeptScratch = std::size_t{1} << 22;

/// Byte span [begin, end) of the working text.
using Span = std::pair<std::uint32_t, std::uint32_t>;

/// Per-thread scratch space of one encode call: the working text of one segment, the input span of each of its
/// bytes (filled only when offsets are asked for: `aligned`), and its pre-token pieces.
struct Work {
  std::string buf, buf2;
  std::vector<std::uint32_t> ab, ae, ab2, ae2;  // original byte span of each byte of buf
  std::vector<Span> pieces, pieces2;            // pre-tokens: spans of buf that tile it
  struct Seg {
    std::uint32_t b, e;
    bool match;
  };
  std::vector<Seg> segs;
};

/// "type" of a tokenizer.json component, "" when it has none.
std::string type_of(const nlohmann::json& j);

/// Calls `load_one(step)` for each step of a component: the component itself, or for a "Sequence" the steps of its
/// list `list_key` (nested Sequences flattened), in order. Iterative: however deep the Sequences nest, no stack
/// grows but the explicit one.
template <typename LoadOne>
void for_each_step(const nlohmann::json& component, const char* list_key, LoadOne load_one) {
  if (type_of(component) != "Sequence") {
    load_one(component);
    return;
  }
  std::vector<std::pair<const nlohmann::json*, std::size_t>> open{{&component.at(list_key), 0}};  // list, next
  while (!open.empty()) {
    const nlohmann::json& list = *open.back().first;
    const std::size_t k = open.back().second++;
    if (k >= list.size()) {
      open.pop_back();
    } else if (const nlohmann::json& c = list.at(k); type_of(c) == "Sequence") {
      open.emplace_back(&c.at(list_key), 0);
    } else {
      load_one(c);
    }
  }
}

/// Text of a pattern object {"String": s} or {"Regex": r}; `is_regex` tells which. Throws LoadError otherwise.
std::string pattern_text(const nlohmann::json& p, bool& is_regex, const std::string& path);

// ------------------------------------------------------------------------------------------------ normalizer

/// One normalizer step.
struct NormOp {
  enum Kind { kPrepend, kReplace } kind;
  std::string pattern;  // kReplace: the literal replaced
  std::string content;  // kPrepend: the prefix; kReplace: the replacement
};

/// Appends the steps of a "normalizer" component (null: none; Sequence: its parts in order).
void load_normalizer(const nlohmann::json& n, const std::string& path, std::vector<NormOp>& out);

/// Applies one step to the working text w.buf (and its spans when `aligned`).
void normalize(const NormOp& op, Work& w, bool aligned);

// ------------------------------------------------------------------------------------------------ pre-tokenizer

/// What a split does with the matches, as HF's SplitDelimiterBehavior.
enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

/// One pre-tokenizer step.
struct PreOp {
  enum Kind { kSplitPattern, kSplitString, kDigits, kByteLevel, kMetaspace, kWhitespaceSplit } kind;
  SplitPattern pattern = SplitPattern::kGpt2;
  std::string literal;  // kSplitString: the delimiter; kMetaspace: the replacement character
  Behavior behavior = Behavior::kIsolated;
  bool invert = false;
  bool individual_digits = false;
  bool add_prefix_space = false;  // kByteLevel
  bool use_regex = true;          // kByteLevel
  int prepend_scheme = 0;         // kMetaspace: 0 always, 1 first, 2 never
  bool split = true;              // kMetaspace
};

/// Appends the steps of a "pre_tokenizer" component (null: none; Sequence: its parts in order).
void load_pre_tokenizer(const nlohmann::json& p, const std::string& path, std::vector<PreOp>& out);

/// Applies one step to the pieces of w (splitting them, or rewriting w.buf for ByteLevel/Metaspace);
/// `segment_at_start`: the segment begins the input text (Metaspace's "first" scheme).
void pre_tokenize(const PreOp& op, Work& w, bool aligned, bool segment_at_start);

// ------------------------------------------------------------------------------------------------ post-processor

/// The special tokens that encode(text, bos=true) puts around the sequence (HF's add_special_tokens=True).
struct PostProcessor {
  std::vector<std::int32_t> prefix, suffix;  // tokens before and after the sequence
  bool has_template = false;                 // tokenizer.json gave them (else tokenizer_config.json may)

  /// Appends the prefix tokens (with empty spans at 0 when `offs`).
  void add_prefix(std::vector<std::int32_t>& ids, std::vector<TokenOffset>* offs) const;
  /// Appends the suffix tokens (with empty spans at `n`, the text length, when `offs`).
  void add_suffix(std::vector<std::int32_t>& ids, std::vector<TokenOffset>* offs, std::size_t n) const;
};

/// Id of a token given by its content (added tokens first, then the vocabulary), -1 when unknown.
using TokenLookup = std::function<std::int32_t(const std::string&)>;

/// Reads a "post_processor" component (null: none; TemplateProcessing, Roberta/BertProcessing, ByteLevel,
/// Sequence) into `out`; template tokens not listed in its special_tokens are looked up with `find_token`. An id
/// outside [0, vocab_size) throws LoadError naming the file, the token and the id.
void load_post_processor(const nlohmann::json& p, const std::string& path, const TokenLookup& find_token,
                         std::int32_t vocab_size, PostProcessor& out);

// ------------------------------------------------------------------------------------------------ decoder

/// One decoder step.
struct DecOp {
  enum Kind { kReplace, kByteFallback, kFuse, kStrip, kByteLevel, kMetaspace } kind;
  std::string pattern;  // kReplace pattern, kStrip content, kMetaspace replacement
  std::string content;  // kReplace content
  std::size_t start = 0, stop = 0;
  bool prepend = true;  // kMetaspace: the first token's replacement characters are dropped
};

/// Appends the steps of a "decoder" component (Sequence: its parts in order).
void load_decoder(const nlohmann::json& d, const std::string& path, std::vector<DecOp>& out);

/// Applies one step to the token strings.
void apply_decoder(const DecOp& op, std::vector<std::string>& toks);

}  // namespace crossicl::detail
