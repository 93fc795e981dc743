// UTF-8 in one place: decoding one code point (strict, with an explicit validity result, or fast with U+FFFD for
// text expected to be valid), encoding, validation, the check that throws, and lossy repair. Used by the core loaders
// (dataset lines), the scorer's str.lower() and the tokenizers; implemented in src/core/utf8.cpp.
//
// "Valid" is Unicode's well-formed UTF-8 (Table 3-7): no overlong forms, no surrogates (U+D800..U+DFFF), nothing
// past U+10FFFF, no truncated sequences.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace crossicl::detail {

/// Code point reported by utf8_decode for an invalid sequence (not a Unicode scalar value).
inline constexpr char32_t kUtf8Invalid = 0xFFFFFFFFu;

/// One sequence read by utf8_decode.
struct Utf8Char {
  char32_t cp;      // the code point; kUtf8Invalid when !valid
  std::size_t len;  // bytes: the whole sequence when valid; when invalid, the maximal invalid subpart (>= 1): the
                    // lead byte plus the continuation bytes that could still begin a valid sequence
  bool valid;       // a well-formed sequence starts at the offset
};

/// Strict decoding of the sequence starting at `s[i]` (requires i < s.size()); never reads past `s`.
///
///   utf8_decode("\xC3\xA9", 0)  -> {U+00E9, 2, true}
///   utf8_decode("\xE2\x82", 0)  -> {kUtf8Invalid, 2, false}   (truncated)
///   utf8_decode("\xC0\xAF", 0)  -> {kUtf8Invalid, 1, false}   (overlong: C0 never starts a sequence)
inline Utf8Char utf8_decode(std::string_view s, std::size_t i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) return {b0, 1, true};
  std::size_t need = 0;                // continuation bytes
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  char32_t cp = 0;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1, cp = b0 & 0x1Fu;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 2, cp = b0 & 0x0Fu;
    if (b0 == 0xE0) lo = 0xA0;  // overlong
    if (b0 == 0xED) hi = 0x9F;  // surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 3, cp = b0 & 0x07u;
    if (b0 == 0xF0) lo = 0x90;  // overlong
    if (b0 == 0xF4) hi = 0x8F;  // past U+10FFFF
  } else {
    return {kUtf8Invalid, 1, false};  // continuation byte, C0/C1 (always overlong) or F5..FF
  }
  for (std::size_t k = 1; k <= need; ++k) {
    if (i + k >= s.size()) return {kUtf8Invalid, k, false};
    const auto b = static_cast<unsigned char>(s[i + k]);
    if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF)) return {kUtf8Invalid, k, false};
    cp = (cp << 6) | (b & 0x3Fu);
  }
  return {cp, need + 1, true};
}

/// Byte length that the lead byte `b` announces: 1 for ASCII and for continuation bytes (0x80..0xBF), 2 for
/// 0xC0..0xDF, 3 for 0xE0..0xEF, 4 for 0xF0..0xFF. Does not validate.
inline std::size_t utf8_len(unsigned char b) {
  return b < 0xC0 ? 1 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : 4;
}

/// U+FFFD REPLACEMENT CHARACTER, what utf8_decode_valid gives for a byte that does not start a valid sequence.
inline constexpr char32_t kUtf8Replacement = 0xFFFD;

/// Decoding of the code point starting at `s[i]` (requires i < s.size()) of text expected to be valid UTF-8, with
/// a fast path for ASCII; stores its byte length in `len`. Never reads past `s`: a byte that does not start a
/// well-formed sequence (a continuation byte, a truncated or overlong sequence, a surrogate) gives U+FFFD with
/// len 1, so a caller stepping by `len` visits every byte and stays inside the text.
///
///   utf8_decode_valid("\xC3\xA9", 0, len)  -> U+00E9, len 2
///   utf8_decode_valid("\xE2\x82", 0, len)  -> U+FFFD, len 1   (truncated)
inline char32_t utf8_decode_valid(std::string_view s, std::size_t i, std::size_t& len) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    len = 1;
    return b0;
  }
  const Utf8Char c = utf8_decode(s, i);
  len = c.valid ? c.len : 1;
  return c.valid ? c.cp : kUtf8Replacement;
}

/// Appends the UTF-8 encoding of `cp` (<= U+10FFFF; surrogates are encoded as their 3 bytes) to `out`.
void utf8_append(std::string& out, char32_t cp);

/// Byte offset of the first invalid sequence in `s` (see utf8_decode), or std::string_view::npos when `s` is
/// valid UTF-8.
std::size_t find_invalid_utf8(std::string_view s);

/// Throws InvalidArgument naming the offset and byte when `text` is not valid UTF-8.
void check_utf8(std::string_view text);

/// `bytes` as UTF-8 text with each maximal invalid subpart replaced by U+FFFD (Rust's from_utf8_lossy).
std::string utf8_lossy(std::string_view bytes);

}  // namespace crossicl::detail
