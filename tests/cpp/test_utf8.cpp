// detail/utf8.h: strict and fast decoding, encoding, validation, the throwing check and lossy repair. The cases on
// invalid input pin today's behaviour (a later change that hardens invalid input will update them on purpose).
#include <catch2/catch.hpp>

#include <string>
#include <string_view>

#include "crossicl/core/error.h"
#include "detail/utf8.h"

using crossicl::detail::kUtf8Invalid;
using crossicl::detail::Utf8Char;
using crossicl::detail::utf8_decode;

namespace {

void check_valid(std::string_view s, char32_t cp) {
  INFO("sequence of " << s.size() << " bytes, U+" << std::hex << static_cast<std::uint32_t>(cp));
  const Utf8Char c = utf8_decode(s, 0);
  CHECK(c.valid);
  CHECK(c.cp == cp);
  CHECK(c.len == s.size());
  std::size_t len = 0;
  CHECK(crossicl::detail::utf8_decode_valid(s, 0, len) == cp);
  CHECK(len == s.size());
  std::string enc;
  crossicl::detail::utf8_append(enc, cp);
  CHECK(enc == s);
}

// Strict decoding of `s` at 0 is invalid, with `len` bytes of maximal invalid subpart.
void check_invalid(std::string_view s, std::size_t len) {
  const Utf8Char c = utf8_decode(s, 0);
  CHECK_FALSE(c.valid);
  CHECK(c.cp == kUtf8Invalid);
  CHECK(c.len == len);
}

}  // namespace

TEST_CASE("utf8_decode reads valid sequences of 1 to 4 bytes at their boundaries", "[utf8]") {
  check_valid(std::string_view("\0", 1), 0x00);
  check_valid("A", 0x41);
  check_valid("\x7F", 0x7F);
  check_valid("\xC2\x80", 0x80);
  check_valid("\xC3\xA9", 0xE9);
  check_valid("\xDF\xBF", 0x7FF);
  check_valid("\xE0\xA0\x80", 0x800);
  check_valid("\xE2\x82\xAC", 0x20AC);
  check_valid("\xED\x9F\xBF", 0xD7FF);
  check_valid("\xEE\x80\x80", 0xE000);
  check_valid("\xEF\xBF\xBF", 0xFFFF);
  check_valid("\xF0\x90\x80\x80", 0x10000);
  check_valid("\xF0\x9F\x98\x80", 0x1F600);
  check_valid("\xF4\x8F\xBF\xBF", 0x10FFFF);
}

TEST_CASE("utf8_decode at an offset inside the text", "[utf8]") {
  const std::string s = "a\xC3\xA9\xE2\x82\xAC";
  CHECK(utf8_decode(s, 1).cp == 0xE9);
  CHECK(utf8_decode(s, 3).cp == 0x20AC);
  CHECK(utf8_decode(s, 3).len == 3);
}

TEST_CASE("utf8_decode and utf8_append round-trip every scalar value", "[utf8]") {
  std::size_t bad = 0;
  for (char32_t cp = 0; cp <= 0x10FFFF; ++cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    std::string s;
    crossicl::detail::utf8_append(s, cp);
    const Utf8Char c = utf8_decode(s, 0);
    if (!c.valid || c.cp != cp || c.len != s.size() || crossicl::detail::find_invalid_utf8(s) != std::string::npos) {
      ++bad;
    }
  }
  CHECK(bad == 0);
}

TEST_CASE("utf8_decode rejects overlong forms", "[utf8]") {
  check_invalid("\xC0\xAF", 1);  // C0/C1 never start a sequence
  check_invalid("\xC1\xBF", 1);
  check_invalid("\xE0\x80\xAF", 1);  // E0 needs A0..BF next
  check_invalid("\xE0\x9F\xBF", 1);
  check_invalid("\xF0\x80\x80\xAF", 1);  // F0 needs 90..BF next
  check_invalid("\xF0\x8F\xBF\xBF", 1);
}

TEST_CASE("utf8_decode rejects surrogates and values past U+10FFFF", "[utf8]") {
  check_invalid("\xED\xA0\x80", 1);  // U+D800
  check_invalid("\xED\xBF\xBF", 1);  // U+DFFF
  check_invalid("\xF4\x90\x80\x80", 1);  // U+110000
  check_invalid("\xF5\x80\x80\x80", 1);
  check_invalid("\xF8\x88\x80\x80\x80", 1);
  check_invalid("\xFF", 1);
}

TEST_CASE("utf8_decode rejects stray continuation bytes and truncated sequences", "[utf8]") {
  check_invalid("\x80", 1);
  check_invalid("\xBF" "A", 1);
  check_invalid("\xC3", 1);          // lead at the end of the text
  check_invalid("\xC3" "A", 1);      // lead followed by a non-continuation
  check_invalid("\xE2", 1);
  check_invalid("\xE2\x82", 2);      // the maximal subpart: lead + the continuation that fits
  check_invalid("\xE2\x82" "A", 2);
  check_invalid("\xF0\x9F", 2);
  check_invalid("\xF0\x9F\x98", 3);
  check_invalid("\xF0\x9F\x98" "A", 3);
  // Never reads past the view.
  const std::string s = "\xE2\x82\xAC";
  check_invalid(std::string_view(s).substr(0, 2), 2);
}

TEST_CASE("utf8_decode_valid gives U+FFFD for one byte of invalid input and never reads past the text", "[utf8]") {
  using crossicl::detail::kUtf8Replacement;
  using crossicl::detail::utf8_decode_valid;
  std::size_t len = 0;
  CHECK(utf8_decode_valid("\xC3\xA9", 0, len) == 0xE9);
  CHECK(len == 2);
  CHECK(utf8_decode_valid("\x80\x80", 0, len) == kUtf8Replacement);  // continuation byte as lead
  CHECK(len == 1);
  CHECK(utf8_decode_valid("\xC0\xAF", 0, len) == kUtf8Replacement);  // overlong
  CHECK(len == 1);
  CHECK(utf8_decode_valid("\xED\xA0\x80", 0, len) == kUtf8Replacement);  // surrogate
  CHECK(len == 1);
  CHECK(utf8_decode_valid("\xF4\x90\x80\x80", 0, len) == kUtf8Replacement);  // above U+10FFFF
  CHECK(len == 1);
  CHECK(utf8_decode_valid("\xC3" "A", 0, len) == kUtf8Replacement);  // lead without its continuation
  CHECK(len == 1);
  // A truncated sequence at the end of a view: the bytes after the view are valid continuations, but unread.
  const std::string text = "\xE2\x82\xAC";
  CHECK(utf8_decode_valid(std::string_view(text).substr(0, 2), 0, len) == kUtf8Replacement);
  CHECK(len == 1);
}

TEST_CASE("utf8_len is the length the lead byte announces", "[utf8]") {
  using crossicl::detail::utf8_len;
  CHECK(utf8_len(0x00) == 1);
  CHECK(utf8_len(0x7F) == 1);
  CHECK(utf8_len(0x80) == 1);  // continuation bytes count as 1
  CHECK(utf8_len(0xBF) == 1);
  CHECK(utf8_len(0xC0) == 2);
  CHECK(utf8_len(0xDF) == 2);
  CHECK(utf8_len(0xE0) == 3);
  CHECK(utf8_len(0xEF) == 3);
  CHECK(utf8_len(0xF0) == 4);
  CHECK(utf8_len(0xFF) == 4);
}

TEST_CASE("utf8_append encodes a surrogate as its three bytes", "[utf8]") {
  std::string s;
  crossicl::detail::utf8_append(s, 0xD800);
  CHECK(s == "\xED\xA0\x80");
}

TEST_CASE("find_invalid_utf8 gives the offset of the first invalid sequence", "[utf8]") {
  using crossicl::detail::find_invalid_utf8;
  constexpr auto npos = std::string_view::npos;
  CHECK(find_invalid_utf8("") == npos);
  CHECK(find_invalid_utf8("plain ascii, longer than one 8-byte word") == npos);
  CHECK(find_invalid_utf8("caf\xC3\xA9 \xF0\x9F\x98\x80 \xE2\x82\xAC") == npos);
  CHECK(find_invalid_utf8("abcdefghijklm\xFF") == 13);  // after the 8-byte ASCII fast path
  CHECK(find_invalid_utf8("ab\xFF") == 2);
  CHECK(find_invalid_utf8("a\xC0\xAF") == 1);
  CHECK(find_invalid_utf8("a\xED\xA0\x80") == 1);
  CHECK(find_invalid_utf8("a\xE2\x82") == 1);
  CHECK(find_invalid_utf8("\xC3\xA9\x80") == 2);
}

TEST_CASE("check_utf8 throws InvalidArgument naming the offset and byte", "[utf8]") {
  CHECK_NOTHROW(crossicl::detail::check_utf8("caf\xC3\xA9"));
  try {
    crossicl::detail::check_utf8("ab\xFF");
    FAIL("no exception");
  } catch (const crossicl::InvalidArgument& e) {
    const std::string what = e.what();
    CHECK(what.find("byte offset 2") != std::string::npos);
    CHECK(what.find("0xff") != std::string::npos);
  }
}

TEST_CASE("utf8_lossy replaces each maximal invalid subpart with U+FFFD", "[utf8]") {
  using crossicl::detail::utf8_lossy;
  const std::string fffd = "\xEF\xBF\xBD";
  CHECK(utf8_lossy("caf\xC3\xA9") == "caf\xC3\xA9");
  CHECK(utf8_lossy("a\xF0\x9F\x98" "b\xFF") == "a" + fffd + "b" + fffd);
  CHECK(utf8_lossy("\xE0\x80\xAF") == fffd + fffd + fffd);  // overlong: every byte on its own
  CHECK(utf8_lossy("\xED\xA0\x80") == fffd + fffd + fffd);  // surrogate
  CHECK(utf8_lossy("\xE2\x82" "A") == fffd + "A");           // truncated: one replacement
  CHECK(utf8_lossy("") == "");
}
