// Hand-written matchers of the pre-tokenizer regexes used by byte-level BPE tokenizers (no regex library):
//   kGpt2   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   kLlama3 (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
//           \s*[\r\n]+|\s+(?!\S)|\s+
//   kQwen2  the LLaMA-3 pattern with \p{N} instead of \p{N}{1,3}
// Each follows the regex's ordered alternation and backtracking exactly (as Oniguruma/fancy-regex do).
#pragma once

#include <cstddef>
#include <string_view>
#include <utility>
#include <vector>

namespace crossicl::detail {

/// A pre-tokenizer pattern implemented by hand.
enum class SplitPattern { kGpt2, kLlama3, kQwen2 };

/// The regex (as tokenizer.json writes it) that `pattern` implements.
std::string_view split_pattern_regex(SplitPattern pattern);

/// Which hand-written pattern a regex string of tokenizer.json is; false when it is none of them.
bool recognize_split_pattern(std::string_view regex, SplitPattern& out);

/// End (byte offset) of the match of `pattern` starting at `pos` of valid UTF-8 `text` (pos < text.size()).
/// The patterns above match at every position, so the result is always > pos.
std::size_t match_split_pattern(SplitPattern pattern, std::string_view text, std::size_t pos);

/// Byte spans [begin, end) of the successive matches of `pattern` over `text` (they tile the text).
std::vector<std::pair<std::size_t, std::size_t>> split_by_pattern(SplitPattern pattern, std::string_view text);

}  // namespace crossicl::detail
