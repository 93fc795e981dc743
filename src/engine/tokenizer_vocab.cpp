// Tokenizer::from_vocab: a vocabulary given as arrays (GGUF metadata) turned into the equivalent tokenizer.json
// document, so that one BPE implementation serves both. SentencePiece BPE ("llama") merges the adjacent pair
// whose concatenation has the highest score; as ranked merges that is every split of a normal piece into two
// normal pieces, ordered by the piece's score.
#include <algorithm>
#include <unordered_map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "crossicl/core/error.h"
#include "crossicl/engine/tokenizer.h"
#include "detail/tokenizer_impl.h"
#include "detail/tokenizer_pretok.h"
#include "detail/utf8.h"

namespace crossicl {

namespace {

using json = nlohmann::json;

constexpr std::int32_t kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4;
constexpr const char* kSpaceMark = "\xE2\x96\x81";  // U+2581

json split_regex(detail::SplitPattern pattern) {
  return {{"type", "Split"},
          {"pattern", {{"Regex", std::string(detail::split_pattern_regex(pattern))}}},
          {"behavior", "Isolated"},
          {"invert", false}};
}

json byte_level(bool use_regex) {
  return {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", use_regex}};
}

void check_id(const VocabArrays& v, std::int32_t id, const char* what) {
  if (id < -1 || id >= static_cast<std::int32_t>(v.tokens.size())) {
    throw LoadError(fmt::format("tokenizer vocabulary: {} {} out of range (vocab size {})", what, id, v.tokens.size()));
  }
}

// Pieces become tokenizer.json strings and are matched in (valid UTF-8) text, so each must be valid UTF-8 itself: a
// piece of continuation bytes would split a character of the text.
void check_pieces_utf8(const std::vector<std::string>& pieces, const char* what) {
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    const std::size_t at = detail::find_invalid_utf8(pieces[i]);
    if (at != std::string_view::npos)
      throw InvalidArgument(fmt::format("tokenizer vocabulary: {}[{}] is not valid UTF-8 (byte 0x{:02x} at offset {})",
                                        what, i, static_cast<unsigned char>(pieces[i][at]), at));
  }
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::from_vocab(const VocabArrays& v) {
  const std::size_t n = v.tokens.size();
  if (n == 0) throw LoadError("tokenizer vocabulary has no tokens");
  check_pieces_utf8(v.tokens, "tokens");
  check_pieces_utf8(v.merges, "merges");
  if (!v.token_types.empty() && v.token_types.size() != n) {
    throw LoadError(fmt::format("tokenizer vocabulary: {} token types for {} tokens", v.token_types.size(), n));
  }
  check_id(v, v.bos_id, "bos_id");
  check_id(v, v.eos_id, "eos_id");
  check_id(v, v.unk_id, "unk_id");
  const bool llama = v.model == "llama";
  if (!llama && v.model != "gpt2") {
    throw LoadError(fmt::format("tokenizer vocabulary: model '{}' is not supported (llama, gpt2)", v.model));
  }
  if (llama && v.scores.size() != n) {
    throw LoadError(fmt::format("tokenizer vocabulary: {} scores for {} tokens", v.scores.size(), n));
  }
  auto type_of = [&](std::size_t i) {
    if (static_cast<std::int32_t>(i) == v.unk_id) return kUnknown;
    return v.token_types.empty() ? kNormal : v.token_types[i];
  };

  json vocab = json::object();
  std::unordered_map<std::string, std::int32_t> index;
  index.reserve(n * 2);
  for (std::size_t i = 0; i < n; ++i) {
    if (index.emplace(v.tokens[i], static_cast<std::int32_t>(i)).second) vocab[v.tokens[i]] = i;
  }
  json added = json::array();
  for (std::size_t i = 0; i < n; ++i) {
    const std::int32_t t = type_of(i);
    if (t == kUnknown || t == kControl || t == kUserDefined) {
      added.push_back({{"id", i}, {"content", v.tokens[i]}, {"special", t != kUserDefined}, {"lstrip", false},
                       {"rstrip", false}, {"normalized", false}, {"single_word", false}});
    }
  }

  json merges = json::array();
  if (llama) {
    struct M {
      float score;
      std::int32_t id, left, right;
    };
    std::vector<M> ms;
    for (std::size_t i = 0; i < n; ++i) {
      if (type_of(i) != kNormal) continue;
      const std::string& p = v.tokens[i];
      for (std::size_t k = 1; k < p.size(); ++k) {
        if ((static_cast<unsigned char>(p[k]) & 0xC0) == 0x80) continue;  // character boundaries only
        auto l = index.find(p.substr(0, k));
        if (l == index.end() || type_of(static_cast<std::size_t>(l->second)) != kNormal) continue;
        auto r = index.find(p.substr(k));
        if (r == index.end() || type_of(static_cast<std::size_t>(r->second)) != kNormal) continue;
        ms.push_back({v.scores[i], static_cast<std::int32_t>(i), l->second, r->second});
      }
    }
    std::sort(ms.begin(), ms.end(), [](const M& a, const M& b) {
      if (a.score != b.score) return a.score > b.score;
      if (a.id != b.id) return a.id < b.id;
      return a.left != b.left ? a.left < b.left : a.right < b.right;
    });
    for (const M& m : ms) merges.push_back({v.tokens[m.left], v.tokens[m.right]});
  } else {
    for (const std::string& m : v.merges) merges.push_back(m);
  }

  json root;
  root["added_tokens"] = added;
  json model = {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}};
  if (llama) {
    root["normalizer"] = {{"type", "Sequence"},
                          {"normalizers",
                           {{{"type", "Prepend"}, {"prepend", kSpaceMark}},
                            {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kSpaceMark}}}}};
    root["decoder"] = {{"type", "Sequence"},
                       {"decoders",
                        {{{"type", "Replace"}, {"pattern", {{"String", kSpaceMark}}}, {"content", " "}},
                         {{"type", "ByteFallback"}},
                         {{"type", "Fuse"}},
                         {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}};
    model["byte_fallback"] = true;
    model["fuse_unk"] = true;
  } else {
    json pre;
    if (v.pre == "llama-bpe" || v.pre == "llama3") {
      pre = {{"type", "Sequence"}, {"pretokenizers", {split_regex(detail::SplitPattern::kLlama3), byte_level(false)}}};
      model["ignore_merges"] = true;
    } else if (v.pre == "qwen2") {
      pre = {{"type", "Sequence"}, {"pretokenizers", {split_regex(detail::SplitPattern::kQwen2), byte_level(false)}}};
    } else if (v.pre == "smollm") {
      pre = {{"type", "Sequence"},
             {"pretokenizers", {{{"type", "Digits"}, {"individual_digits", true}}, byte_level(true)}}};
    } else {
      pre = {{"type", "Sequence"}, {"pretokenizers", {split_regex(detail::SplitPattern::kGpt2), byte_level(false)}}};
    }
    root["pre_tokenizer"] = pre;
    root["decoder"] = {{"type", "ByteLevel"}};
  }
  if (v.unk_id >= 0) model["unk_token"] = v.tokens[static_cast<std::size_t>(v.unk_id)];
  root["model"] = model;
  json single = json::array();
  json special = json::object();
  auto add_special = [&](std::int32_t id) {
    const std::string& name = v.tokens[static_cast<std::size_t>(id)];
    single.push_back({{"SpecialToken", {{"id", name}, {"type_id", 0}}}});
    special[name] = {{"id", name}, {"ids", {id}}, {"tokens", {name}}};
  };
  if (v.add_bos && v.bos_id >= 0) add_special(v.bos_id);
  single.push_back({{"Sequence", {{"id", "A"}, {"type_id", 0}}}});
  if (v.add_eos && v.eos_id >= 0) add_special(v.eos_id);
  root["post_processor"] = {{"type", "TemplateProcessing"}, {"single", single}, {"special_tokens", special}};
  return detail::load_hf_tokenizer_json(fmt::format("{} vocabulary arrays", v.model), root, v.bos_id, v.eos_id);
}

}  // namespace crossicl
