#include "detail/utf8.h"

#include <cstring>

#include <fmt/format.h>

#include "crossicl/core/error.h"

namespace crossicl::detail {

void utf8_append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::size_t find_invalid_utf8(std::string_view s) {
  std::size_t i = 0;
  const std::size_t n = s.size();
  while (i < n) {
    // ASCII fast path, 8 bytes at a time.
    while (i + 8 <= n) {
      std::uint64_t w;
      std::memcpy(&w, s.data() + i, 8);
      if (w & 0x8080808080808080ULL) break;
      i += 8;
    }
    if (i >= n) break;
    const Utf8Char c = utf8_decode(s, i);
    if (!c.valid) return i;
    i += c.len;
  }
  return std::string_view::npos;
}

void check_utf8(std::string_view text) {
  const std::size_t at = find_invalid_utf8(text);
  if (at != std::string_view::npos) {
    throw InvalidArgument(
        fmt::format("text is not valid UTF-8 (invalid sequence at byte offset {}: 0x{:02x}; text has {} bytes)", at,
                    static_cast<unsigned char>(text[at]), text.size()));
  }
}

std::string utf8_lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  std::size_t i = 0;
  while (i < bytes.size()) {
    const Utf8Char c = utf8_decode(bytes, i);
    if (c.valid) {
      out.append(bytes.data() + i, c.len);
    } else {
      out += "\xEF\xBF\xBD";
    }
    i += c.len;
  }
  return out;
}

}  // namespace crossicl::detail
