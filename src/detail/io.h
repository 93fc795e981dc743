// File helpers shared by the loaders: whole-file and line-by-line reading of plain or gzip files. The UTF-8 checks
// that loaders apply to what they read are in detail/utf8.h, included here for them.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

#include "detail/utf8.h"

namespace crossicl::detail {

/// Reads a whole file; a gzip file (magic 1f 8b) is decompressed. Throws LoadError naming the path when it cannot
/// be read, is not a regular file (a FIFO, a device, a directory: never waited on) or holds more than
/// limits().max_file_bytes bytes after decompression (checked while reading, so a gzip bomb stops at the limit).
std::string read_file(const std::string& path);

/// Calls `fn(line, line_number)` (1-based, without the trailing "\n" or "\r\n") for every line of a plain or
/// gzip text file, read by read_file. A final line without "\n" is passed too; an empty trailing line is not.
void for_each_line(const std::string& path, const std::function<void(std::string_view, std::size_t)>& fn);

}  // namespace crossicl::detail
