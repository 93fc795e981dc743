#include "detail/json.h"

#include <cstdint>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "crossicl/core/error.h"
#include "crossicl/core/limits.h"

namespace crossicl::detail {

namespace {

// A string as a JSON string literal, from at most cap + 1 of its bytes (a cut character becomes U+FFFD).
void dump_string(const std::string& s, std::string& out, std::size_t cap) {
  const nlohmann::json cut = s.size() > cap + 1 ? s.substr(0, cap + 1) : s;
  out += cut.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Each level writes '[' or '{' before it descends and stops once `out` is past `cap`, so the recursion is never
// deeper than cap + 1 levels.
template <class Json>
void dump_into(const Json& j, std::string& out, std::size_t cap) {
  if (out.size() > cap) return;
  if (j.is_array() || j.is_object()) {
    out += j.is_array() ? '[' : '{';
    bool first = true;
    for (auto it = j.begin(); it != j.end() && out.size() <= cap; ++it) {
      if (!first) out += ',';
      first = false;
      if (j.is_object()) {
        dump_string(it.key(), out, cap);
        out += ':';
      }
      dump_into(it.value(), out, cap);
    }
    out += j.is_array() ? ']' : '}';
  } else if (j.is_string()) {
    dump_string(j.template get_ref<const std::string&>(), out, cap);
  } else {
    out += j.dump();  // a number, a boolean or null: no recursion
  }
}

template <class Json>
std::string short_dump_impl(const Json& j, std::size_t max_chars) {
  std::string out;
  dump_into(j, out, max_chars);
  if (out.size() <= max_chars) return out;
  std::size_t cut = max_chars;
  while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) --cut;  // whole UTF-8 characters
  out.resize(cut);
  return out + "...";
}

template <class Json>
void check_value_depth_impl(const Json& j, const std::string& where) {
  const std::int64_t max_depth = limits().max_json_depth;
  // Containers still to visit, with their depth (1 for j itself).
  std::vector<std::pair<const Json*, std::int64_t>> todo{{&j, 1}};
  while (!todo.empty()) {
    const auto [v, depth] = todo.back();
    todo.pop_back();
    if (!v->is_structured()) continue;
    if (depth > max_depth)
      throw InvalidArgument(
          fmt::format("{}: JSON nested deeper than {} levels (Limits.max_json_depth)", where, max_depth));
    for (const auto& child : *v)
      if (child.is_structured()) todo.emplace_back(&child, depth + 1);
  }
}

}  // namespace

void check_value_depth(const nlohmann::json& j, const std::string& where) { check_value_depth_impl(j, where); }

void check_value_depth(const nlohmann::ordered_json& j, const std::string& where) {
  check_value_depth_impl(j, where);
}

void check_json_depth(std::string_view text, const std::string& where) {
  const std::int64_t max_depth = limits().max_json_depth;
  std::int64_t depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // the escaped character, '"' included
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth)
        throw LoadError(fmt::format("{}: JSON nested deeper than {} levels at byte {} (Limits.max_json_depth)",
                                    where, max_depth, i));
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
}

namespace {

// nlohmann reports a number too large for a double (1e400) as out_of_range, not parse_error, so callers that word
// syntax errors themselves would let it escape without the file name: it becomes a LoadError naming `where`.
template <class Json>
Json parse_checked(std::string_view text, const std::string& where) {
  check_json_depth(text, where);
  try {
    return Json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::out_of_range& e) {
    throw LoadError(fmt::format("{}: malformed JSON: {}", where, e.what()));
  }
}

}  // namespace

nlohmann::json parse_json(std::string_view text, const std::string& where) {
  return parse_checked<nlohmann::json>(text, where);
}

nlohmann::ordered_json parse_ordered_json(std::string_view text, const std::string& where) {
  return parse_checked<nlohmann::ordered_json>(text, where);
}

std::string short_dump(const nlohmann::json& j, std::size_t max_chars) { return short_dump_impl(j, max_chars); }

std::string short_dump(const nlohmann::ordered_json& j, std::size_t max_chars) {
  return short_dump_impl(j, max_chars);
}

}  // namespace crossicl::detail
