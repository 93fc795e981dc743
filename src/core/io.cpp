#include "detail/io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>

#include <fmt/format.h>

#include "crossicl/core/error.h"
#include "crossicl/core/limits.h"

namespace crossicl::detail {

namespace {

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};

// The file opened for reading once it is known to be a regular file. O_NONBLOCK keeps open() from waiting for a
// writer when the path is a FIFO; the fstat on the open descriptor then refuses it (and a device, a directory).
int open_regular_file(const std::string& path, std::int64_t& size) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) throw LoadError(fmt::format("cannot open '{}': {}", path, std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw LoadError(fmt::format("cannot read '{}': not a regular file", path));
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  size = static_cast<std::int64_t>(st.st_size);
  return fd;
}

}  // namespace

std::string read_file(const std::string& path) {
  const std::int64_t max_bytes = limits().max_file_bytes;
  std::int64_t size = 0;
  const int fd = open_regular_file(path, size);
  // gzdopen reads plain files transparently, so one code path serves both; it owns fd from here on.
  std::unique_ptr<gzFile_s, GzCloser> f(gzdopen(fd, "rb"));
  if (!f) {
    ::close(fd);
    throw LoadError(fmt::format("cannot open '{}'", path));
  }
  if (gzdirect(f.get()) && size > max_bytes)
    throw LoadError(
        fmt::format("'{}' has {} bytes, more than Limits.max_file_bytes ({})", path, size, max_bytes));
  std::string out;
  if (gzdirect(f.get())) out.reserve(static_cast<std::size_t>(size));
  char buf[1 << 16];
  for (;;) {
    int n = gzread(f.get(), buf, sizeof(buf));
    if (n < 0) {
      int errnum = 0;
      const char* msg = gzerror(f.get(), &errnum);
      throw LoadError(fmt::format("cannot read '{}' at byte {}: {}", path, out.size(), msg ? msg : "?"));
    }
    if (n == 0) break;
    // Checked as it reads: a small .gz file can expand to far more than memory.
    if (static_cast<std::int64_t>(out.size()) + n > max_bytes)
      throw LoadError(fmt::format("'{}' {} more than Limits.max_file_bytes ({}) bytes", path,
                                  gzdirect(f.get()) ? "has" : "decompresses to", max_bytes));
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

void for_each_line(const std::string& path, const std::function<void(std::string_view, std::size_t)>& fn) {
  const std::string text = read_file(path);
  std::size_t line_no = 0, pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    std::size_t next = end == std::string::npos ? text.size() : end + 1;
    if (end == std::string::npos) end = text.size();
    std::size_t stop = end;
    if (stop > pos && text[stop - 1] == '\r') --stop;
    ++line_no;
    fn(std::string_view(text).substr(pos, stop - pos), line_no);
    pos = next;
  }
}

}  // namespace crossicl::detail
