#include "crossicl/engine/weights.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <ATen/ATen.h>
#include <fmt/format.h>

#include "crossicl/core/error.h"
#include "detail/engine_mmap.h"

namespace crossicl {
namespace detail {

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  // A FIFO (or a device) must be refused before open(): opening a FIFO for reading blocks until a writer comes.
  // O_NONBLOCK covers a file swapped for a FIFO between stat() and open(); fstat() then checks what was opened.
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw LoadError(fmt::format("{}: cannot open ({})", path, std::strerror(errno)));
  if (!S_ISREG(st.st_mode)) throw LoadError(fmt::format("{}: not a regular file", path));
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throw LoadError(fmt::format("{}: cannot open ({})", path, std::strerror(errno)));
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw LoadError(fmt::format("{}: not a regular file", path));
  }
  std::shared_ptr<MappedFile> f(new MappedFile());
  f->path_ = path;
  f->size_ = static_cast<std::size_t>(st.st_size);
  if (f->size_ > 0) {
    void* p = ::mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      throw LoadError(fmt::format("{}: cannot map {} bytes ({})", path, f->size_, std::strerror(err)));
    }
    f->data_ = static_cast<const std::uint8_t*>(p);
  }
  ::close(fd);  // the mapping stays valid after closing the descriptor
  return f;
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<std::uint8_t*>(data_), size_);
}

namespace {

// Context of a tensor viewing a mapping: holds a reference to it. Its deleter identifies such tensors.
struct MappedView {
  std::shared_ptr<MappedFile> file;
};

void delete_mapped_view(void* ctx) { delete static_cast<MappedView*>(ctx); }

// Whether t is a CPU tensor whose storage was made with `deleter` (how mapped views and arena copies are told).
bool made_with(const at::Tensor& t, void (*deleter)(void*)) {
  return t.defined() && t.device().is_cpu() && t.storage().data_ptr().get_deleter() == deleter;
}

}  // namespace

bool is_mapped_view(const at::Tensor& t) { return made_with(t, &delete_mapped_view); }

void release_mapped_pages(const at::Tensor& t) {
  if (!is_mapped_view(t)) return;
  const long page = ::sysconf(_SC_PAGESIZE);
  const auto begin = reinterpret_cast<std::uintptr_t>(t.data_ptr());
  const std::uintptr_t end = begin + t.numel() * t.element_size();
  const std::uintptr_t first = (begin + page - 1) / page * page;  // whole pages inside the tensor only
  const std::uintptr_t last = end / page * page;
  // A private read-only file mapping: dropping its pages loses nothing (they are read again on access).
  if (last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

at::Tensor mapped_tensor(const std::shared_ptr<MappedFile>& file, std::size_t offset, c10::IntArrayRef shape,
                         c10::ScalarType stored, c10::ScalarType target) {
  void* p = const_cast<std::uint8_t*>(file->data() + offset);
  const std::size_t elem = c10::elementSize(stored);
  const bool aligned = reinterpret_cast<std::uintptr_t>(p) % elem == 0;
  at::Tensor t;
  if (aligned) {
    t = at::for_blob(p, shape)  // the view owns a reference to the mapping
            .context(new MappedView{file}, &delete_mapped_view)
            .options(at::TensorOptions().dtype(stored))
            .make_tensor();
    if (stored == target) return t;
  } else {
    t = at::empty(shape, at::TensorOptions().dtype(stored));
    std::memcpy(t.data_ptr(), p, t.numel() * elem);
  }
  return t.to(target);
}

namespace {

constexpr std::int64_t kHugePage = std::int64_t{2} << 20;  // x86-64's transparent huge page
constexpr std::int64_t kArenaAlign = 4096;                 // each copy starts on a page of its own

}  // namespace

struct HugePageArena::Mapping {
  void* base = nullptr;    // as mmap returned it
  std::size_t length = 0;  // as mapped
  char* start = nullptr;   // base rounded up to a huge page
  std::int64_t bytes = 0;  // usable from start
  ~Mapping() {
    if (base) ::munmap(base, length);
  }
};

namespace {

// Context of a tensor in an arena: holds the mapping. Its deleter identifies such tensors.
struct ArenaView {
  std::shared_ptr<HugePageArena::Mapping> mapping;
};

void delete_arena_view(void* ctx) { delete static_cast<ArenaView*>(ctx); }

}  // namespace

HugePageArena::HugePageArena(std::int64_t bytes) {
  if (bytes <= 0) return;
  auto m = std::make_shared<Mapping>();
  m->length = static_cast<std::size_t>(bytes + kHugePage);  // room to start on a huge page
  void* p = ::mmap(nullptr, m->length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return;
  m->base = p;
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  m->start = reinterpret_cast<char*>((a + kHugePage - 1) / kHugePage * kHugePage);
  m->bytes = bytes;
#ifdef MADV_HUGEPAGE
  ::madvise(m->start, static_cast<std::size_t>(bytes), MADV_HUGEPAGE);  // advice only: refused, pages stay 4 KiB
#endif
  mapping_ = std::move(m);
}

std::int64_t HugePageArena::bytes_for(const at::Tensor& t) {
  const std::int64_t n = t.defined() ? static_cast<std::int64_t>(t.numel()) * t.element_size() : 0;
  return (n + kArenaAlign - 1) / kArenaAlign * kArenaAlign;
}

at::Tensor HugePageArena::copy(const at::Tensor& t) {
  if (!mapping_ || !t.defined() || !t.device().is_cpu() || t.numel() == 0 || !t.is_non_overlapping_and_dense())
    return t;
  const std::int64_t need = bytes_for(t);
  if (used_ + need > mapping_->bytes) return t;
  char* p = mapping_->start + used_;
  used_ += need;
  at::Tensor out = at::for_blob(p, t.sizes())  // dense: t's strides address exactly numel elements from p
                       .strides(t.strides())
                       .context(new ArenaView{mapping_}, &delete_arena_view)
                       .options(t.options())
                       .make_tensor();
  out.copy_(t);
  return out;
}

bool HugePageArena::holds(const at::Tensor& t) { return made_with(t, &delete_arena_view); }

}  // namespace detail

c10::ScalarType parse_dtype(const std::string& name) {
  if (name == "float32" || name == "f32" || name == "float" || name == "fp32") return at::kFloat;
  if (name == "bfloat16" || name == "bf16") return at::kBFloat16;
  if (name == "float16" || name == "f16" || name == "half" || name == "fp16") return at::kHalf;
  throw InvalidArgument(fmt::format("unknown dtype '{}' (expected float32, bfloat16 or float16)", name));
}

std::string_view dtype_name(c10::ScalarType dtype) {
  switch (dtype) {
    case c10::ScalarType::Float: return "float32";
    case c10::ScalarType::BFloat16: return "bfloat16";
    case c10::ScalarType::Half: return "float16";
    default: break;
  }
  throw InvalidArgument(fmt::format("dtype must be float32, bfloat16 or float16 (got {})", c10::toString(dtype)));
}

}  // namespace crossicl
