// Sizes computed from numbers read out of a file (shape products, byte counts): the overflow checks the loaders
// share, each failure a LoadError naming the file. Header-only and torch-free, so the torch-free header parsers
// (and their fuzz targets) use them too.
#pragma once

#include <cstdint>
#include <string>

#include <fmt/format.h>

#include "crossicl/core/error.h"

namespace crossicl::detail {

/// a * b, throwing LoadError "<what>: size overflows (a * b)" when it does not fit std::uint64_t.
inline std::uint64_t checked_mul(std::uint64_t a, std::uint64_t b, const std::string& what) {
  std::uint64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) throw LoadError(fmt::format("{}: size overflows ({} * {})", what, a, b));
  return r;
}

/// a * b of two sizes read from `path` (e.g. n_heads * head_dim), throwing LoadError "<path>: <name> overflows
/// (a * b)" when it does not fit std::int64_t.
inline std::int64_t checked_dim_product(std::int64_t a, std::int64_t b, const std::string& path, const char* name) {
  std::int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) throw LoadError(fmt::format("{}: {} overflows ({} * {})", path, name, a, b));
  return r;
}

}  // namespace crossicl::detail
