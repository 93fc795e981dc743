// The generated Unicode class table and the hand-written pre-tokenizer matchers.
#include <algorithm>
#include <string>

#include "detail/tokenizer_pretok.h"
#include "detail/unicode_class.h"
#include "detail/utf8.h"

namespace crossicl::detail {

namespace {
#include "detail/unicode_tables.inc"
}  // namespace

UClass unicode_class_slow(std::uint32_t cp) {
  const UnicodeRange* end = kUnicodeRanges + kUnicodeRangeCount;
  const UnicodeRange* it =
      std::upper_bound(kUnicodeRanges, end, cp, [](std::uint32_t c, const UnicodeRange& r) { return c < r.first; });
  if (it == kUnicodeRanges) return UClass::kOther;
  --it;
  return cp <= it->last ? static_cast<UClass>(it->cls) : UClass::kOther;
}

// ------------------------------------------------------------------------------------------ pre-tokenizers

namespace {

constexpr std::string_view kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr std::string_view kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// Cursor over valid UTF-8: class and length of the character at a byte offset.
struct Text {
  std::string_view s;
  UClass cls_at(std::size_t i, std::size_t& len, std::uint32_t& cp) const {
    cp = utf8_decode_valid(s, i, len);
    return unicode_class(cp);
  }
  UClass cls_at(std::size_t i, std::size_t& len) const {
    std::uint32_t cp;
    return cls_at(i, len, cp);
  }
  // End of the run of characters of class `c` starting at i (at most `max_chars` characters).
  std::size_t run(std::size_t i, UClass c, std::size_t max_chars = static_cast<std::size_t>(-1)) const {
    std::size_t count = 0, len = 0;
    while (i < s.size() && count < max_chars && cls_at(i, len) == c) i += len, ++count;
    return i;
  }
};

bool is_lower_ascii(char c, char lower, bool ignore_case) {
  return c == lower || (ignore_case && c == lower - 'a' + 'A');
}

// 's|'t|'re|'ve|'m|'ll|'d (optionally case-insensitive); returns the match end or 0.
std::size_t match_contraction(std::string_view s, std::size_t i, bool ignore_case) {
  if (s[i] != '\'' || i + 1 >= s.size()) return 0;
  const char c = s[i + 1];
  for (char one : {'s', 't', 'm', 'd'}) {
    if (is_lower_ascii(c, one, ignore_case)) return i + 2;
  }
  // (?i) also folds U+017F LATIN SMALL LETTER LONG S to 's'.
  if (ignore_case && s.compare(i + 1, 2, "\xC5\xBF") == 0) return i + 3;
  if (i + 2 >= s.size()) return 0;
  const char d = s[i + 2];
  if ((is_lower_ascii(c, 'r', ignore_case) && is_lower_ascii(d, 'e', ignore_case)) ||
      (is_lower_ascii(c, 'v', ignore_case) && is_lower_ascii(d, 'e', ignore_case)) ||
      (is_lower_ascii(c, 'l', ignore_case) && is_lower_ascii(d, 'l', ignore_case))) {
    return i + 3;
  }
  return 0;
}

// \s+(?!\S)|\s+ at i, where s[i] is whitespace.
std::size_t match_trailing_space(const Text& t, std::size_t i) {
  std::size_t k = i, last = i, len = 0;
  while (k < t.s.size() && t.cls_at(k, len) == UClass::kSpace) last = k, k += len;
  if (k == t.s.size()) return k;
  // Followed by a non-space: give back the last space so that it can lead the next word.
  return last > i ? last : k;
}

std::size_t match_gpt2(const Text& t, std::size_t i) {
  const std::string_view s = t.s;
  if (std::size_t e = match_contraction(s, i, false)) return e;
  std::size_t len = 0;
  const UClass c0 = t.cls_at(i, len);
  // ' ?\p{L}+' | ' ?\p{N}+' | ' ?[^\s\p{L}\p{N}]+'
  std::size_t j = i;
  UClass cj = c0;
  if (s[i] == ' ' && i + 1 < s.size()) {
    std::size_t l2 = 0;
    const UClass c1 = t.cls_at(i + 1, l2);
    if (c1 != UClass::kSpace) j = i + 1, cj = c1;
  }
  if (cj != UClass::kSpace) return t.run(j, cj);
  return match_trailing_space(t, i);
}

std::size_t match_llama3(const Text& t, std::size_t i, std::size_t max_digits) {
  const std::string_view s = t.s;
  if (std::size_t e = match_contraction(s, i, true)) return e;
  std::size_t len0 = 0;
  const UClass c0 = t.cls_at(i, len0);
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (c0 == UClass::kLetter) return t.run(i, UClass::kLetter);
  if (c0 != UClass::kNumber && s[i] != '\r' && s[i] != '\n' && i + len0 < s.size()) {
    std::size_t l1 = 0;
    if (t.cls_at(i + len0, l1) == UClass::kLetter) return t.run(i + len0, UClass::kLetter);
  }
  // \p{N}{1,3}
  if (c0 == UClass::kNumber) return t.run(i, UClass::kNumber, max_digits);
  // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
  std::size_t j = i;
  UClass cj = c0;
  if (s[i] == ' ' && i + 1 < s.size()) {
    std::size_t l1 = 0;
    const UClass c1 = t.cls_at(i + 1, l1);
    if (c1 == UClass::kOther) j = i + 1, cj = c1;
  }
  if (cj == UClass::kOther) {
    std::size_t e = t.run(j, UClass::kOther);
    while (e < s.size() && (s[e] == '\r' || s[e] == '\n')) ++e;
    return e;
  }
  // \s*[\r\n]+ : the whitespace run up to and including its last line break.
  std::size_t k = i, len = 0, after_break = 0;
  while (k < s.size() && t.cls_at(k, len) == UClass::kSpace) {
    if (s[k] == '\r' || s[k] == '\n') after_break = k + 1;
    k += len;
  }
  if (after_break) return after_break;
  return match_trailing_space(t, i);
}

}  // namespace

std::string_view split_pattern_regex(SplitPattern pattern) {
  switch (pattern) {
    case SplitPattern::kGpt2:
      return kGpt2Regex;
    case SplitPattern::kLlama3:
      return kLlama3Regex;
    case SplitPattern::kQwen2:
      return kQwen2Regex;
  }
  return kGpt2Regex;
}

bool recognize_split_pattern(std::string_view regex, SplitPattern& out) {
  if (regex == kGpt2Regex) {
    out = SplitPattern::kGpt2;
  } else if (regex == kLlama3Regex) {
    out = SplitPattern::kLlama3;
  } else if (regex == kQwen2Regex) {
    out = SplitPattern::kQwen2;
  } else {
    return false;
  }
  return true;
}

std::size_t match_split_pattern(SplitPattern pattern, std::string_view text, std::size_t pos) {
  const Text t{text};
  switch (pattern) {
    case SplitPattern::kGpt2:
      return match_gpt2(t, pos);
    case SplitPattern::kLlama3:
      return match_llama3(t, pos, 3);
    case SplitPattern::kQwen2:
      return match_llama3(t, pos, 1);
  }
  return text.size();
}

std::vector<std::pair<std::size_t, std::size_t>> split_by_pattern(SplitPattern pattern, std::string_view text) {
  std::vector<std::pair<std::size_t, std::size_t>> out;
  std::size_t i = 0;
  while (i < text.size()) {
    const std::size_t e = match_split_pattern(pattern, text, i);
    out.emplace_back(i, e);
    i = e;
  }
  return out;
}

}  // namespace crossicl::detail
