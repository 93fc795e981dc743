#include "crossicl/core/limits.h"

#include <cstdint>
#include <mutex>

#include <fmt/format.h>

#include "crossicl/core/error.h"

namespace crossicl {

namespace {

std::mutex& limits_mutex() {
  static std::mutex m;
  return m;
}

Limits& limits_in_force() {
  static Limits l;
  return l;
}

void check_range(std::int64_t value, const char* field, std::int64_t max = INT64_MAX) {
  if (value < 1 || value > max)
    throw InvalidArgument(fmt::format("Limits.{} must be in [1, {}] (got {})", field, max, value));
}

}  // namespace

Limits limits() {
  std::lock_guard<std::mutex> lock(limits_mutex());
  return limits_in_force();
}

void set_limits(const Limits& l) {
  check_range(l.max_json_depth, "max_json_depth", kMaxJsonDepthLimit);
  check_range(l.max_file_bytes, "max_file_bytes");
  check_range(l.max_vocab_size, "max_vocab_size", INT32_MAX);  // token ids are int32
  std::lock_guard<std::mutex> lock(limits_mutex());
  limits_in_force() = l;
}

}  // namespace crossicl
