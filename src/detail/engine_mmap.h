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

}  // namespace crossicl::detail
