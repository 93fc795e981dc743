// Errors thrown by crossicl. Library code never exits or aborts: wrong input throws InvalidArgument, a file
// that cannot be read or parsed throws LoadError. Messages carry the offending values, the file and the line.
// Python sees InvalidArgument as crossicl.InvalidArgument (a ValueError) and LoadError as crossicl.LoadError
// (a RuntimeError).
#pragma once

#include <stdexcept>
#include <string>

namespace crossicl {

/// Wrong argument value, e.g. `"k must be <= pool size (k=5, pool=3)"`. Python: `ValueError`.
class InvalidArgument : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// A file that is missing, truncated or malformed; the message names the file and the line or offset.
/// Python: `crossicl.LoadError`, a `RuntimeError`.
class LoadError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace crossicl
