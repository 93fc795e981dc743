#include "detail/io.h"

#include <zlib.h>

#include <cstdio>
#include <fstream>
#include <memory>

#include <fmt/format.h>

#include "crossicl/core/error.h"

namespace crossicl::detail {

namespace {

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};

}  // namespace

std::string read_file(const std::string& path) {
  // gzopen reads plain files transparently, so one code path serves both.
  std::unique_ptr<gzFile_s, GzCloser> f(gzopen(path.c_str(), "rb"));
  if (!f) throw LoadError(fmt::format("cannot open '{}'", path));
  std::string out;
  char buf[1 << 16];
  for (;;) {
    int n = gzread(f.get(), buf, sizeof(buf));
    if (n < 0) {
      int errnum = 0;
      const char* msg = gzerror(f.get(), &errnum);
      throw LoadError(fmt::format("cannot read '{}' at byte {}: {}", path, out.size(), msg ? msg : "?"));
    }
    if (n == 0) break;
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
