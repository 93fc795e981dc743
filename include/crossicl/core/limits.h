// Bounds on what crossicl accepts from files and arguments it does not control. Each one stops a small input
// from asking for a huge allocation or a deep recursion: a 100-byte tokenizer.json naming token id 10^8, a 1 MB
// .jsonl.gz that expands to gigabytes, a JSON value nested 100,000 levels deep. Going over a limit throws
// LoadError (a file) or InvalidArgument (an argument) naming the file, the value and the limit.
//
// The limits are process-wide (set_limits), read when a file is opened or an argument is checked. The defaults
// are far above every real model and dataset; raise one for an unusual file rather than switching it off.
#pragma once

#include <cstdint>

namespace crossicl {

/// Highest accepted Limits::max_json_depth: code that walks a JSON value recursively (copies, the Python
/// conversion, the tokenizer.json Sequence loaders) stays well inside an 8 MB thread stack up to this depth.
constexpr std::int64_t kMaxJsonDepthLimit = 10000;

/// Process-wide input limits.
///
///   Limits l = limits();
///   l.max_file_bytes = std::int64_t{16} << 30;  // a 16 GiB dataset
///   set_limits(l);
struct Limits {
  std::int64_t max_json_depth = 256;       // deepest nesting of arrays and objects in a JSON file, JSON line or
                                           // Python value converted to JSON (1 .. kMaxJsonDepthLimit)
  std::int64_t max_file_bytes = std::int64_t{4} << 30;  // bytes of one dataset, task-card or pack file after gzip
                                                        // decompression (>= 1)
  std::int64_t max_vocab_size = std::int64_t{1} << 21;  // tokens in a vocabulary: every token id read from a file
                                                        // must be < this (>= 1)
};

/// The limits in force.
Limits limits();

/// Replaces the limits in force (every thread sees them from the next file it opens); throws InvalidArgument
/// naming a field that is out of range and leaves the limits unchanged.
void set_limits(const Limits& limits);

}  // namespace crossicl
