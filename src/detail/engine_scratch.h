// A thread's buffer for the kernels of a decode step, kept between calls and grown without initialising its
// elements: std::vector::resize zeroes each growth, and the products of a layer alternate between widths (960, 576,
// 3072, 576 outputs for SmolLM2-135M), so the sums' buffer was zeroed on every other product (0.3-0.5 % of a
// decode step in memset, perf).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace crossicl::detail {

template <class T>
class Scratch {
 public:
  /// At least `count` elements (their values are whatever the last user left).
  T* get(std::int64_t count) {
    if (count > size_) {
      data_.reset(new T[static_cast<std::size_t>(count)]);
      size_ = count;
    }
    return data_.get();
  }

 private:
  std::unique_ptr<T[]> data_;
  std::int64_t size_ = 0;
};

}  // namespace crossicl::detail
