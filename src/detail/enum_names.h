// Enums named by strings (scorers, test alternatives, engine options): one table of names per enum, in the order
// of its values (0, 1, ...), read by a parser and a name function, so no enum spells its names twice.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "crossicl/core/error.h"

namespace crossicl::detail {

/// The value named `name`, or nothing.
template <class E, std::size_t N>
std::optional<E> enum_from_name(const std::array<std::string_view, N>& names, std::string_view name) {
  for (std::size_t i = 0; i < N; ++i)
    if (names[i] == name) return static_cast<E>(i);
  return std::nullopt;
}

/// The name of `value` ("unknown" past the table).
template <class E, std::size_t N>
std::string_view enum_name(const std::array<std::string_view, N>& names, E value) {
  const auto i = static_cast<std::size_t>(value);
  return i < N ? names[i] : "unknown";
}

/// The names quoted with `quote` and joined by `sep`, the last pair by `last_sep`: '"a", "b", "c"' or
/// "'a', 'b' or 'c'".
template <std::size_t N>
std::string name_list(const std::array<std::string_view, N>& names, std::string_view quote, std::string_view sep,
                      std::string_view last_sep) {
  std::string out;
  for (std::size_t i = 0; i < N; ++i) {
    if (i > 0) out += i + 1 == N ? last_sep : sep;
    out.append(quote).append(names[i]).append(quote);
  }
  return out;
}

/// How parse_enum words its error: Unknown = 'unknown scorer "x" (valid: "a", "b", "c")' (core's parsers),
/// MustBe = "truncation must be 'a', 'b' or 'c' (got 'x')" (the engine's options).
enum class NameError { Unknown, MustBe };

/// The value named `name`; InvalidArgument naming `what`, the name and the valid names otherwise.
template <class E, std::size_t N>
E parse_enum(const std::array<std::string_view, N>& names, std::string_view name, std::string_view what,
             NameError style) {
  if (auto v = enum_from_name<E>(names, name)) return *v;
  if (style == NameError::Unknown)
    throw InvalidArgument(fmt::format("unknown {} \"{}\" (valid: {})", what, name, name_list(names, "\"", ", ", ", ")));
  throw InvalidArgument(fmt::format("{} must be {} (got '{}')", what, name_list(names, "'", ", ", " or "), name));
}

}  // namespace crossicl::detail
