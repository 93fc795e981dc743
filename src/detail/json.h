// JSON for every loader: the text's nesting depth is checked against limits().max_json_depth before nlohmann
// builds anything, and error messages show JSON values through short_dump. A value nested 100,000 levels deep
// parses and is destroyed without recursion, but crashes (stack overflow) everything that walks it recursively:
// nlohmann's dump(), copies between json types, the Sequence loaders of tokenizer.json and the Python conversion.
// Checking the text first keeps every later walk within the limit.
//
//   const nlohmann::json j = detail::parse_json(text, path);   // LoadError if too deep
//   throw LoadError(fmt::format("{}: bad merge {}", path, detail::short_dump(m)));
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace crossicl::detail {

/// Length limit of short_dump, in bytes, before the "..." it appends.
constexpr std::size_t kShortDumpChars = 80;

/// Throws LoadError "<where>: JSON nested deeper than N levels at byte B (Limits.max_json_depth)" when the arrays
/// and objects of `text` nest deeper than limits().max_json_depth. One O(n) pass that skips string contents
/// (escapes included); it says nothing else about whether `text` is valid JSON.
void check_json_depth(std::string_view text, const std::string& where);

/// The same check on a value already built (by a C++ caller that parsed it itself), without recursion; throws
/// InvalidArgument "<where>: JSON nested deeper than N levels (Limits.max_json_depth)".
void check_value_depth(const nlohmann::json& j, const std::string& where);
void check_value_depth(const nlohmann::ordered_json& j, const std::string& where);

/// check_json_depth(text, where), then nlohmann::json::parse(text). A syntax error propagates as nlohmann's
/// parse_error (its .byte is the offset), so that each loader words it with its own context.
nlohmann::json parse_json(std::string_view text, const std::string& where);

/// parse_json keeping object keys in file order.
nlohmann::ordered_json parse_ordered_json(std::string_view text, const std::string& where);

/// `j` as compact JSON for an error message: at most `max_chars` bytes of output followed by "..." when cut,
/// invalid UTF-8 replaced by U+FFFD. Its recursion is bounded by `max_chars`, whatever the depth of `j`.
std::string short_dump(const nlohmann::json& j, std::size_t max_chars = kShortDumpChars);
std::string short_dump(const nlohmann::ordered_json& j, std::size_t max_chars = kShortDumpChars);

}  // namespace crossicl::detail
