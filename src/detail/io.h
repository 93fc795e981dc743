// File helpers shared by the loaders: whole-file and line-by-line reading of plain or gzip files, UTF-8 checks.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace crossicl::detail {

/// Reads a whole file; a gzip file (magic 1f 8b) is decompressed. Throws LoadError naming the path.
std::string read_file(const std::string& path);

/// Calls `fn(line, line_number)` (1-based, without the trailing "\n" or "\r\n") for every line of a plain or
/// gzip text file. A final line without "\n" is passed too; an empty trailing line is not.
void for_each_line(const std::string& path, const std::function<void(std::string_view, std::size_t)>& fn);

/// Appends the UTF-8 encoding of code point `cp` (<= U+10FFFF) to `out`.
void append_utf8(std::string& out, char32_t cp);

/// Byte offset of the first invalid UTF-8 sequence in `s`, or npos if `s` is valid UTF-8.
std::size_t find_invalid_utf8(std::string_view s);

}  // namespace crossicl::detail
