// Helpers shared by the libFuzzer targets: a scratch file for loaders that take a path, and splitting one input
// into parts. Each target catches only crossicl's own exception types (LoadError, InvalidArgument): anything else
// escaping, a crash, a sanitizer report, a leak, a timeout or an allocation over -malloc_limit_mb is a finding.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace crossicl::fuzz {

/// Removes the folder `dir` and the files directly in it (scratch folders hold no subfolders).
inline void remove_files(const std::string& dir) {
  if (DIR* d = ::opendir(dir.c_str())) {
    while (const dirent* e = ::readdir(d))
      if (e->d_name[0] != '.') ::unlink((dir + "/" + e->d_name).c_str());
    ::closedir(d);
  }
  ::rmdir(dir.c_str());
}

/// A directory of this process, /dev/shm/crossicl-fuzz-<pid> (or under $TMPDIR or /tmp when /dev/shm is not
/// writable: a file written to a disk folder costs ~0.2 ms, several times the work of a small input), created on
/// first use and removed at exit; files in it are overwritten by every input (libFuzzer runs one input at a time).
/// A crash skips the exit handler, so the folders of processes that no longer exist are removed first.
inline const std::string& scratch_dir() {
  // Never destroyed: the exit handler below runs after the destructors of function-local statics.
  static const std::string* dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    const std::string base = ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : tmp && *tmp ? tmp : "/tmp";
    const std::string prefix = "crossicl-fuzz-";
    if (DIR* d = ::opendir(base.c_str())) {
      while (const dirent* e = ::readdir(d)) {
        const std::string name = e->d_name;
        if (name.rfind(prefix, 0) != 0) continue;
        const std::string pid = name.substr(prefix.size());
        if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
        if (::access(("/proc/" + pid).c_str(), F_OK) == 0) continue;  // still running
        remove_files(base + "/" + name);
      }
      ::closedir(d);
    }
    auto* path = new std::string(base + "/" + prefix + std::to_string(::getpid()));
    remove_files(*path);
    if (::mkdir(path->c_str(), 0700) != 0) std::abort();
    std::atexit([] { remove_files(scratch_dir()); });
    return path;
  }();
  return *dir;
}

/// Writes `bytes` to scratch_dir()/name and returns the path.
inline std::string write_scratch(const std::string& name, std::string_view bytes) {
  const std::string path = scratch_dir() + "/" + name;
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) std::abort();
  for (std::size_t done = 0; done < bytes.size();) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n <= 0) std::abort();
    done += static_cast<std::size_t>(n);
  }
  ::close(fd);
  return path;
}

/// Removes scratch_dir()/name if present.
inline void remove_scratch(const std::string& name) { ::unlink((scratch_dir() + "/" + name).c_str()); }

/// The input split at its first `parts - 1` NUL bytes (missing parts are empty). JSON never holds a raw NUL, so
/// "json \0 text" separates a document from the text run through it.
inline std::vector<std::string_view> split_nul(const std::uint8_t* data, std::size_t size, std::size_t parts) {
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> out;
  while (out.size() + 1 < parts) {
    const std::size_t nul = rest.find('\0');
    if (nul == std::string_view::npos) break;
    out.push_back(rest.substr(0, nul));
    rest.remove_prefix(nul + 1);
  }
  out.push_back(rest);
  out.resize(parts);
  return out;
}

}  // namespace crossicl::fuzz
