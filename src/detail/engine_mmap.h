// A read-only memory mapping of a whole file, shared by the tensors that view it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace crossicl::detail {

class MappedFile {
 public:
  /// Maps `path` read-only; throws LoadError naming the file when it cannot be opened or mapped.
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::uint8_t* data() const { return data_; }
  std::size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  std::string path_;
  const std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace crossicl::detail

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>
#include <c10/util/ArrayRef.h>

#include "detail/checked_size.h"  // checked_mul, checked_dim_product: the size checks of every loader

namespace crossicl::detail {

/// Tensor of `shape` stored as `stored` at byte `offset` of the mapping, in dtype `target`: a view of the mapped
/// bytes (keeping the mapping alive) when the dtypes match and the address is aligned, else a converted copy.
/// The caller has checked that the bytes lie inside the file.
at::Tensor mapped_tensor(const std::shared_ptr<MappedFile>& file, std::size_t offset, c10::IntArrayRef shape,
                         c10::ScalarType stored, c10::ScalarType target);

/// Drops the pages of a tensor that views a mapping (as mapped_tensor returns) from this process's memory, once
/// its data have been copied elsewhere: the file stays mapped, so a later read faults the same bytes back in.
/// No-op for any other tensor.
void release_mapped_pages(const at::Tensor& t);

/// Whether t views a mapping (as mapped_tensor returns when it does not copy).
bool is_mapped_view(const at::Tensor& t);

/// One anonymous mapping advised for transparent huge pages (madvise MADV_HUGEPAGE, 2 MiB-aligned), into which a
/// CPU model's decode weights are copied once at load (Model). Batch-1 decode streams every weight once per token;
/// on 4 KiB pages that is a new page, and a TLB miss, every 64 cache lines. On an AMD EPYC (Zen 3, 2 threads) a
/// whole SmolLM2-135M pass of the matrix-vector kernels ran a median 1.10x (float32), 1.06x (bfloat16) and 1.09x
/// (int8) faster from an arena than from the allocator's 4 KiB pages (test_gemv.cpp [.bench], docs/performance.md).
/// Where the kernel refuses huge pages (THP "never") the copies are plain anonymous memory, as the allocator's are.
class HugePageArena {
 public:
  struct Mapping;  // the mapping, shared by the arena and its tensors (weights.cpp)

  /// Reserves `bytes` of address space (pages are taken as copies fill them); none when bytes <= 0 or the mapping
  /// fails, and copy() then returns its argument.
  explicit HugePageArena(std::int64_t bytes);

  /// t's copy in the arena, with t's sizes, strides and dtype (the copy keeps the arena mapped), for a dense CPU
  /// tensor (contiguous, or a transposed contiguous one) that fits in what is left; else t itself.
  at::Tensor copy(const at::Tensor& t);

  /// Whether t's storage lies in an arena (a tensor copy() returned, or a view of one).
  static bool holds(const at::Tensor& t);

  /// The bytes copy() takes for t in an arena, alignment included.
  static std::int64_t bytes_for(const at::Tensor& t);

 private:
  std::shared_ptr<Mapping> mapping_;
  std::int64_t used_ = 0;
};

}  // namespace crossicl::detail
